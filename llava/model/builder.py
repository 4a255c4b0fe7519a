"""load_pretrained_model(): this project's checkpoint format and the released VideoLLaMB layout.

    tokenizer, model, processor, context_len = load_pretrained_model("checkpoints/videollamb-llava-1.5-7b")
    ... = load_pretrained_model(path, device_map="auto")   # spread over the GPUs (and the CPU) that are there
    ... = load_pretrained_model(path, load_4bit=True)      # the LLM's linear layers in 4 bits (bitsandbytes)

Loading fits the machine: the model is built on the meta device and each weight is read from the memory-mapped
safetensors file straight into its dtype and device (transformers' loader), so a bf16 checkpoint stays bf16 and
host memory holds at most one copy of it. Every weight that does not match is reported by name before anything is
read: a missing weight, a shape the config does not give, or a weight the model has no place for is an error (in
either layout); only the released model's known-unused bridge parameters are accepted, and noted.

A released checkpoint is the default variant or the Mem one (VideoLLaMB-Mem, MM-NIAVH's): their config.json files
have the same keys, so the Mem one is told by the segment position table only it holds, and gets the settings its
code hard-codes (RELEASED_MEM_SETTINGS).
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, BitsAndBytesConfig
from transformers import initialization as init
from transformers.utils import logging as hf_logging

from llava.errors import CheckpointError, ConfigError
from llava.model.checkpoint import (
    RELEASED_MEM_POSITIONS,
    WeightReader,
    is_released_unused,
    map_released_name,
    read_json,
    stored_dtype,
    weight_shape,
)
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
# modules kept in the model's dtype by --load-8bit / --load-4bit: only the LLM's decoder layers are quantized (the
# towers and the bridge are small next to it and feed everything after them; the output layer as in LLaVA)
NOT_QUANTIZED = ["video_tower", "image_tower", "bridge", "mm_projector", "lm_head"]
QUANTIZE_PACKAGES = ("bitsandbytes", "accelerate")
# BridgeConfig fields of a released Mem checkpoint (MM-NIAVH's projector hard-codes them; none is in its config):
# threshold SceneTilling with at most 7 cuts, 14x14 pooling, the LLM reads the memories of every segment
RELEASED_MEM_SETTINGS = {
    "variant": "mem",
    "scenetilling_k": None,
    "scenetilling_max_cuts": 7,
    "pool_size": 14,
    "image_branch_max_frames": 3,
}
DEFAULT_DEVICE = "auto"  # a GPU when there is one (`resolve_device`)
# VideoLLaMBConfig.rate_sampling of a released Mem checkpoint: how its benchmark code samples frames
RELEASED_MEM_SAMPLING = "release_mem"


@dataclass
class LoadReport:
    layout: str  # "videollamb" (this project) or "released"
    unused_released: list[str] = field(default_factory=list)
    source_names: dict[str, str] = field(default_factory=dict)  # renamed weights: this project's name -> the stored one
    towers_from_folders: list[str] = field(default_factory=list)

    def log(self) -> None:
        if self.unused_released:
            logger.info("released parameters the original never uses, skipped: %s", ", ".join(self.unused_released))
        for tower in self.towers_from_folders:
            logger.info("tower weights loaded from %s", tower)


def resolve_device(device: str) -> torch.device:
    if device == DEFAULT_DEVICE:
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


def released_config(folder: Path, raw: dict, state: dict[str, Any]) -> VideoLLaMBConfig:
    """VideoLLaMBConfig for a released checkpoint: LLaMA + mm_* keys, tower sizes from the tower folder, and the
    Mem variant's settings when the weights hold its segment position table (`state` names the weights)."""
    config = VideoLLaMBConfig.from_released_dict(raw)
    tower = _tower_folder(folder, raw.get("mm_video_tower"))
    if tower is not None:
        for name, value in tower_fields(tower).items():
            setattr(config.vision_config, name, value)
    memory = state.get("model.mm_projector.projector.read_memory_emb")
    if memory is not None:
        config.bridge_config.num_memory_tokens = weight_shape(memory)[0]
    positions = state.get(f"{RELEASED_MEM_POSITIONS}.weight")
    if positions is not None:
        for name, value in RELEASED_MEM_SETTINGS.items():
            setattr(config.bridge_config, name, value)
        config.bridge_config.max_segment_positions = weight_shape(positions)[0]
        config.rate_sampling = RELEASED_MEM_SAMPLING
    return config


def _released_state(folder: Path, raw: dict, state: dict, report: LoadReport, reader: WeightReader) -> dict[str, Any]:
    mapped = {}
    for name, tensor in state.items():
        new = map_released_name(name)
        if new is None:
            report.unused_released.append(name)
        else:
            mapped[new] = tensor
            report.source_names[new] = name
    for prefix, key in (("video_tower.", "mm_video_tower"), ("image_tower.", "mm_image_tower")):
        if any(k.startswith(prefix) for k in mapped):
            continue
        tower = _tower_folder(folder, raw.get(key))
        if tower is not None:
            for name, tensor in reader.tower(tower).items():
                if is_released_unused(name):
                    report.unused_released.append(f"{name} in {tower}")
                else:
                    mapped[prefix + name] = tensor
                    report.source_names[prefix + name] = f"{name} in {tower}"
            report.towers_from_folders.append(str(tower))
    return mapped


