"""Small synthetic videos, gifs and frame folders for the video tests (written with PyAV and PIL)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

WIDTH, HEIGHT, NUM_FRAMES, FPS = 64, 48, 30, 10
STEP = 8  # frame i of the standard clip is a flat gray of level i * STEP
TOL = 6  # h264 error allowed on a flat colour


def level(i: int) -> int:
    """Gray level of frame i in the standard clip."""
    return i * STEP


def write_video(
    path: Path,
    frames: list[np.ndarray],
    *,
    fps: int = FPS,
    codec: str = "h264",
    pix_fmt: str = "yuv420p",
    in_format: str = "rgb24",
    rotation: int | None = None,
) -> Path:
    """Encode `frames` (uint8 arrays in `in_format`) into a video file at `path`."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pix_fmt
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format=in_format)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def gray_frames(n: int = NUM_FRAMES) -> list[np.ndarray]:
    return [np.full((HEIGHT, WIDTH, 3), level(i), np.uint8) for i in range(n)]


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    """30 frames of 64x48 at 10 fps (3 s); frame i is flat gray level 8 * i."""
    return write_video(tmp_path / "clip.mp4", gray_frames())


@pytest.fixture
def make_video(tmp_path: Path) -> Callable[..., Path]:
    """Factory: make_video(name, frames, **write_video options) -> path under tmp_path."""

    def make(name: str, frames: list[np.ndarray], **kwargs: object) -> Path:
        return write_video(tmp_path / name, frames, **kwargs)

    return make


@pytest.fixture
def frame_dir(tmp_path: Path) -> Path:
    """12 png frames named f1.png .. f12.png (natural order differs from string order); frame i has level 20 * i."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(12):
        Image.fromarray(np.full((HEIGHT, WIDTH, 3), 20 * i, np.uint8)).save(folder / f"f{i + 1}.png")
    (folder / "notes.txt").write_text("not a frame")
    return folder


@pytest.fixture
def gif(tmp_path: Path) -> Path:
    """10-frame palette gif at 100 ms per frame; frame i has level 25 * i."""
    frames = [Image.fromarray(np.full((HEIGHT, WIDTH, 3), 25 * i, np.uint8)).convert("P") for i in range(10)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path
