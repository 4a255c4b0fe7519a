"""Decoding: right frames by index, fps sampling, streaming iteration, formats, and bad input as VideoError."""

from __future__ import annotations

import inspect
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from llava.errors import VideoError
from llava.video.decode import (
    load_image,
    load_video,
    load_video_fps,
    open_video,
    uniform_indices,
)
from llava.video.image_readers import FrameDirReader
from llava.video.reader import BATCH_BYTES
from llava.video.transforms import VisualProcessor
from llava.video.pyav_file import PyAVFileReader
from llava.video.pyav_live import PyAVLiveReader
from llava.video.timeline import rate_indices
from tests.video.conftest import FPS, HEIGHT, NUM_FRAMES, TOL, WIDTH, gray_frames, level


def levels(frames: np.ndarray) -> np.ndarray:
    """Mean gray level of each frame."""
    return frames.reshape(len(frames), -1).mean(axis=1)


def assert_levels(frames: np.ndarray, expected: list[int] | np.ndarray) -> None:
    np.testing.assert_allclose(levels(frames), np.asarray(expected, dtype=float), atol=TOL)


# ---------------------------------------------------------------- sampling rules


def test_uniform_indices_follow_linspace_truncation() -> None:
    np.testing.assert_array_equal(uniform_indices(30, 8), [0, 4, 8, 12, 16, 20, 24, 29])
    np.testing.assert_array_equal(uniform_indices(10, 4), np.linspace(0, 9, 4).astype(int))
    np.testing.assert_array_equal(uniform_indices(3, 5), [0, 0, 1, 1, 2])  # repeats when asked for more
    with pytest.raises(ValueError):
        uniform_indices(0, 4)


def cfr(num_total: int, native_fps: float) -> np.ndarray:
    return np.arange(num_total) / native_fps


def test_rate_indices_at_a_constant_rate() -> None:
    np.testing.assert_array_equal(rate_indices(cfr(30, 10.0), 1.0, 0.05), [0, 10, 20])
    np.testing.assert_array_equal(rate_indices(cfr(30, 10.0), 2.5, 0.05), [0, 4, 8, 12, 16, 20, 24, 28])
    np.testing.assert_array_equal(rate_indices(cfr(5, 10.0), 50.0, 0.05), np.arange(5))  # never repeats a frame
    np.testing.assert_array_equal(rate_indices(cfr(100, 30.0), 1.0, 0.5 / 30), [0, 30, 60, 90])


def test_rate_indices_follow_presentation_times_not_frame_counts() -> None:
    """25 fps for 5 s, then 4 fps for 5 s: one frame per second of presentation time, not 9 of 10 from the start."""
    times = np.concatenate([np.arange(125) / 25.0, 5.0 + np.arange(20) / 4.0])
    idx = rate_indices(times, 1.0, 0.02)
    np.testing.assert_allclose(times[idx], np.arange(10.0))
    assert (times[idx] >= 5.0).sum() == 5


# ---------------------------------------------------------------- files


def test_metadata(clip: Path) -> None:
    with open_video(clip) as video:
        assert isinstance(video, PyAVFileReader)
        assert (video.num_frames, video.fps, video.size) == (NUM_FRAMES, FPS, (WIDTH, HEIGHT))
        np.testing.assert_allclose(video.times, np.arange(NUM_FRAMES) / FPS)
        assert video.duration == pytest.approx(3.0)


def test_get_frames_returns_the_requested_frames(clip: Path) -> None:
    with open_video(clip) as video:
        frames = video.get_frames([29, 0, 7, 7, 15])
        assert frames.shape == (5, HEIGHT, WIDTH, 3) and frames.dtype == np.uint8
        assert_levels(frames, [level(29), level(0), level(7), level(7), level(15)])
        assert video.get_frames([]).shape == (0, HEIGHT, WIDTH, 3)


def test_load_video_uniform(clip: Path) -> None:
    frames, seconds = load_video(clip, num_frames=8)
    idx = [0, 4, 8, 12, 16, 20, 24, 29]
    assert frames.shape == (8, HEIGHT, WIDTH, 3)
    assert_levels(frames, [level(i) for i in idx])
    np.testing.assert_allclose(seconds, np.array(idx) / FPS)


def test_load_video_accepts_an_open_reader(clip: Path) -> None:
    with open_video(clip) as video:
        frames, _ = load_video(video, num_frames=3)
    assert_levels(frames, [level(0), level(14), level(29)])


