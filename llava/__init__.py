"""VideoLLaMB: long-video understanding with recurrent memory bridges (LLaVA-style package).

`import llava` registers this project's config and model with transformers' auto classes, so a checkpoint saved
in this project's format (`model_type: videollamb`) loads with `AutoConfig` / `AutoModelForCausalLM`:

    import llava
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained("checkpoints/videollamb-tiny-shapes")

The released layout (`model_type: llava_llama`) loads through `llava.model.builder.load_pretrained_model`, which
also gives the tokenizer and the visual processor.
"""

__version__ = "0.1.0"  # the one place: pyproject.toml reads it (dynamic version); CHANGELOG.md says what changed


def _register_auto_classes() -> None:
    """VideoLLaMBConfig under its model_type for AutoConfig, VideoLLaMBForCausalLM for AutoModelForCausalLM."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from llava.model.config import VideoLLaMBConfig
    from llava.model.videollamb import VideoLLaMBForCausalLM

    AutoConfig.register(VideoLLaMBConfig.model_type, VideoLLaMBConfig, exist_ok=True)
    AutoModelForCausalLM.register(VideoLLaMBConfig, VideoLLaMBForCausalLM, exist_ok=True)


_register_auto_classes()
