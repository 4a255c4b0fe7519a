"""Haystacks: the long background video the needle is hidden in, as square RGB frames at a fixed rate.

    haystack = SyntheticHaystack(seed=0, exclude=("purple", "triangle"))
    frames = haystack.frames(num_frames=320, fps=1.0, size=224)    # (320, 224, 224, 3) uint8

    haystack = VideoHaystack("my_videos/")    # every video in the folder, in name order, looped

A haystack is prefix-stable: the first n frames never depend on how many frames were asked for, so a test
video of length L is the same whatever the longest length of the grid (test videos are cached by length).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
from PIL import Image

from llava.data.shapes_world import render_frames, sample_video_spec, video_rng, without_object
from llava.errors import LlavaError, VideoError
from llava.video.decode import VIDEO_EXTENSIONS, open_video

CHUNK_SCENES = 16  # the synthetic haystack is drawn in chunks of this many scenes, each from its own stream


def fit_square(frame: np.ndarray, size: int) -> np.ndarray:
    """Resize the short side to `size` and crop the centre: (H, W, 3) -> (size, size, 3) uint8."""
    h, w = frame.shape[:2]
    if (h, w) == (size, size):
        return frame
    scale = size / min(h, w)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    resized = np.asarray(Image.fromarray(frame).resize((new_w, new_h), Image.Resampling.BILINEAR))
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return np.ascontiguousarray(resized[top : top + size, left : left + size])


class Haystack(ABC):
    """Frames of a long background video; `identity` names the source in cache keys."""

    identity: str

    def __init__(self) -> None:
        self._built: dict[tuple[float, int], np.ndarray] = {}

    def frames(self, num_frames: int, fps: float, size: int) -> np.ndarray:
        """The first `num_frames` frames at `fps` as (num_frames, size, size, 3) uint8 (kept for reuse)."""
        if num_frames < 1:
            raise LlavaError(f"a haystack needs at least one frame, got {num_frames}")
        key = (float(fps), int(size))
        held = self._built.get(key)
        if held is None or len(held) < num_frames:
            held = self._build(num_frames, float(fps), int(size))
            self._built[key] = held
        return held[:num_frames]

    @abstractmethod
    def _build(self, num_frames: int, fps: float, size: int) -> np.ndarray:
        """Exactly `num_frames` frames (num_frames, size, size, 3) uint8."""


class SyntheticHaystack(Haystack):
    """Scenes of the synthetic world (coloured shapes, hard cuts), drawn in seeded chunks of scenes.

    `exclude` is the needle's (colour, shape): every scene of its colour gets another colour, so the needle is
    the only object of its colour in the video. A centred needle over a scene object of its own colour merges
    with it into one silhouette and cannot be told apart (it did in 22 of the 120 cells of the demo grid).
    """

    def __init__(self, seed: int = 0, exclude: tuple[str, str] | None = None) -> None:
        super().__init__()
        self.seed = seed
        self.exclude = exclude
        reserved = f":without-colour={exclude[0]}" if exclude else ""
        self.identity = f"synthetic:seed={seed}{reserved}"

    def _build(self, num_frames: int, fps: float, size: int) -> np.ndarray:
        out = np.empty((num_frames, size, size, 3), dtype=np.uint8)
        filled, chunk = 0, 0
        while filled < num_frames:
            spec = sample_video_spec(
                video_rng(self.seed, chunk), f"haystack_{chunk}", CHUNK_SCENES, CHUNK_SCENES, fps=fps, size=size
            )
            if self.exclude:
                spec = without_object(spec, self.exclude, whole_colour=True)
            for frame in render_frames(spec):
                out[filled] = frame
                filled += 1
                if filled == num_frames:
                    break
            chunk += 1
        return out


class VideoHaystack(Haystack):
    """The videos of a folder (name order) sampled at the test rate, concatenated and looped; every frame is
    resized (short side) and centre-cropped to a square."""

    def __init__(self, folder: str | Path) -> None:
        super().__init__()
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise LlavaError(f"haystack folder {self.folder} does not exist or is not a folder")
        self.paths = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
        if not self.paths:
            raise LlavaError(f"haystack folder {self.folder} holds no videos ({', '.join(VIDEO_EXTENSIONS)})")
        self.identity = f"videos:{self.folder.name}:{files_digest(self.paths)}"

    def _build(self, num_frames: int, fps: float, size: int) -> np.ndarray:
        out = np.empty((num_frames, size, size, 3), dtype=np.uint8)
        filled = 0
        while True:  # loop the folder until full; a pass that adds nothing is an error
            before = filled
            for path in self.paths:
                filled = self._append(path, out, filled, fps, size)
                if filled == num_frames:
                    return out
            if filled == before:
                raise VideoError(f"haystack folder {self.folder}: no frames could be sampled at {fps:g} fps")

    @staticmethod
    def _append(path: Path, out: np.ndarray, filled: int, fps: float, size: int) -> int:
        with open_video(path) as video:
            for _, frame in video.iter_frames(fps):
                if filled == len(out):
                    break
                out[filled] = fit_square(frame, size)
                filled += 1
        return filled


def files_digest(paths: list[Path]) -> str:
    """A short digest of the files' names, byte sizes and first megabyte: changes when a video does."""
    digest = hashlib.sha1()
    for path in paths:
        digest.update(f"{path.name}\0{path.stat().st_size}\0".encode())
        with open(path, "rb") as handle:
            digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:12]