def test_load_video_fps_timestamps(clip: Path) -> None:
    frames, seconds = load_video_fps(clip, fps=1.0)
    np.testing.assert_allclose(seconds, [0.0, 1.0, 2.0])
    assert_levels(frames, [level(0), level(10), level(20)])
    _, seconds = load_video_fps(clip, fps=2.5)
    np.testing.assert_allclose(seconds, [0.0, 0.4, 0.8, 1.2, 1.6, 2.0, 2.4, 2.8])


def test_load_video_fps_cap_spreads_over_whole_video(clip: Path) -> None:
    frames, seconds = load_video_fps(clip, fps=10.0, max_frames=4)
    np.testing.assert_allclose(seconds, np.array([0, 9, 19, 29]) / FPS)
    assert_levels(frames, [level(0), level(9), level(19), level(29)])


def test_load_video_fps_multiple_of(clip: Path) -> None:
    _, seconds = load_video_fps(clip, fps=10.0, multiple_of=8)  # 30 -> 24 frames
    assert len(seconds) == 24 and seconds[0] == 0.0 and seconds[-1] == pytest.approx(2.9)
    _, seconds = load_video_fps(clip, fps=1.0, multiple_of=8)  # 3 -> at least 8
    np.testing.assert_allclose(seconds, uniform_indices(NUM_FRAMES, 8) / FPS)


def test_iter_frames_streams_one_frame_at_a_time(clip: Path) -> None:
    with open_video(clip) as video:
        it = video.iter_frames(fps=2.5)
        assert inspect.isgenerator(it)
        t0, first = next(it)  # nothing after the first chunk has been decoded yet
        assert t0 == 0.0 and first.shape == (HEIGHT, WIDTH, 3)
        rest = list(it)
    seconds = [t0] + [t for t, _ in rest]
    np.testing.assert_allclose(seconds, [0.0, 0.4, 0.8, 1.2, 1.6, 2.0, 2.4, 2.8])
    assert_levels(np.stack([first] + [f for _, f in rest]), [level(i) for i in range(0, 30, 4)])


def test_a_transform_sees_a_few_frames_at_a_time_and_gives_what_it_would_give_all_at_once(make_video) -> None:
    """Frames become model inputs while they are decoded: no call holds more than BATCH_BYTES of pixels."""
    path = make_video("long.mp4", gray_frames(30) * 4)  # 120 frames
    batches: list[int] = []

    def transform(frames: np.ndarray) -> torch.Tensor:
        batches.append(len(frames))
        return torch.from_numpy(frames.astype(np.float32)).mean(dim=(1, 2, 3))

    with open_video(path) as video:
        indices = [119, 3, 3, 60] + list(range(0, 120, 2))
        means = video.get_frames(indices, transform)
        expected = torch.from_numpy(video.get_frames(indices).astype(np.float32)).mean(dim=(1, 2, 3))
    torch.testing.assert_close(means, expected)
    assert sum(batches) == 62  # each distinct frame is decoded and transformed once
    frame_bytes = WIDTH * HEIGHT * 3
    assert max(batches) <= BATCH_BYTES // frame_bytes + 1


def test_4k_frames_reach_a_transform_one_at_a_time_without_a_copy(make_video) -> None:
    """A 4K frame is more than half of BATCH_BYTES: frames go to the transform one at a time, as the decoder's
    conversion to RGB gave them, so the reader's own arrays never hold a copy of one (numpy's allocations, traced)."""
    frames = [np.full((2160, 3840, 3), 30 * i, np.uint8) for i in range(6)]
    path = make_video("uhd.mp4", frames, fps=25)
    del frames
    batches: list[int] = []
    processor = VisualProcessor(size=32)

    def transform(batch: np.ndarray) -> torch.Tensor:
        batches.append(len(batch))
        return processor.video(batch)

    tracemalloc.start()
    try:
        pixels, seconds = load_video(path, num_frames=6, transform=transform)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 0.5 * 3840 * 2160 * 3, f"{peak / 2**20:.0f} MB of arrays held for 4K frames of 24 MB"
    assert pixels.shape == (6, 3, 32, 32) and batches == [1] * 6
    np.testing.assert_allclose(seconds, np.arange(6) / 25)


def test_live_source_has_unknown_length(clip: Path) -> None:
    with open_video(clip, live=True) as video:
        assert isinstance(video, PyAVLiveReader)
        assert video.num_frames is None and video.duration is None
        with pytest.raises(VideoError, match="clip.mp4"):
            video.get_frames([0])
        with pytest.raises(VideoError, match="live"):
            load_video(video, 4)
        stamps = [t for t, _ in video.iter_frames(fps=1.0)]
        np.testing.assert_allclose(stamps, [0.0, 1.0, 2.0])
        frames, seconds = load_video_fps(video, fps=5.0, max_frames=9, multiple_of=8)
    assert frames.shape[0] == 8
    np.testing.assert_allclose(seconds, np.arange(8) * 0.2)


