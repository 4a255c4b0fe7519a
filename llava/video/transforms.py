"""Deterministic pixel preprocessing for the vision towers (torch + PIL, no torchvision).

Video frames: x/255, resize the short side to `size` (bilinear, antialiased; without antialias for the released
checkpoints, as the release's pytorchvideo ShortSideScale), centre crop, CLIP normalisation.
Images: optional pad to square with the mean colour (LLaVA's `image_aspect_ratio=pad`), resize the short side
(bicubic), centre crop, CLIP normalisation. No flips and no randomness: the same input gives the same tensor.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from llava.video.reader import FrameRows

CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
_FRAME_CHUNK = 32  # frames resized at once, so a long clip never holds all its intermediate float frames
_BAND_PIXELS = 1 << 18  # pixels turned into float at once (3 MB as float RGB): a 4K frame in 32 bands of rows


def _to_rgb_uint8(array: np.ndarray) -> np.ndarray:
    """(..., H, W) gray, (..., H, W, 1|3|4) -> (..., H, W, 3) uint8 (alpha dropped)."""
    if array.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {array.dtype}")
    if array.shape[-1] not in (1, 3, 4):
        array = array[..., None]  # a gray image without a channel axis
    if array.shape[-1] == 1:
        return np.repeat(array, 3, axis=-1)
    return array[..., :3]


def _frames_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (T, H, W, C) array or tensor -> uint8 tensor (T, H, W, 3)."""
    array = frames.cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if array.ndim == 3 and array.shape[-1] not in (1, 3, 4):
        array = array[..., None]  # (T, H, W) gray
    if array.ndim != 4:
        raise ValueError(f"expected frames of shape (T, H, W, 3), got {array.shape}")
    return torch.from_numpy(np.ascontiguousarray(_to_rgb_uint8(array)))


def short_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """(new_h, new_w) with the short side equal to `size` and the long side scaled (floored)."""
    if height <= width:
        return size, max(size, int(math.floor(width * size / height)))
    return max(size, int(math.floor(height * size / width))), size


def release_short_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """(new_h, new_w) as the release's ShortSideScale computes it: floor(long / short * size), which can be one
    less than `short_side_size` where long * size / short is a whole number."""
    if width < height:
        return int(math.floor(height / width * size)), size
    return size, int(math.floor(width / height * size))


def _crop_start(length: int, size: int) -> int:
    """Offset of the central `size` window along an axis of `length` (round() like CenterCropVideo)."""
    return int(round((length - size) / 2.0))


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """Crop the central `size` x `size` window of (..., H, W); offsets use round() like CenterCropVideo."""
    h, w = x.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"cannot crop {size}x{size} out of {h}x{w}")
    top, left = _crop_start(h, size), _crop_start(w, size)
    return x[..., top : top + size, left : left + size]


def _normalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """(x - mean) / std along the channel axis (-3)."""
    m = torch.tensor(mean, dtype=x.dtype).view(3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(3, 1, 1)
    return (x - m) / s


def _bilinear(x: torch.Tensor, height: int, width: int, antialias: bool) -> torch.Tensor:
    """(N, C, H, W) float -> (N, C, height, width), bilinear with half-pixel centres."""
    return F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=antialias)


