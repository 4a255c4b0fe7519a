"""load_pretrained_model(): this project's checkpoint format and the released VideoLLaMB layout.

    tokenizer, model, processor, context_len = load_pretrained_model("checkpoints/videollamb-llava-1.5-7b")

Every weight that does not match is reported by name: a missing weight is an error, the released model's
known-unused bridge parameters are accepted and noted, anything else unexpected is listed as a warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoTokenizer
from transformers import initialization as init

from llava.errors import CheckpointError, ConfigError
from llava.model.checkpoint import load_tower_weights, load_weights, map_released_name, read_json
from llava.model.config import VideoLLaMBConfig
from llava.model.videollamb import VideoLLaMBForCausalLM
from llava.video.transforms import VisualProcessor

logger = logging.getLogger(__name__)

# LanguageBind config.json "vision_config" key -> VisionTowerConfig field
TOWER_FIELDS = {
    "hidden_size": "hidden_size",
    "intermediate_size": "intermediate_size",
    "num_hidden_layers": "num_hidden_layers",
    "num_attention_heads": "num_attention_heads",
    "image_size": "image_size",
    "patch_size": "patch_size",
    "layer_norm_eps": "layer_norm_eps",
    "hidden_act": "hidden_act",
    "num_frames": "temporal_window",
}


@dataclass
class LoadReport:
    layout: str  # "videollamb" (this project) or "released"
    unexpected: list[str] = field(default_factory=list)
    unused_released: list[str] = field(default_factory=list)
    towers_from_folders: list[str] = field(default_factory=list)

    def log(self) -> None:
        if self.unused_released:
            logger.info("released parameters the original never uses, skipped: %s", ", ".join(self.unused_released))
        if self.unexpected:
            logger.warning("checkpoint weights that match nothing in the model: %s", ", ".join(self.unexpected))
        for tower in self.towers_from_folders:
            logger.info("tower weights loaded from %s", tower)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _tower_folder(folder: Path, relative: str | None) -> Path | None:
    """A released config names its towers by relative path: try next to the checkpoint, then the cwd."""
    if not relative:
        return None
    for base in (folder, folder.parent, Path.cwd()):
        candidate = (base / relative).resolve()
        if (candidate / "config.json").exists():
            return candidate
    return None


def tower_fields(folder: Path) -> dict:
    """VisionTowerConfig fields read from a LanguageBind folder's config.json ("vision_config")."""
    vision = read_json(folder / "config.json").get("vision_config", {})
    return {name: vision[key] for key, name in TOWER_FIELDS.items() if key in vision}


def released_config(folder: Path, raw: dict, state: dict[str, torch.Tensor]) -> VideoLLaMBConfig:
    """VideoLLaMBConfig for a released checkpoint: LLaMA + mm_* keys, tower sizes from the tower folder."""
    config = VideoLLaMBConfig.from_released_dict(raw)
    tower = _tower_folder(folder, raw.get("mm_video_tower"))
    if tower is not None:
        for name, value in tower_fields(tower).items():
            setattr(config.vision_config, name, value)
    memory = state.get("model.mm_projector.projector.read_memory_emb")
    if memory is not None:
        config.bridge_config.num_memory_tokens = memory.shape[0]
    return config


def _released_state(folder: Path, raw: dict, state: dict, report: LoadReport) -> dict[str, torch.Tensor]:
    mapped = {}
    for name, tensor in state.items():
        new = map_released_name(name)
        if new is None:
            report.unused_released.append(name)
        else:
            mapped[new] = tensor
    for prefix, key in (("video_tower.", "mm_video_tower"), ("image_tower.", "mm_image_tower")):
        if any(k.startswith(prefix) for k in mapped):
            continue
        tower = _tower_folder(folder, raw.get(key))
        if tower is not None:
            mapped.update({prefix + k: v for k, v in load_tower_weights(tower).items()})
            report.towers_from_folders.append(str(tower))
    return mapped


def load_model_weights(model_path: str | Path) -> tuple[VideoLLaMBForCausalLM, LoadReport]:
    """Build the model a folder describes and load its weights, strictly: missing weights are an error."""
    folder = Path(model_path)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such checkpoint folder")
    raw = read_json(folder / "config.json")
    state = load_weights(folder)
    if raw.get("model_type") == VideoLLaMBConfig.model_type:
        config, report = VideoLLaMBConfig.from_dict(raw), LoadReport(layout="videollamb")
    elif raw.get("model_type") == "llava_llama":
        config, report = released_config(folder, raw, state), LoadReport(layout="released")
        state = _released_state(folder, raw, state, report)
    else:
        raise CheckpointError(f"{folder}: unknown model_type {raw.get('model_type')!r}; expected videollamb or llava_llama")
    with init.no_init_weights():
        model = VideoLLaMBForCausalLM(config)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1].strip()
        raise CheckpointError(f"{folder}: the config does not match the weights ({first})") from None
    if result.missing_keys:
        shown = ", ".join(result.missing_keys[:8]) + (" ..." if len(result.missing_keys) > 8 else "")
        raise CheckpointError(f"{folder}: {len(result.missing_keys)} weights missing: {shown}")
    report.unexpected = list(result.unexpected_keys)
    _check_finite(model, folder)
    return model, report


def _check_finite(model: torch.nn.Module, folder: Path) -> None:
    bad = [n for n, p in model.named_parameters() if p.is_floating_point() and not torch.isfinite(p).all()]
    if bad:
        raise CheckpointError(f"{folder}: non-finite values in {', '.join(bad[:5])}")


def load_pretrained_model(
    model_path: str | Path,
    model_base: str | Path | None = None,
    model_name: str | None = None,
    device: str = "auto",
    dtype: torch.dtype | None = None,
    load_8bit: bool = False,
    load_4bit: bool = False,
    static_kv_cache: bool = False,
) -> tuple[object, VideoLLaMBForCausalLM, VisualProcessor, int]:
    """(tokenizer, model, processor, context_len), like LLaVA's builder.

    `model_base` names a folder to read the tokenizer from when `model_path` has none (as with the
    original's projector-only checkpoints). `model_name` is accepted for compatibility; the layout is
    read from config.json, never guessed from the name. `static_kv_cache`: see
    `VideoLLaMBForCausalLM.use_static_kv_cache` (worth it on a GPU).
    """
    target = resolve_device(device)
    if load_8bit or load_4bit:
        if target.type != "cuda":
            raise ConfigError("--load-8bit/--load-4bit need a CUDA GPU with bitsandbytes; this machine has none")
        raise ConfigError("8-bit/4-bit loading is not supported yet; load in bf16 (about 15 GB for the 7B)")
    model, report = load_model_weights(model_path)
    report.log()
    tokenizer = load_tokenizer(Path(model_path), model_base)
    dtype = dtype or (torch.bfloat16 if target.type == "cuda" else torch.float32)
    model = model.to(device=target, dtype=dtype).eval()
    if static_kv_cache:
        model.use_static_kv_cache()
    config = model.config
    processor = VisualProcessor(size=config.vision_config.image_size, pad_images=config.image_aspect_ratio == "pad")
    return tokenizer, model, processor, config.text_config.max_position_embeddings


def load_tokenizer(folder: Path, model_base: str | Path | None):
    for source in (folder, Path(model_base) if model_base else None):
        if source is not None and any((source / n).exists() for n in ("tokenizer.json", "tokenizer.model")):
            tokenizer = AutoTokenizer.from_pretrained(str(source))
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.unk_token
            return tokenizer
    raise CheckpointError(f"{folder}: no tokenizer (tokenizer.json or tokenizer.model) here or in --model-base")