@pytest.mark.parametrize("suffix", [".mkv", ".avi", ".mov", ".webm"])
def test_other_containers(make_video, suffix: str) -> None:
    codec = "libvpx" if suffix == ".webm" else "mpeg4"
    path = make_video(f"clip{suffix}", gray_frames(12), codec=codec)
    frames, _ = load_video(path, num_frames=3)
    assert_levels(frames, [level(0), level(5), level(11)])


# ---------------------------------------------------------------- pixel formats and rotation


def test_gray_and_alpha_videos_give_rgb(make_video) -> None:
    gray = make_video("gray.mkv", [np.full((HEIGHT, WIDTH), 40 * i, np.uint8) for i in range(5)],
                      codec="ffv1", pix_fmt="gray", in_format="gray")
    rgba = [np.dstack([np.full((HEIGHT, WIDTH, 3), 40 * i, np.uint8), np.full((HEIGHT, WIDTH), 99, np.uint8)])
            for i in range(5)]
    alpha = make_video("alpha.mov", rgba, codec="png", pix_fmt="rgba", in_format="rgba")
    for path in (gray, alpha):
        with open_video(path) as video:
            frames = video.get_frames(range(5))
        assert frames.shape == (5, HEIGHT, WIDTH, 3)
        np.testing.assert_array_equal(levels(frames), [0, 40, 80, 120, 160])


def test_rotation_metadata_is_applied(make_video) -> None:
    frame = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    frame[: HEIGHT // 2, : WIDTH // 2] = 255  # white top-left quadrant
    path = make_video("rotated.mp4", [frame] * 5, rotation=90)
    with open_video(path) as video:
        assert video.size == (HEIGHT, WIDTH)  # portrait after a quarter turn
        got = video.get_frames([0, 4])
    assert got.shape == (2, WIDTH, HEIGHT, 3)
    expected = np.rot90(frame).astype(float)  # 90 degrees counter-clockwise: the quadrant moves bottom-left
    assert np.abs(got[0].astype(float) - expected).mean() < 8


# ---------------------------------------------------------------- gifs, folders, images


def test_gif(gif: Path) -> None:
    with open_video(gif) as video:
        assert isinstance(video, PyAVFileReader)
        assert (video.num_frames, video.size) == (10, (WIDTH, HEIGHT))
        assert video.fps == pytest.approx(10.0)
        frames = video.get_frames([9, 0, 4])
    assert frames.shape == (3, HEIGHT, WIDTH, 3)
    assert_levels(frames, [225, 0, 100])
    _, seconds = load_video_fps(gif, fps=2.0)
    np.testing.assert_allclose(seconds, [0.0, 0.5])


def test_frame_folder_natural_order(frame_dir: Path) -> None:
    with open_video(frame_dir, frames_fps=2.0) as video:
        assert isinstance(video, FrameDirReader)
        assert (video.num_frames, video.fps, video.size) == (12, 2.0, (WIDTH, HEIGHT))
        frames = video.get_frames([1, 9, 10])  # f2, f10, f11
    np.testing.assert_array_equal(levels(frames), [20, 180, 200])
    frames, seconds = load_video(frame_dir, num_frames=4)
    np.testing.assert_array_equal(levels(frames), [0, 60, 140, 220])
    np.testing.assert_allclose(seconds, [0, 3, 7, 11])


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "I;16", "RGB"])
def test_load_image_modes_give_rgb(tmp_path: Path, mode: str) -> None:
    path = tmp_path / f"img_{mode.replace(';', '')}.png"
    Image.fromarray(np.full((10, 20, 3), 128, np.uint8)).convert(mode).save(path)
    image = load_image(path)
    assert image.shape == (10, 20, 3) and image.dtype == np.uint8
    assert abs(float(image.mean()) - 128) < 3


def test_load_image_applies_exif_orientation(tmp_path: Path) -> None:
    img = Image.fromarray(np.zeros((10, 20, 3), np.uint8))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img.save(tmp_path / "phone.jpg", exif=exif.tobytes())
    assert load_image(tmp_path / "phone.jpg").shape == (20, 10, 3)


# ---------------------------------------------------------------- bad input