def read_checkpoint(folder: Path, reader: WeightReader) -> tuple[VideoLLaMBConfig, dict[str, Any], LoadReport]:
    """The config a folder describes and its weights under this project's names, opened lazily by `reader`."""
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such checkpoint folder")
    raw = read_json(folder / "config.json")
    state = reader.shards(folder)
    if raw.get("model_type") == VideoLLaMBConfig.model_type:
        return VideoLLaMBConfig.from_dict(raw), state, LoadReport(layout="videollamb")
    if raw.get("model_type") == "llava_llama":
        config, report = released_config(folder, raw, state), LoadReport(layout="released")
        return config, _released_state(folder, raw, state, report, reader), report
    raise CheckpointError(f"{folder}: unknown model_type {raw.get('model_type')!r}; expected videollamb or llava_llama")


def model_shapes(config: VideoLLaMBConfig) -> dict[str, tuple[int, ...]]:
    """Every weight of the model `config` describes and its shape, from a model built on the meta device."""
    with torch.device("meta"), init.no_init_weights():
        model = VideoLLaMBForCausalLM(config)
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


def match_weights(folder: Path, config: VideoLLaMBConfig, state: dict[str, Any], report: LoadReport) -> dict[str, Any]:
    """The weights the model takes, checked before any is read: a missing weight, a shape that differs from the
    config's, or a weight the model has no place for (other than the released known-unused ones, already set
    aside in `report.unused_released`) is a CheckpointError naming it."""
    shapes = model_shapes(config)
    missing = [name for name in shapes if name not in state]
    if missing:
        shown = ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else "")
        raise CheckpointError(f"{folder}: {len(missing)} weights missing: {shown}")
    for name, shape in shapes.items():
        if weight_shape(state[name]) != shape:
            raise CheckpointError(
                f"{folder}: the config does not match the weights ({name}: {list(weight_shape(state[name]))} in "
                f"the checkpoint, {list(shape)} in the model the config describes)"
            )
    unexpected = [report.source_names.get(name, name) for name in state if name not in shapes]
    if unexpected:
        shown = ", ".join(unexpected[:8]) + (" ..." if len(unexpected) > 8 else "")
        raise CheckpointError(f"{folder}: {len(unexpected)} weights match nothing in the model: {shown}")
    return {name: state[name] for name in shapes}


def quantization_config(bits: int | None, compute_dtype: torch.dtype) -> BitsAndBytesConfig | None:
    """transformers' bitsandbytes settings for 8 or 4 bits (None: no quantization); the LLM's decoder layers only."""
    if bits is None:
        return None
    missing = [name for name in QUANTIZE_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"--load-{bits}bit needs {' and '.join(missing)}: pip install 'llava-videollamb[quant]'")
    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=NOT_QUANTIZED)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
        llm_int8_skip_modules=NOT_QUANTIZED,
    )


def load_model_weights(
    model_path: str | Path,
    dtype: torch.dtype | None = None,
    device_map: str | dict | None = None,
    quantize_bits: int | None = None,
    max_memory: dict | None = None,
) -> tuple[VideoLLaMBForCausalLM, LoadReport]:
    """Build the model a folder describes and load its weights, strictly: missing weights are an error.

    `dtype` None keeps the checkpoint's own precision. Without `device_map` the weights stay on the CPU, and those
    already in `dtype` are used in place from the memory-mapped file, not copied; otherwise each is read into its
    own memory as it is converted or moved (see `WeightReader`). `device_map` ("auto", "cpu", "cuda:1" or a dict
    of module name -> device) and `quantize_bits` (8 or 4) go to transformers' loader, which needs accelerate (and
    bitsandbytes to quantize)."""
    folder = Path(model_path)
    with ExitStack() as stack:
        config, state, report = read_checkpoint(folder, WeightReader(stack))
        stored = stored_dtype(state) or torch.float32
        dtype = dtype or stored
        if quantize_bits is not None or device_map is not None or dtype != stored:  # not used in place: read them
            config, state, report = read_checkpoint(folder, WeightReader(stack, backend="pread"))
        state = match_weights(folder, config, state, report)
        options: dict[str, Any] = {"dtype": dtype}
        if device_map is not None:
            _require_accelerate("device_map")
            options.update(device_map=device_map, max_memory=max_memory)
        if quantize_bits is not None:
            options["quantization_config"] = quantization_config(quantize_bits, dtype)
        with _progress_only_on_a_terminal():
            model = VideoLLaMBForCausalLM.from_pretrained(None, config=config, state_dict=state, **options)
    model.config.name_or_path = str(folder)
    _check_finite(model, folder)
    return model, report


