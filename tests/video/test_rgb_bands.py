"""Large frames reach the model's transform a band of RGB rows at a time: the same numbers as the whole frame, and
no whole-frame RGB picture is ever made."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from av.video.reformatter import VideoReformatter

from llava.video.decode import open_video
from llava.video.reader import BandedTransform, FrameRows, transform_in_batches
from llava.video.rgb_bands import RGBBands, band_rows_for, converts_in_bands, may_convert_in_bands
from llava.video.transforms import VideoTransform, VisualProcessor


def random_picture(width: int, height: int, fmt: str, seed: int = 1) -> av.VideoFrame:
    frame = av.VideoFrame(width, height, fmt)
    rng = np.random.default_rng(seed)
    for plane in frame.planes:
        np.frombuffer(memoryview(plane), np.uint8)[:] = rng.integers(0, 256, plane.buffer_size, dtype=np.uint8)
    return frame


@pytest.mark.parametrize("turns", [0, 1, 2, 3])
@pytest.mark.parametrize(
    ("width", "height", "fmt"),
    [
        (3840, 2160, "yuv420p"),
        (1280, 720, "yuvj420p"),
        (854, 480, "yuv420p"),
        (334, 778, "yuv420p"),
        (640, 2182, "yuv420p"),
    ],  # 2182 = 2 x 1091: bands of 72 rows and a last one of 22
)
def test_bands_give_the_whole_upright_pictures_rgb(width: int, height: int, fmt: str, turns: int) -> None:
    picture, reformatter = random_picture(width, height, fmt), VideoReformatter()
    whole = np.rot90(reformatter.reformat(picture, format="rgb24").to_ndarray(), turns)
    bands = RGBBands(picture, reformatter, turns)
    got = np.concatenate([bands.band(top) for top in range(0, len(whole), bands.band_rows)])
    assert bands.shape == whole.shape and np.array_equal(got, whole)


class RecordingReformatter:
    """A converter to RGB that notes the size of every picture it is given."""

    def __init__(self) -> None:
        self.inner, self.pixels = VideoReformatter(), []

    def reformat(self, frame: av.VideoFrame, format: str) -> av.VideoFrame:  # noqa: A002 (PyAV's own name)
        self.pixels.append(frame.width * frame.height)
        return self.inner.reformat(frame, format=format)


@pytest.mark.parametrize("turns", [0, 1, 2, 3])
def test_no_band_converts_more_than_its_own_rows(turns: int) -> None:
    recording = RecordingReformatter()
    bands = RGBBands(random_picture(3840, 2160, "yuv420p"), recording, turns)  # type: ignore[arg-type]
    for top in range(0, bands.shape[0], bands.band_rows):
        bands.band(top)
    assert bands.shape[0] % bands.band_rows == 0  # equal bands: one converter setting for all of them
    assert len(recording.pixels) == bands.shape[0] // bands.band_rows
    assert max(recording.pixels) == bands.band_rows * bands.shape[1]  # one band's pixels, never the whole picture's


@pytest.mark.parametrize(
    ("height", "rows"), [(2160, 72), (3840, 64), (4320, 72), (1600, 64), (1440, 72), (2162, 46), (2182, 72)]
)
def test_bands_cut_the_picture_into_equal_parts_where_they_can(height: int, rows: int) -> None:
    assert band_rows_for(height) == rows


@pytest.mark.parametrize(("width", "height"), [(3840, 2160), (333, 778)])
def test_a_picture_kind_is_confirmed_on_random_pixels(width: int, height: int) -> None:
    assert converts_in_bands(random_picture(width, height, "yuv420p"), VideoReformatter())


@pytest.mark.parametrize(
    ("width", "height", "fmt"), [(640, 361, "yuv420p"), (640, 360, "yuv420p10le"), (640, 360, "yuv422p")]
)
def test_pictures_whose_conversion_may_reach_across_rows_are_converted_whole(width: int, height: int, fmt: str) -> None:
    picture = random_picture(width, height, fmt)
    assert not may_convert_in_bands(picture) and not converts_in_bands(picture, VideoReformatter())


@pytest.fixture(scope="module", params=[0, 90])
def uhd_clip(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """Three 3840x2160 H.264 frames of colour gradients and noise (a conversion error cannot hide in flat areas),
    stored as shown and with a phone's rotation of 90 degrees."""
    path, frames = tmp_path_factory.mktemp("uhd") / f"uhd_{request.param}.mp4", 3
    rng = np.random.default_rng(7)
    ramp = np.linspace(0, 255, 3840, dtype=np.float32)[None, :, None]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("h264", rate=25, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 3840, 2160, "yuv420p"
        if request.param:
            stream.set_display_rotation(request.param)
        for i in range(frames):
            noise = rng.integers(0, 40, (2160, 3840, 3), dtype=np.uint8)
            picture = ((ramp * [1.0, 0.5, 0.2] + 60 * i) % 216).astype(np.uint8) + noise
            for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


class WatchedTransform:
    """A `BandedTransform` around `VideoTransform`, counting the frames it is given band by band."""

    def __init__(self, inner: VideoTransform) -> None:
        self.inner, self.banded_frames = inner, 0

    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        return self.inner(frames)

    def from_rows(self, frame: FrameRows) -> torch.Tensor:
        self.banded_frames += 1
        return self.inner.from_rows(frame)


@pytest.mark.parametrize("antialias", [True, False])
def test_4k_frames_reach_the_transform_in_bands_with_the_whole_frames_numbers(uhd_clip: Path, antialias: bool) -> None:
    video_transform = VisualProcessor(size=64, resize_antialias=antialias).video
    watched = WatchedTransform(video_transform)
    assert isinstance(video_transform, BandedTransform) and isinstance(watched, BandedTransform)
    with open_video(uhd_clip) as video:
        banded = video.get_frames([2, 0, 1], watched)
        whole = video_transform(video.get_frames([2, 0, 1]))
    assert torch.equal(banded, whole)
    assert watched.banded_frames == 3


def test_frames_that_fit_a_batch_and_plain_transforms_get_whole_arrays(clip: Path, uhd_clip: Path) -> None:
    processor = VisualProcessor(size=32)
    watched = WatchedTransform(processor.video)
    with open_video(clip) as video:  # 64x48: many frames to a batch, as arrays
        small = video.get_frames(range(10), watched)
    assert watched.banded_frames == 0 and small.shape == (10, 3, 32, 32)
    heights: list[int] = []

    def plain(frames: np.ndarray) -> torch.Tensor:  # not a BandedTransform: whole frames
        heights.append(frames.shape[1])
        return processor.video(frames)

    with open_video(uhd_clip) as video:
        video.get_frames([0, 1], plain)
        assert heights == [video.size[1]] * 2


class FlatRows:
    """A `FrameRows` of one grey level, 4 x 4, in bands of 2 rows."""

    band_rows = 2
    shape = (4, 4, 3)

    def __init__(self, level: int) -> None:
        self.level = level

    def band(self, top: int) -> np.ndarray:
        return np.full((2, 4, 3), self.level, np.uint8)


class MeanTransform:
    """A `BandedTransform` giving each frame's mean level."""

    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(frames.mean(axis=(1, 2, 3)))

    def from_rows(self, frame: FrameRows) -> torch.Tensor:
        bands = [frame.band(top) for top in range(0, frame.shape[0], frame.band_rows)]
        return torch.tensor([np.concatenate(bands).mean()], dtype=torch.float64)


def test_frames_in_bands_keep_their_place_among_batched_frames() -> None:
    small = [np.full((4, 4, 3), level, np.uint8) for level in (1, 2, 4)]
    frames = [small[0], small[1], FlatRows(3), small[2]]  # a size that changes mid-file: batched, banded, batched
    out = transform_in_batches(iter(frames), 4, MeanTransform())
    assert out.tolist() == [1.0, 2.0, 3.0, 4.0]
