"""Reading checkpoint folders: configs, safetensors shards, and the released layout's names.

Only safetensors (or `torch.load(weights_only=True)` for a LanguageBind `pytorch_model.bin`) are read:
loading never executes code from a checkpoint. `WeightReader` opens shards lazily: a tensor is read only when
the model takes it, so loading holds one copy of the weights, never two.
"""

from __future__ import annotations

import json
import pickle
import re
import site
import sys
import sysconfig
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from llava.errors import CheckpointError

DEMO_CHECKPOINT_NAME = "videollamb-tiny-shapes"
# where an installed (non-editable) package finds the bundled demo model, under its install root:
# pyproject.toml's [tool.setuptools.data-files] puts checkpoints/videollamb-tiny-shapes there
INSTALLED_CHECKPOINTS = Path("share") / "llava-videollamb" / "checkpoints"
# safetensors dtype names -> torch dtypes (floating point ones; others are never cast)
SAFETENSORS_FLOATS = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}

# the segment position table (Embedding(1024, mm_hidden)) that only the Mem variant's checkpoints hold: its presence
# is what tells a released Mem checkpoint from a default one (their config.json files have the same keys)
RELEASED_MEM_POSITIONS = "model.mm_projector.abs_vid_pe"
# released name prefix -> this project's prefix (first match wins)
RELEASED_PREFIXES: list[tuple[str, str]] = [
    ("model.mm_projector.projector.read_memory_emb", "bridge.read_memory_emb"),
    ("model.mm_projector.projector.layers.0.selfattention.", "bridge.layer.selfattention."),
    ("model.mm_projector.projector.layers.0.mlp.", "bridge.layer.mlp."),
    ("model.mm_projector.projector.layers.0.residual.", "bridge.layer.residual."),
    ("model.mm_projector.projector.proj.", "mm_projector."),
    ("model.mm_projector.retrieval.layers.0.crossattention.", "bridge.retriever.crossattention."),
    (f"{RELEASED_MEM_POSITIONS}.", "bridge.segment_position_emb."),
    ("model.video_tower.video_tower.", "video_tower.vision_model."),
    ("model.image_tower.image_tower.", "image_tower.vision_model."),
    ("model.", "language_model.model."),
    ("lm_head.", "language_model.lm_head."),
]

# parameters the released checkpoint holds but its forward never uses (reference section 7), and the towers'
# `embeddings.position_ids` (arange(num_positions), a buffer that older transformers saved with the weights)
RELEASED_UNUSED = [
    re.compile(r"^model\.mm_projector\.projector\.memory_tokens$"),
    re.compile(r"^model\.mm_projector\.projector\.layers\.0\.crossattention\."),
    re.compile(r"^model\.mm_projector\.retrieval\.layers\.0\.(selfattention|mlp|residual)\."),
    re.compile(r"(^|\.)embeddings\.position_ids$"),
]


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({type(err).__name__}: {err})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got a {type(data).__name__}")
    return data


def weight_files(folder: Path) -> list[Path]:
    """The safetensors shards of a folder (via the index when there is one)."""
    index = folder / "model.safetensors.index.json"
    if index.exists():
        weight_map = read_json(index).get("weight_map", {})
        if not isinstance(weight_map, dict) or not all(isinstance(n, str) for n in weight_map.values()):
            raise CheckpointError(f"{index}: 'weight_map' must map weight names to shard file names")
        names = sorted(set(weight_map.values()))
        files = [folder / n for n in names]
    else:
        files = sorted(folder.glob("*.safetensors"))
    missing = [f.name for f in files if not f.exists()]
    if missing or not files:
        raise CheckpointError(f"{folder}: no weights found (missing: {', '.join(missing) or '*.safetensors'})")
    return files


def load_weights(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a folder's safetensors shards; a corrupted shard is a CheckpointError naming it."""
    state: dict[str, torch.Tensor] = {}
    for file in weight_files(folder):
        try:
            state.update(load_file(str(file)))
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"{file}: corrupted or unreadable weights ({err})") from None
    return state


