"""Reading checkpoint folders: configs, safetensors shards, and the released layout's names.

Only safetensors (or `torch.load(weights_only=True)` for a LanguageBind `pytorch_model.bin`) are read:
loading never executes code from a checkpoint.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from llava.errors import CheckpointError

# released name prefix -> this project's prefix (first match wins)
RELEASED_PREFIXES: list[tuple[str, str]] = [
    ("model.mm_projector.projector.read_memory_emb", "bridge.read_memory_emb"),
    ("model.mm_projector.projector.layers.0.selfattention.", "bridge.layer.selfattention."),
    ("model.mm_projector.projector.layers.0.mlp.", "bridge.layer.mlp."),
    ("model.mm_projector.projector.layers.0.residual.", "bridge.layer.residual."),
    ("model.mm_projector.projector.proj.", "mm_projector."),
    ("model.mm_projector.retrieval.layers.0.crossattention.", "bridge.retriever.crossattention."),
    ("model.video_tower.video_tower.", "video_tower.vision_model."),
    ("model.image_tower.image_tower.", "image_tower.vision_model."),
    ("model.", "language_model.model."),
    ("lm_head.", "language_model.lm_head."),
]

# parameters the released checkpoint holds but its forward never uses (reference section 7)
RELEASED_UNUSED = [
    re.compile(r"^model\.mm_projector\.projector\.memory_tokens$"),
    re.compile(r"^model\.mm_projector\.projector\.layers\.0\.crossattention\."),
    re.compile(r"^model\.mm_projector\.retrieval\.layers\.0\.(selfattention|mlp|residual)\."),
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


def map_released_name(name: str) -> str | None:
    """This project's name for a released parameter, or None when the released model never uses it."""
    if any(p.search(name) for p in RELEASED_UNUSED):
        return None
    for old, new in RELEASED_PREFIXES:
        if name.startswith(old):
            return new + name[len(old) :]
    return name
