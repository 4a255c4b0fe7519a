"""Build the model a training run starts from, and choose which parts train."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerBase

from llava.errors import CheckpointError, ConfigError
from llava.model.builder import load_model_weights, load_tokenizer, tower_fields
from llava.model.checkpoint import load_tower_weights, read_json
from llava.model.config import VideoLLaMBConfig
from llava.model.frame_cache import FrameTokenCache
from llava.model.videollamb import VideoLLaMBForCausalLM
from llava.train.args import ModelArguments

logger = logging.getLogger(__name__)
VIDEOLLAMB_TYPES = (VideoLLaMBConfig.model_type, "llava_llama")


def build_model(args: ModelArguments) -> tuple[VideoLLaMBForCausalLM, PreTrainedTokenizerBase]:
    """(model, tokenizer) from --model_config (fresh), a VideoLLaMB checkpoint, or an LM plus towers."""
    if args.mm_projector_type != "rmt_r_transformer1x":
        raise ConfigError(f"unknown mm_projector_type {args.mm_projector_type!r}; valid: rmt_r_transformer1x")
    if args.model_config:
        try:
            config = VideoLLaMBConfig.from_json_file(args.model_config)
        except (OSError, ValueError, TypeError, RecursionError) as err:  # missing, not JSON, unknown fields
            problem = f"{type(err).__name__}: {err}"
            raise ConfigError(f"--model_config {args.model_config}: cannot read it ({problem})") from None
        model = VideoLLaMBForCausalLM(config)
    elif not args.model_name_or_path:
        raise ConfigError("give --model_name_or_path (a checkpoint or an LM) or --model_config")
    elif read_json(Path(args.model_name_or_path) / "config.json").get("model_type") in VIDEOLLAMB_TYPES:
        model, report = load_model_weights(args.model_name_or_path)
        report.log()
    else:
        model = compose_from_parts(Path(args.model_name_or_path), args.video_tower, args.image_tower)
    source = args.tokenizer_path or args.model_name_or_path
    if source is None:
        raise ConfigError("--model_config needs --tokenizer_path")
    return model, load_tokenizer(Path(source), None)


def compose_from_parts(lm_path: Path, video_tower: str | None, image_tower: str | None) -> VideoLLaMBForCausalLM:
    """The original's starting point: a trained LM (e.g. llava-v1.5-7b), LanguageBind towers, a fresh bridge."""
    if not video_tower:
        raise ConfigError("starting from a plain language model needs --video_tower (a LanguageBind folder)")
    config = VideoLLaMBConfig(
        text_config=AutoConfig.from_pretrained(str(lm_path)).to_dict(),
        vision_config=tower_fields(Path(video_tower)),
        use_image_tower=image_tower is not None,
    )
    model = VideoLLaMBForCausalLM(config)
    language_model = AutoModelForCausalLM.from_pretrained(str(lm_path), dtype=torch.float32)
    model.language_model.load_state_dict(language_model.state_dict())
    for tower, folder in ((model.video_tower, video_tower), (model.image_tower, image_tower)):
        if tower is not None and folder:
            missing, unexpected = tower.load_state_dict(load_tower_weights(Path(folder)), strict=True)
            if missing:
                raise CheckpointError(f"{folder}: tower weights missing: {', '.join(missing[:8])}")
    return model


def set_trainable(model: VideoLLaMBForCausalLM, args: ModelArguments) -> None:
    """Freeze what the arguments say; a ConfigError, one line, for --tune_mm_mlp_adapter (train only the bridge and
    projector) with --freeze_mm_mlp_adapter (freeze them)."""
    if args.tune_mm_mlp_adapter and args.freeze_mm_mlp_adapter:
        raise ConfigError(
            "--tune_mm_mlp_adapter trains only the bridge and projector, which --freeze_mm_mlp_adapter freezes"
        )
    parts = {
        "video_tower": not args.freeze_video_tower and not args.tune_mm_mlp_adapter,
        "image_tower": not args.freeze_image_tower and not args.tune_mm_mlp_adapter,
        "language_model": not args.freeze_backbone and not args.tune_mm_mlp_adapter,
        "bridge": not args.freeze_mm_mlp_adapter and not args.freeze_bridge,
        "mm_projector": not args.freeze_mm_mlp_adapter,
    }
    for name, trainable in parts.items():
        module = getattr(model, name)
        if module is not None:
            module.requires_grad_(trainable)
    if args.tune_top_layers:
        tune_top_layers_only(model, args)
    counts = {
        name: sum(p.numel() for p in getattr(model, name).parameters() if p.requires_grad)
        for name in parts
        if getattr(model, name) is not None
    }
    logger.info("trainable parameters: %s", counts)


def tune_top_layers_only(model: VideoLLaMBForCausalLM, args: ModelArguments) -> None:
    """Freeze everything but the LLM above its bottom layers: its top `args.tune_top_layers` decoder layers, final
    norm and output head (the head's rows of tokens the model never wrote cannot win a softmax untrained; tied to
    the input embeddings, those train too). A ConfigError, one line, for a count the LLM does not have or with
    --tune_mm_mlp_adapter (which trains the bridge and projector instead)."""
    layers = model.language_model.model.layers
    if args.tune_mm_mlp_adapter:
        raise ConfigError("--tune_top_layers trains LLM layers only, --tune_mm_mlp_adapter the bridge and projector")
    if not 0 < args.tune_top_layers <= len(layers):
        raise ConfigError(f"--tune_top_layers {args.tune_top_layers}: the LLM has {len(layers)} decoder layers")
    model.requires_grad_(False)
    top = [*layers[len(layers) - args.tune_top_layers :], model.language_model.model.norm]
    for module in (*top, model.language_model.get_output_embeddings()):
        module.requires_grad_(True)


def cache_frozen_tower(model: VideoLLaMBForCausalLM, budget_mb: float) -> None:
    """Attach a `budget_mb` frame-token cache to the model's video tower, put in eval mode (which the cache keeps it
    in); a ConfigError, one line, when the tower is not frozen."""
    if any(p.requires_grad for p in model.video_tower.parameters()):
        raise ConfigError(
            "--frozen_tower_cache_mb needs a frozen video tower, and this run trains it "
            "(--freeze_video_tower False without --tune_mm_mlp_adapter)"
        )
    model.video_tower.eval()
    model.attach_frame_token_cache(FrameTokenCache(budget_mb))
    logger.info("frozen video tower: its frame tokens are cached, up to %g MB", budget_mb)