@dataclass
class WeightReader:
    """Opens safetensors shards lazily: name -> a safetensors slice, read (`slice[...]`) only when the model takes
    it. The shards stay open until `stack` closes; tensors read before then keep their memory.

    backend "mmap": a tensor is used in place from the memory-mapped file, no copy (for weights kept in their stored
    dtype: the process holds the checkpoint once). "pread": each tensor is read into its own memory (for weights
    converted on the way, e.g. widened or quantized, so the file's pages are not held beside the converted copies).
    """

    stack: ExitStack
    backend: str = "mmap"

    def shards(self, folder: Path) -> dict[str, Any]:
        """Every tensor of a folder's safetensors shards; a corrupted or truncated shard is a CheckpointError."""
        weights: dict[str, Any] = {}
        for file in weight_files(folder):
            try:
                handle = self.stack.enter_context(
                    safe_open(str(file), framework="pt", device="cpu", backend=self.backend)
                )
                weights.update({name: handle.get_slice(name) for name in handle.keys()})
            except (SafetensorError, OSError, ValueError) as err:
                raise CheckpointError(f"{file}: corrupted or unreadable weights ({err})") from None
        return weights

    def tower(self, folder: Path) -> dict[str, Any]:
        """`load_tower_weights`, lazily where the folder holds safetensors (a `pytorch_model.bin` is read whole)."""
        if list(folder.glob("*.safetensors")) or not list(folder.glob("pytorch_model*.bin")):
            return {k: v for k, v in self.shards(folder).items() if k.startswith("vision_model.")}
        return load_tower_weights(folder)


def weight_shape(weight: Any) -> tuple[int, ...]:
    """The shape of a tensor or of a lazy safetensors slice."""
    return tuple(weight.shape) if isinstance(weight, torch.Tensor) else tuple(weight.get_shape())


def weight_dtype(weight: Any) -> torch.dtype | None:
    """The floating-point dtype of a tensor or a lazy slice; None for integer and boolean weights."""
    if isinstance(weight, torch.Tensor):
        return weight.dtype if weight.is_floating_point() else None
    return SAFETENSORS_FLOATS.get(weight.get_dtype())


def stored_dtype(weights: dict[str, Any]) -> torch.dtype | None:
    """The floating-point dtype that holds most of the values of `weights` (the checkpoint's precision)."""
    counts: dict[torch.dtype, int] = {}
    for weight in weights.values():
        dtype = weight_dtype(weight)
        if dtype is not None:
            counts[dtype] = counts.get(dtype, 0) + int(torch.Size(weight_shape(weight)).numel())
    return max(counts, key=counts.__getitem__) if counts else None


def load_tower_weights(folder: Path) -> dict[str, torch.Tensor]:
    """A published LanguageBind folder: its `vision_model.*` tensors (text-side weights are ignored)."""
    bins = sorted(folder.glob("pytorch_model*.bin"))
    if not list(folder.glob("*.safetensors")) and bins:
        state = {}
        for file in bins:
            try:
                state.update(torch.load(file, map_location="cpu", weights_only=True))
            except pickle.UnpicklingError:  # weights_only refused a non-tensor object: never run it
                raise CheckpointError(
                    f"{file}: refused: holds pickled objects other than tensors (loading it could run code); "
                    "convert it to safetensors"
                ) from None
            except (RuntimeError, OSError, EOFError) as err:
                raise CheckpointError(f"{file}: unreadable weights ({err})") from None
    else:
        state = load_weights(folder)
    return {k: v for k, v in state.items() if k.startswith("vision_model.")}


def is_released_unused(name: str) -> bool:
    """Whether a weight of a released checkpoint (or of its LanguageBind folders) is one its model never uses."""
    return any(p.search(name) for p in RELEASED_UNUSED)


def map_released_name(name: str) -> str | None:
    """This project's name for a released parameter, or None when the released model never uses it."""
    if is_released_unused(name):
        return None
    for old, new in RELEASED_PREFIXES:
        if name.startswith(old):
            return new + name[len(old) :]
    return name


def bundled_checkpoint_places(name: str = DEMO_CHECKPOINT_NAME) -> list[Path]:
    """Where a checkpoint bundled with the package may be, in the order they are tried: the checkout's own
    `checkpoints/` (a source tree or an editable install), then the `share/llava-videollamb/checkpoints/` folder
    that a non-editable install writes next to the package (`pip install --target DIR`), in the environment
    (`sys.prefix`, a virtual environment) or in the user's base (`pip install --user`)."""
    root = Path(__file__).resolve().parents[2]  # the checkout, or site-packages / the --target folder
    bases = [root, Path(sys.prefix), Path(sysconfig.get_path("data")), Path(site.getuserbase())]
    places = [root / "checkpoints" / name] + [base / INSTALLED_CHECKPOINTS / name for base in bases]
    return list(dict.fromkeys(places))


def bundled_checkpoint(name: str = DEMO_CHECKPOINT_NAME) -> Path:
    """The folder of a checkpoint bundled with the package (the demo model by default): the first of
    `bundled_checkpoint_places` that holds a config.json. When none does, the place it belongs: the checkout's
    `checkpoints/` when running from a checkout, else the installed package's `share/` folder in `sys.prefix`."""
    places = bundled_checkpoint_places(name)
    for place in places:
        if (place / "config.json").is_file():
            return place
    checkout = (places[0].parents[1] / "pyproject.toml").is_file()
    return places[0] if checkout else Path(sys.prefix) / INSTALLED_CHECKPOINTS / name
