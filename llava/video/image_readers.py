"""Images read with PIL: single image files (EXIF orientation applied) and folders of frame images as a video.

PIL's errors never escape: they are re-raised as `VideoError` naming the file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from llava.errors import VideoError
from llava.video.reader import VideoReader

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
_PIL_ERRORS = (OSError, ValueError, Image.DecompressionBombError)


def pil_to_rgb(img: Image.Image) -> np.ndarray:
    """Convert any PIL image (gray, 16-bit, palette, alpha, CMYK) to an (H, W, 3) uint8 RGB array."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max(initial=0) > 255 else 255.0
        gray = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def load_image_file(path: Path, label: str | None = None) -> np.ndarray:
    """Read one image file as (H, W, 3) uint8 RGB, applying EXIF orientation; errors name the file."""
    name = label or str(path)
    try:
        with Image.open(path) as img:
            img.load()
            return pil_to_rgb(ImageOps.exif_transpose(img))
    except _PIL_ERRORS as err:
        raise VideoError(f"{name}: cannot read image ({err})") from err


def _natural_key(name: str) -> list[object]:
    """Sort key that orders 'frame2' before 'frame10'."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


class FrameDirReader(VideoReader):
    """A directory of frame images in natural name order, played at `fps` frames per second."""

    def __init__(self, path: str, fps: float = 1.0) -> None:
        folder = Path(path)
        files = sorted(
            (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
            key=lambda p: _natural_key(p.name),
        )
        if not files:
            raise VideoError(f"{path}: directory holds no frame images ({', '.join(IMAGE_EXTENSIONS)})")
        self._files: Sequence[Path] = files
        first = load_image_file(files[0])
        super().__init__(path, np.arange(len(files)) / fps, fps, (first.shape[1], first.shape[0]))

    def _decode(self, indices: np.ndarray) -> Iterator[np.ndarray]:
        for i in indices:
            frame = load_image_file(self._files[int(i)])
            if (frame.shape[1], frame.shape[0]) != self.size:
                raise VideoError(
                    f"{self._files[int(i)]}: frame size {frame.shape[1]}x{frame.shape[0]} differs from "
                    f"the first frame's {self.size[0]}x{self.size[1]} in {self.source}"
                )
            yield frame
