"""One synthetic data set, one sentencepiece tokenizer and one tiny model config, shared by the training tests.

Everything runs on one CPU thread per process: on a 2-core machine with other work running, several torch threads
per process make a tiny model tens of times slower, not faster.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import pytest

from llava.conversation import VICUNA_SYSTEM
from llava.data.shapes_dataset import main as synthesize
from llava.model.presets import tiny_config
from llava.train.sentencepiece_tokenizer import train_tokenizer

REPO = Path(__file__).resolve().parents[2]


def synthetic_folder(tmp_path_factory, name: str, *args: str) -> Path:
    """A fresh folder written by `llava.data.shapes_dataset` with these arguments (besides --out and --quiet)."""
    out = tmp_path_factory.mktemp(name)
    synthesize(["--out", str(out), *args, "--quiet"])
    return out


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """6 synthetic videos (32 px, up to 3 scenes) and their 36 conversation rows in train.json."""
    return synthetic_folder(tmp_path_factory, "shapes", "--num-videos", "6", "--seed", "0", "--max-scenes", "3",
                            "--size", "32")


@pytest.fixture(scope="session")
def rows(data_dir) -> list[dict]:
    return json.loads((data_dir / "train.json").read_text())


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory, rows) -> Path:
    texts = [VICUNA_SYSTEM, "USER: ASSISTANT:"] + [t["value"] for r in rows for t in r["conversations"]]
    out = tmp_path_factory.mktemp("tokenizer")
    train_tokenizer(texts * 5, out, vocab_size=320)
    return out


@pytest.fixture(scope="session")
def model_config(tmp_path_factory, tokenizer_dir) -> Path:
    from transformers import AutoTokenizer

    path = tmp_path_factory.mktemp("config") / "tiny.json"
    tiny_config(vocab_size=len(AutoTokenizer.from_pretrained(str(tokenizer_dir)))).to_json_file(str(path))
    return path


@pytest.fixture(scope="session")
def train_args(model_config, tokenizer_dir, data_dir):
    """argv for llava.train.train: the tiny fresh model on the synthetic data, 4 frames, CPU, no checkpoints."""

    def make(output_dir: Path, *extra: str, data_path: Path | None = None) -> list[str]:
        return [
            "--model_config", str(model_config), "--tokenizer_path", str(tokenizer_dir),
            "--data_path", str(data_path or data_dir / "train.json"), "--x_folder", str(data_dir),
            "--num_frames", "4", "--output_dir", str(output_dir), "--use_cpu", "True",
            "--per_device_train_batch_size", "4", "--learning_rate", "3e-3", "--logging_steps", "1",
            "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "True", "--seed", "0",
            *extra,
        ]

    return make


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def subprocess_env() -> dict[str, str]:
    """The environment for torchrun / bash children: offline hub, one thread, this venv's tools first on PATH."""
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def torchrun() -> list[str]:
    """This interpreter's torchrun (its console script, or the module it runs)."""
    script = Path(sys.executable).parent / "torchrun"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "torch.distributed.run"]


def losses(output_dir: Path) -> dict[int, float]:
    """step -> logged training loss, from output_dir/trainer_state.json."""
    state = json.loads((output_dir / "trainer_state.json").read_text())
    return {entry["step"]: entry["loss"] for entry in state["log_history"] if "loss" in entry}


def row_ids(output_dir: Path, rank: int) -> list[dict]:
    lines = (output_dir / f"row_ids.rank{rank}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]