@contextmanager
def _progress_only_on_a_terminal() -> Iterator[None]:
    """transformers' "Loading weights" bar when stderr is a terminal; nothing when it is a file or a pipe, so a
    command's stderr holds its own lines alone (restored afterwards to whatever it was)."""
    if sys.stderr.isatty() or not hf_logging.is_progress_bar_enabled():
        yield
        return
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()


def _require_accelerate(what: str) -> None:
    if importlib.util.find_spec("accelerate") is None:
        raise ConfigError(f"{what} needs accelerate: pip install 'llava-videollamb[quant]' (or accelerate)")


def _finite(tensor: torch.Tensor) -> bool:
    """No NaN or infinity in `tensor`: its smallest and largest values are finite (NaN propagates to both). One
    pass, about 20x faster than `isfinite(tensor).all()` over a bf16 tensor on a CPU."""
    if not tensor.numel():
        return True
    with torch.no_grad():
        low, high = torch.aminmax(tensor)
    return bool(torch.isfinite(low)) and bool(torch.isfinite(high))


def _check_finite(model: torch.nn.Module, folder: Path) -> None:
    bad = [
        n for n, p in model.named_parameters() if p.is_floating_point() and p.device.type != "meta" and not _finite(p)
    ]
    if bad:
        raise CheckpointError(f"{folder}: non-finite values in {', '.join(bad[:5])}")


def default_dtype(target: torch.device, device_map: str | dict | None, bits: int | None) -> torch.dtype | None:
    """float16 with 8-bit weights (bitsandbytes' int8 matmuls take it as it is; other dtypes are cast at every
    call), bfloat16 on a GPU, else None: the checkpoint's own precision."""
    on_gpu = target.type == "cuda" if device_map is None else torch.cuda.is_available()
    return torch.float16 if bits == 8 else torch.bfloat16 if on_gpu else None


def load_pretrained_model(
    model_path: str | Path,
    model_base: str | Path | None = None,
    model_name: str | None = None,
    device: str = DEFAULT_DEVICE,
    dtype: torch.dtype | None = None,
    load_8bit: bool = False,
    load_4bit: bool = False,
    static_kv_cache: bool = False,
    device_map: str | dict | None = None,
    max_memory: dict | None = None,
) -> tuple[object, VideoLLaMBForCausalLM, VisualProcessor, int]:
    """(tokenizer, model, processor, context_len), like LLaVA's builder.

    `model_base` names a folder to read the tokenizer from when `model_path` has none (as with the
    original's projector-only checkpoints). `model_name` is accepted for compatibility; the layout is
    read from config.json, never guessed from the name. `static_kv_cache`: see
    `VideoLLaMBForCausalLM.use_static_kv_cache` (worth it on a GPU).

    `dtype` None: bfloat16 on a GPU, the checkpoint's own precision on a CPU (a bf16 checkpoint is never widened
    to float32 unless asked), float16 with `load_8bit`. `device_map` ("auto", "balanced", "sequential", or
    {module name: device}) spreads the model over the GPUs and the CPU (accelerate's placement, each device capped
    by `max_memory`) instead of putting it on `device`. `load_8bit` / `load_4bit` quantize the LLM's decoder
    layers with bitsandbytes (LLM.int8 / NF4 with double quantization) on `device`, a CUDA GPU or the CPU.
    """
    folder = Path(model_path)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such checkpoint folder")
    if load_8bit and load_4bit:
        raise ConfigError("--load-8bit and --load-4bit exclude each other: choose one")
    bits = 8 if load_8bit else 4 if load_4bit else None
    target = resolve_device(device)
    if bits is not None and device_map is None:
        device_map = {"": target}
    read_json(folder / "config.json")  # a bad config is named as such before the tokenizer reads it
    tokenizer = load_tokenizer(folder, model_base)  # before the weights: a missing tokenizer fails at once
    dtype = dtype or default_dtype(target, device_map, bits)
    model, report = load_model_weights(folder, dtype, device_map, bits, max_memory)
    report.log()
    if device_map is None and target.type != "cpu":
        model = model.to(target)  # type: ignore[arg-type]  # transformers' @wraps(Module.to) misleads mypy
    if static_kv_cache:
        model.use_static_kv_cache()
    config = model.config
    processor = config.visual_processor
    return tokenizer, model, processor, config.text_config.max_position_embeddings


def load_tokenizer(folder: Path, model_base: str | Path | None):
    for source in (folder, Path(model_base) if model_base else None):
        if source is not None and any((source / n).exists() for n in ("tokenizer.json", "tokenizer.model")):
            tokenizer = AutoTokenizer.from_pretrained(str(source))
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.unk_token
            return tokenizer
    raise CheckpointError(f"{folder}: no tokenizer (tokenizer.json or tokenizer.model) here or in --model-base")
