"""Pixel preprocessing: shapes, CLIP normalisation values, centre crop, pad-to-square, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from llava.video.transforms import (
    CLIP_MEAN,
    CLIP_STD,
    VisualProcessor,
    center_crop,
    preprocess_frames,
    preprocess_image,
    release_short_side_size,
    short_side_size,
)

MEAN_RGB = tuple(round(m * 255) for m in CLIP_MEAN)
ONE_LEVEL = 1 / 255 / min(CLIP_STD)  # one uint8 step, normalised


def expected_value(rgb: tuple[int, int, int]) -> torch.Tensor:
    """Normalised value of a flat colour, shape (3, 1, 1)."""
    return ((torch.tensor(rgb) / 255.0 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)).view(3, 1, 1)


def three_bands(height: int, width: int) -> np.ndarray:
    """Left third red, middle third green, right third blue."""
    img = np.zeros((height, width, 3), np.uint8)
    third = width // 3
    img[:, :third, 0] = 255
    img[:, third : 2 * third, 1] = 255
    img[:, 2 * third :, 2] = 255
    return img


def test_frames_shape_and_dtype_from_numpy_and_torch() -> None:
    frames = np.random.default_rng(0).integers(0, 256, (5, 48, 64, 3), dtype=np.uint8)
    out = preprocess_frames(frames)
    assert out.shape == (5, 3, 224, 224) and out.dtype == torch.float32
    torch.testing.assert_close(preprocess_frames(torch.from_numpy(frames)), out)
    torch.testing.assert_close(preprocess_frames(frames), out)  # deterministic


def test_mean_colour_normalises_to_zero_and_white_to_known_value() -> None:
    frames = np.stack([np.full((48, 64, 3), MEAN_RGB, np.uint8), np.full((48, 64, 3), 255, np.uint8)])
    out = preprocess_frames(frames, size=32)
    assert out[0].abs().max() < ONE_LEVEL
    torch.testing.assert_close(out[1], expected_value((255, 255, 255)).expand(3, 32, 32), atol=1e-5, rtol=0)


def test_short_side_rule() -> None:
    assert short_side_size(48, 64, 224) == (224, 298)
    assert short_side_size(300, 100, 50) == (150, 50)
    assert short_side_size(224, 224, 224) == (224, 224)


@pytest.mark.parametrize("size", [100, 50])
def test_centre_crop_of_wide_frame_keeps_the_centre(size: int) -> None:
    out = preprocess_frames(three_bands(100, 300)[None], size=size)[0]
    green = expected_value((0, 255, 0))
    assert out.shape == (3, size, size)
    inner = out[:, :, 2:-2]  # away from the blended band edges
    torch.testing.assert_close(inner, green.expand_as(inner), atol=1e-4, rtol=0)


def test_centre_crop_of_tall_frame_keeps_the_centre() -> None:
    tall = np.ascontiguousarray(three_bands(90, 300).transpose(1, 0, 2))  # bands now stacked vertically
    out = preprocess_frames(tall[None], size=90)[0]
    torch.testing.assert_close(out, expected_value((0, 255, 0)).expand(3, 90, 90), atol=1e-4, rtol=0)


def test_center_crop_offsets() -> None:
    x = torch.arange(10.0).view(1, 10).expand(3, 10)  # column index as value
    assert center_crop(x[:, None, :].expand(3, 3, 10), 3)[0, 0].tolist() == [4.0, 5.0, 6.0]  # round(3.5) = 4
    with pytest.raises(ValueError):
        center_crop(torch.zeros(3, 2, 2), 3)


def test_gray_and_alpha_frames() -> None:
    gray = np.full((2, 20, 20), 128, np.uint8)
    rgba = np.full((2, 20, 20, 4), 128, np.uint8)
    for frames in (gray, gray[..., None], rgba):
        out = preprocess_frames(frames, size=20)
        torch.testing.assert_close(out, expected_value((128, 128, 128)).expand(2, 3, 20, 20), atol=1e-5, rtol=0)


def test_image_shape_and_values() -> None:
    img = np.full((60, 80, 3), 255, np.uint8)
    out = preprocess_image(img, size=32)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    torch.testing.assert_close(out, expected_value((255, 255, 255)).expand(3, 32, 32), atol=1e-5, rtol=0)
    torch.testing.assert_close(preprocess_image(Image.fromarray(img), size=32), out)
    assert preprocess_image(np.full((60, 80), 7, np.uint8), size=32).shape == (3, 32, 32)
    assert preprocess_image(np.full((60, 80, 4), 7, np.uint8), size=32).shape == (3, 32, 32)


def test_pad_to_square_uses_the_mean_colour() -> None:
    wide = np.full((50, 100, 3), 255, np.uint8)  # white, twice as wide as tall
    out = preprocess_image(wide, size=100, pad_to_square=True)
    assert out.shape == (3, 100, 100)
    pad_rgb = tuple(int(m * 255) for m in CLIP_MEAN)
    torch.testing.assert_close(out[:, :20], expected_value(pad_rgb).expand(3, 20, 100), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[:, -20:], expected_value(pad_rgb).expand(3, 20, 100), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[:, 30:70], expected_value((255, 255, 255)).expand(3, 40, 100), atol=1e-5, rtol=0)
    unpadded = preprocess_image(wide, size=100)  # crop instead: all white
    torch.testing.assert_close(unpadded, expected_value((255, 255, 255)).expand(3, 100, 100), atol=1e-5, rtol=0)


def test_image_centre_crop_keeps_the_centre() -> None:
    out = preprocess_image(three_bands(100, 300), size=100)
    torch.testing.assert_close(out[:, :, 3:-3], expected_value((0, 255, 0)).expand(3, 100, 94), atol=1e-4, rtol=0)


def test_visual_processor_round_trip() -> None:
    proc = VisualProcessor(size=32)
    frames = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    video = proc.video(frames)
    assert video.shape == (3, 3, 32, 32)
    back = proc.denormalize(video)
    assert back.shape == (3, 32, 32, 3) and back.dtype == np.uint8
    assert np.abs(back.astype(int) - frames.astype(int)).max() <= 1
    image = proc.image(frames[0])
    np.testing.assert_array_equal(proc.denormalize(image), back[0])


def test_visual_processor_pads_images_when_asked() -> None:
    wide = np.full((16, 32, 3), 255, np.uint8)
    padded = VisualProcessor(size=32, pad_images=True).image(wide)
    plain = VisualProcessor(size=32).image(wide)
    assert padded[:, 0].mean() < plain[:, 0].mean()  # top rows are the grey pad, not white


def test_frames_larger_than_a_chunk_are_each_preprocessed_once() -> None:
    """720p frames are resized a few at a time (the pixel cap); every frame lands at its own place in the output."""
    frames = np.stack([np.full((720, 1280, 3), 10 * i, np.uint8) for i in range(19)])
    out = preprocess_frames(frames, size=48)
    assert out.shape == (19, 3, 48, 48)
    means = out.mean(dim=(1, 2, 3))
    assert torch.all(means[1:] > means[:-1])  # frame i is brighter than frame i - 1: none overwritten or left empty


def full_frame_reference(frames: np.ndarray, size: int, antialias: bool) -> torch.Tensor:
    """The straightforward computation: every frame float at full size, one `F.interpolate`, crop, normalise."""
    h, w = frames.shape[1:3]
    new_h, new_w = short_side_size(h, w, size) if antialias else release_short_side_size(h, w, size)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
    if (new_h, new_w) != (h, w):
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=antialias)
    x = center_crop(x, size)
    return (x - torch.tensor(CLIP_MEAN).view(3, 1, 1)) / torch.tensor(CLIP_STD).view(3, 1, 1)


def textured_frames(count: int, height: int, width: int) -> np.ndarray:
    """Smooth gradients under noise, so that every weight of the resize shows in the output."""
    rows, cols = np.mgrid[0:height, 0:width]
    smooth = (np.sin(cols / 37.0) + np.cos(rows / 23.0)) * 60.0 + 128.0
    noise = np.random.default_rng(height * 7919 + width).normal(0.0, 40.0, (count, height, width, 3))
    return np.clip(smooth[None, ..., None] + noise, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    ("count", "height", "width", "size"),
    [
        (2, 720, 1280, 224),
        (1, 1080, 1920, 224),
        (1, 2160, 3840, 224),
        (1, 2160, 3840, 336),
        (1, 1920, 1080, 224),  # portrait: the rows keep their width, only the columns shrink
        (3, 481, 853, 224),
        (2, 333, 777, 336),
        (40, 64, 96, 32),  # several frames per chunk, and a last chunk that is not full
        (2, 100, 300, 224),  # upscaled
        (2, 549, 252, 224),  # the release's sizes: 487 rows, one fewer than the default's
        (2, 224, 400, 224),  # the short side already at size: nothing resized
    ],
)
@pytest.mark.parametrize("antialias", [True, False], ids=["default", "release"])
def test_banded_resize_gives_the_full_frame_numbers(
    count: int, height: int, width: int, size: int, antialias: bool
) -> None:
    """Frames are resized a band of rows at a time, never float at full size; the model inputs are those of one
    full-frame `F.interpolate`. Antialiased: bit-identical. Without antialias, torch's single-threaded kernel rounds
    the product of the row and column weights, its multi-threaded one (and the bands) each weight on its own: up
    to 4 float32 steps apart near 2.0 (the full-frame numbers themselves move that much with the thread count)."""
    frames = textured_frames(count, height, width)
    got = VisualProcessor(size=size, resize_antialias=antialias).video(frames)
    want = full_frame_reference(frames, size, antialias)
    if antialias:
        assert torch.equal(got, want)
    else:
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
