"""VideoLLaMB: long-video understanding with recurrent memory bridges (LLaVA-style package)."""