def _bad_inputs(tmp_path: Path, clip: Path) -> dict[str, tuple[Path, str]]:
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "notes.mp4").write_text("this is not a video\n" * 20)
    data = clip.read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 2])
    zeroed = bytearray(data)  # keep the container, wipe every coded frame
    start, end = zeroed.index(b"mdat") + 4, zeroed.index(b"moov") - 4
    zeroed[start:end] = bytes(end - start)
    (tmp_path / "zeroed.mp4").write_bytes(bytes(zeroed))
    (tmp_path / "no_frames").mkdir()
    (tmp_path / "no_frames" / "readme.txt").write_text("x")
    (tmp_path / "broken.gif").write_bytes(b"GIF89a" + b"\0" * 10)
    return {
        "missing": (tmp_path / "missing.mp4", "no such file"),
        "empty": (tmp_path / "empty.mp4", "empty"),
        "text": (tmp_path / "notes.mp4", "cannot open"),
        "truncated": (tmp_path / "truncated.mp4", "cannot open"),
        "zero_frames": (tmp_path / "zeroed.mp4", "no decodable"),
        "empty_dir": (tmp_path / "no_frames", "no frame images"),
        "broken_gif": (tmp_path / "broken.gif", "gif"),
    }


@pytest.mark.parametrize(
    "case", ["missing", "empty", "text", "truncated", "zero_frames", "empty_dir", "broken_gif"]
)
def test_bad_input_raises_video_error_naming_the_file(tmp_path: Path, clip: Path, case: str) -> None:
    path, problem = _bad_inputs(tmp_path, clip)[case]
    with pytest.raises(VideoError) as info:
        load_video(path, num_frames=4)
    assert path.name in str(info.value) and problem in str(info.value)


@pytest.mark.parametrize("indices", [[30], [-1], [0, 100]])
def test_out_of_range_indices(clip: Path, indices: list[int]) -> None:
    with open_video(clip) as video, pytest.raises(VideoError, match="clip.mp4.*out of range"):
        video.get_frames(indices)


def test_truncated_mkv_serves_the_frames_that_remain(make_video) -> None:
    path = make_video("cut.mkv", gray_frames(30) * 4)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # mkv stays openable, its tail is gone
    with open_video(path) as video:  # the packets that remain are the frames: all of them decode
        readable = video.num_frames
        assert load_video(video, 4)[0].shape[0] == 4
        assert video.num_frames == readable
    assert readable is not None and readable < 120


def test_load_image_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "fake.png").write_text("not an image")
    (tmp_path / "zero.png").write_bytes(b"")
    for name, problem in [("fake.png", "cannot read image"), ("zero.png", "empty"), ("none.png", "no such")]:
        with pytest.raises(VideoError, match=f"{name}.*{problem}"):
            load_image(tmp_path / name)


def test_audio_only_file(tmp_path: Path) -> None:
    import av

    path = tmp_path / "sound.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    with pytest.raises(VideoError, match="sound.mp4.*no video stream"):
        open_video(path)


def test_a_header_claiming_impossibly_many_frames_is_counted_not_believed(clip: Path, tmp_path: Path) -> None:
    """A damaged time-to-sample table claims millions of frames: the reader counts the packets instead of
    believing it. Run in a child process, so that an abort (what decord did) fails only this test."""
    data = bytearray(clip.read_bytes())
    data[data.index(b"stts") + 12] = 0xB2  # the high byte of the first time-to-sample entry's sample count
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(bytes(data))
    script = (
        "import sys\n"
        "from llava.video.decode import load_video, open_video\n"
        "with open_video(sys.argv[1]) as video:\n"
        "    print(type(video).__name__, video.num_frames)\n"
        "print(load_video(sys.argv[1], num_frames=4)[0].shape)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(broken)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == [f"PyAVFileReader {NUM_FRAMES}", f"(4, {HEIGHT}, {WIDTH}, 3)"]



def test_full_range_yuv_keeps_its_colours(tmp_path: Path) -> None:
    """A file tagged full range (0-255 luma, as phones write) is converted with that range, not as TV range."""
    import av

    path = tmp_path / "full_range.mp4"
    frames = [np.full((HEIGHT, WIDTH, 3), value, np.uint8) for value in (20, 128, 235)]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.codec_context.color_range = av.video.reformatter.ColorRange.JPEG
        for rgb in frames:
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                format="yuv420p", dst_color_range=av.video.reformatter.ColorRange.JPEG)
            frame.color_range = av.video.reformatter.ColorRange.JPEG
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    got, _ = load_video(path, num_frames=3)
    np.testing.assert_allclose(levels(got), [20, 128, 235], atol=3)
