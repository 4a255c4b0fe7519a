"""Bad and unusual inputs shared by the robustness tests: broken videos, odd-but-valid videos, broken checkpoints.

Everything is tiny (32x32 frames, a handful of frames) and built once per session.
"""

from __future__ import annotations

import json
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from llava.video.write import write_mp4

SIDE = 32
# user mistakes: each must end in a VideoError / one error line naming the path, never a traceback
BAD_CASES = ("missing", "empty", "truncated", "text", "zero_frames", "empty_dir")
# unusual but valid: each must be handled (decoded to RGB frames, answered about)
GOOD_CASES = ("one_frame", "unicode", "gray", "alpha", "rotated", "vfr")
# (what the decoder says, as tests/video/test_decode.py checks it)
PROBLEM = {"missing": "no such file", "empty": "empty", "truncated": "cannot open", "text": "cannot open",
           "zero_frames": "no decodable", "empty_dir": "no frame images"}
VFR_PTS_MS = (0, 40, 80, 500, 520, 1400, 1450, 2900, 3000, 3033)


def levels(n: int) -> list[np.ndarray]:
    return [np.full((SIDE, SIDE, 3), 20 * i, np.uint8) for i in range(n)]


def encode(path: Path, frames: list[np.ndarray], *, codec="libx264", pix_fmt="yuv420p", in_format="rgb24",
           rotation: int | None = None, pts_ms: tuple[int, ...] | None = None) -> Path:
    """Write frames with PyAV: any codec / pixel format, optional rotation metadata and irregular timestamps."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pix_fmt
        if rotation is not None:
            stream.set_display_rotation(rotation)
        if pts_ms is not None:
            stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        for i, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format=in_format)
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="session")
def valid_mp4(tmp_path_factory) -> Path:
    """8 flat gray frames of 32x32 at 4 fps, written with llava.video.write.write_mp4 (h264, moov at the end)."""
    return write_mp4(levels(8), tmp_path_factory.mktemp("valid") / "valid.mp4", fps=4, threads=1)


@pytest.fixture(scope="session")
def video_8k(tmp_path_factory) -> Path:
    """Two 7680x4320 frames (0.5 s at 4 fps), a bright left half then a bright right half."""
    left = np.zeros((4320, 7680, 3), np.uint8)
    left[:, :3840] = 200
    path = tmp_path_factory.mktemp("8k") / "8k.mp4"
    return write_mp4([left, np.ascontiguousarray(left[:, ::-1])], path, fps=4, preset="ultrafast", threads=1)


@pytest.fixture(scope="session")
def media(tmp_path_factory, valid_mp4) -> dict[str, Path]:
    """name -> path, for every name of BAD_CASES and GOOD_CASES (all in one folder, so one --allowed-dir)."""
    folder = tmp_path_factory.mktemp("media")
    data = valid_mp4.read_bytes()
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (folder / "text.mp4").write_text("this is a text file, not a video\n" * 20)
    zeroed = bytearray(data)  # the container is intact, every coded frame is wiped
    start, end = zeroed.index(b"mdat") + 4, zeroed.index(b"moov") - 4
    zeroed[start:end] = bytes(end - start)
    (folder / "zero_frames.mp4").write_bytes(bytes(zeroed))
    (folder / "empty_dir").mkdir()
    (folder / "empty_dir" / "notes.txt").write_text("no frames here")
    write_mp4(levels(1), folder / "one_frame.mp4", fps=4, threads=1)
    shutil.copy(valid_mp4, folder / "vidéo 視頻.mp4")
    encode(folder / "gray.mkv", [np.full((SIDE, SIDE), 40 * i, np.uint8) for i in range(5)], codec="ffv1",
           pix_fmt="gray", in_format="gray")
    rgba = [np.dstack([f, np.full((SIDE, SIDE), 99, np.uint8)]) for f in levels(5)]
    encode(folder / "alpha.mov", rgba, codec="png", pix_fmt="rgba", in_format="rgba")
    rotated = np.zeros((SIDE, SIDE * 2, 3), np.uint8)
    rotated[:, :SIDE] = 255
    encode(folder / "rotated.mp4", [rotated] * 4, rotation=90)
    encode(folder / "vfr.mp4", levels(len(VFR_PTS_MS)), pts_ms=VFR_PTS_MS)
    names = {"missing": "missing.mp4", "empty": "empty.mp4", "truncated": "truncated.mp4", "text": "text.mp4",
             "zero_frames": "zero_frames.mp4", "empty_dir": "empty_dir", "one_frame": "one_frame.mp4",
             "unicode": "vidéo 視頻.mp4", "gray": "gray.mkv", "alpha": "alpha.mov", "rotated": "rotated.mp4",
             "vfr": "vfr.mp4"}
    return {case: folder / name for case, name in names.items()}


# checkpoint faults: each must end in a CheckpointError / one error line, never a traceback
CHECKPOINT_CASES = ("no_config", "config_not_json", "config_a_list", "no_weights", "corrupted_weights",
                    "truncated_weights", "index_not_a_map", "weight_missing", "config_mismatch", "non_finite",
                    "no_tokenizer")
CHECKPOINT_PROBLEM = {"no_config": "config.json: missing", "config_not_json": "not valid JSON",
                      "config_a_list": "expected a JSON object", "no_weights": "no weights found",
                      "corrupted_weights": "corrupted", "truncated_weights": "corrupted",
                      "index_not_a_map": "'weight_map' must map",
                      "weight_missing": "language_model.lm_head.weight", "config_mismatch": "does not match",
                      "non_finite": "non-finite values in bridge.read_memory_emb", "no_tokenizer": "no tokenizer"}


def broken_checkpoint(source: Path, folder: Path, case: str) -> Path:
    """A copy of the checkpoint `source` with one fault."""
    shutil.copytree(source, folder)
    weights, config = folder / "model.safetensors", folder / "config.json"
    if case == "no_config":
        config.unlink()
    elif case == "config_not_json":
        config.write_text('{"model_type": "videollamb", ')
    elif case == "config_a_list":
        config.write_text("[1, 2, 3]")
    elif case == "no_weights":
        weights.unlink()
    elif case == "corrupted_weights":
        weights.write_bytes(b"garbage, not safetensors" * 10)
    elif case == "truncated_weights":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif case == "index_not_a_map":
        (folder / "model.safetensors.index.json").write_text('{"weight_map": ["model.safetensors"]}')
    elif case == "weight_missing":
        state = load_file(str(weights))
        del state["language_model.lm_head.weight"]
        save_file(state, str(weights))
    elif case == "config_mismatch":
        raw = json.loads(config.read_text())
        raw["text_config"]["hidden_size"] *= 2
        config.write_text(json.dumps(raw))
    elif case == "non_finite":
        state = load_file(str(weights))
        state["bridge.read_memory_emb"] = state["bridge.read_memory_emb"].clone()
        state["bridge.read_memory_emb"][0, 0] = float("nan")
        save_file(state, str(weights))
    elif case == "no_tokenizer":
        for name in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"):
            (folder / name).unlink(missing_ok=True)
    else:
        raise AssertionError(case)
    return folder


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory, tiny_checkpoint) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("broken-ckpts")
    return {case: broken_checkpoint(tiny_checkpoint, root / case, case) for case in CHECKPOINT_CASES}


def assert_one_error_line(capsys, code: int, *fragments: str) -> str:
    """Exit code 1, exactly one `error: ...` line on stderr holding every fragment, and no traceback."""
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