def _band_reader(frames: torch.Tensor | FrameRows) -> tuple[int, Callable[[int], torch.Tensor]]:
    """(rows per band, top -> uint8 (t, rows, W, 3) band) of uint8 frames (t, H, W, 3), or of one `FrameRows`."""
    if isinstance(frames, torch.Tensor):
        rows = max(1, _BAND_PIXELS // (frames.shape[0] * frames.shape[2]))
        return rows, lambda top: frames[:, top : top + rows]
    # numpy's new axis has stride 0, as a slice of a whole frame has: torch's resize runs about 30% slower on the
    # same band whose batch stride is the band's size (torch 2.13, channels-last input)
    return frames.band_rows, lambda top: torch.from_numpy(frames.band(top)[None])


def _rows_resized(frames: torch.Tensor | FrameRows, new_w: int, size: int, antialias: bool) -> torch.Tensor:
    """uint8 (t, H, W, 3) (or one `FrameRows`, t = 1) -> float (t, 3, H, size): x/255, each row resized to
    `new_w` and cut to its central `size` columns. Rows are independent here, so this is done a band of rows at a
    time and the frames are never float at full size; the weights depend only on W and new_w, the same for every
    band."""
    h, w = frames.shape[-3:-1]
    t = frames.shape[0] if isinstance(frames, torch.Tensor) else 1
    rows, band_at = _band_reader(frames)
    left = _crop_start(new_w, size)
    out = torch.empty((t, 3, h, size), dtype=torch.float32)
    for top in range(0, h, rows):
        band = band_at(top).permute(0, 3, 1, 2).float().div_(255.0)
        if new_w != w:
            band = _bilinear(band, band.shape[2], new_w, antialias)
        out[:, :, top : top + rows] = band[..., left : left + size]
    return out


def _resized(
    frames: torch.Tensor | FrameRows, size: int, mean: tuple[float, ...], std: tuple[float, ...], antialias: bool
) -> torch.Tensor:
    """uint8 (t, H, W, 3) frames or one `FrameRows` -> float32 (t, 3, size, size): the rows pass, the columns
    pass, centre crop, normalise."""
    h, w = frames.shape[-3:-1]
    new_h, new_w = short_side_size(h, w, size) if antialias else release_short_side_size(h, w, size)
    x = _rows_resized(frames, new_w, size, antialias)
    if new_h != h:
        x = _bilinear(x, new_h, size, antialias)
    return _normalize(center_crop(x, size), mean, std)


def preprocess_frames(
    frames: np.ndarray | torch.Tensor,
    size: int = 224,
    mean: tuple[float, float, float] = CLIP_MEAN,
    std: tuple[float, float, float] = CLIP_STD,
    antialias: bool = True,
) -> torch.Tensor:
    """uint8 (T, H, W, 3) frames -> float32 (T, 3, size, size): x/255, short side to size, centre crop, normalise.

    antialias False: the release's resize (pytorchvideo ShortSideScale: bilinear without antialias, its sizes).
    The resize runs as two passes, the rows (banded, cut to the crop's columns) then the columns: the same numbers
    as one full-frame `F.interpolate`, which makes the same two passes (antialiased: bit-identical; without
    antialias: bit-identical to torch's multi-threaded kernel, within 1e-6 of its single-threaded one, which rounds
    the product of the two weights)."""
    x = _frames_tensor(frames)
    t, h, w = x.shape[:3]
    out = torch.empty((t, 3, size, size), dtype=torch.float32)
    step = max(1, min(_FRAME_CHUNK, _BAND_PIXELS // max(1, h * w)))
    for start in range(0, t, step):
        out[start : start + step] = _resized(x[start : start + step], size, mean, std, antialias)
    return out


def expand_to_square(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Pad the shorter side equally on both sides with `background` (LLaVA's expand2square)."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    canvas = Image.new(image.mode, (side, side), background)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def preprocess_image(
    image: np.ndarray | Image.Image,
    size: int = 224,
    pad_to_square: bool = False,
    mean: tuple[float, float, float] = CLIP_MEAN,
    std: tuple[float, float, float] = CLIP_STD,
) -> torch.Tensor:
    """uint8 (H, W, 3) image or PIL image -> float32 (3, size, size).

    Optionally pads to square with the mean colour first, then resizes the short side to `size` (bicubic),
    centre crops and normalises, as the CLIP image processor does.
    """
    if isinstance(image, Image.Image):
        pil = image.convert("RGB")
    else:
        pil = Image.fromarray(_to_rgb_uint8(np.asarray(image)))
    if pad_to_square:
        pil = expand_to_square(pil, (int(mean[0] * 255), int(mean[1] * 255), int(mean[2] * 255)))
    new_h, new_w = short_side_size(pil.height, pil.width, size)
    if (new_h, new_w) != (pil.height, pil.width):
        pil = pil.resize((new_w, new_h), resample=Image.Resampling.BICUBIC)
    x = torch.from_numpy(np.asarray(pil, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0
    return _normalize(center_crop(x, size), mean, std)


@dataclass(frozen=True)
class VideoTransform:
    """`preprocess_frames` with its settings bound (`VisualProcessor.video`); a reader hands it a large frame a band
    of rows at a time (`from_rows`, a `BandedTransform`), which gives the same numbers as the whole frame."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    antialias: bool

    def __call__(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 (T, H, W, 3) -> float32 (T, 3, size, size)."""
        return preprocess_frames(frames, self.size, self.mean, self.std, self.antialias)

    def from_rows(self, frame: FrameRows) -> torch.Tensor:
        """One frame read band by band -> float32 (1, 3, size, size)."""
        return _resized(frame, self.size, self.mean, self.std, self.antialias)


@dataclass
class VisualProcessor:
    """The tower's preprocessing in one object: `video(frames)`, `image(img)`, and `denormalize` for debugging."""

    size: int = 224
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    pad_images: bool = False
    resize_antialias: bool = True  # False: frames are resized as the released checkpoints were fed

    @property
    def video(self) -> VideoTransform:
        """Frames to model inputs: `video(frames)`, uint8 (T, H, W, 3) -> float32 (T, 3, size, size)."""
        return VideoTransform(self.size, self.mean, self.std, self.resize_antialias)

    def image(self, image: np.ndarray | Image.Image) -> torch.Tensor:
        """uint8 (H, W, 3) or PIL image -> float32 (3, size, size)."""
        return preprocess_image(image, self.size, self.pad_images, self.mean, self.std)

    def denormalize(self, pixels: torch.Tensor) -> np.ndarray:
        """Normalised (..., 3, H, W) -> uint8 (..., H, W, 3), for looking at what the tower sees."""
        x = pixels.detach().float().cpu()
        x = x * torch.tensor(self.std).view(3, 1, 1) + torch.tensor(self.mean).view(3, 1, 1)
        x = (x * 255.0).round().clamp(0, 255).to(torch.uint8)
        return x.movedim(-3, -1).numpy()
