"""VideoLLaMB: long-video understanding with recurrent memory bridges (LLaVA-style package)."""

__version__ = "0.1.0"  # the one place: pyproject.toml reads it (dynamic version); CHANGELOG.md says what changed
