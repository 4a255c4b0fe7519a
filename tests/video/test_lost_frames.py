"""Sampling a damaged file: frames it announces that do not decode are replaced by the nearest frames that do."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from llava.video.decode import load_video, load_video_fps, open_video
from llava.video.reader import FramesLost
from llava.video.timeline import nearest_decodable, uniform_indices
from tests.video.test_container_index import cut_inside_a_packet, sequential


@pytest.mark.parametrize(
    ("indices", "lost", "total", "expected"),
    [
        ([0, 5, 9], [9], 10, [0, 5, 8]),  # the last frame lost: the one before it
        ([0, 3, 6], [2, 3, 4], 7, [0, 1, 6]),  # a tie: the earlier
        ([0, 4, 8, 9], [8, 9], 10, [0, 4, 6, 7]),  # both at the end would be 7: the run moves back, no repeat
        ([10, 11], list(range(11)), 20, [11, 12]),  # nothing decodes before 11: moves on
        ([0, 1, 2, 3, 4], [2], 5, [0, 1, 1, 3, 4]),  # fewer decodable frames than asked: a repeat
    ],
)
def test_nearest_decodable(indices: list[int], lost: list[int], total: int, expected: list[int]) -> None:
    assert nearest_decodable(np.array(indices), np.array(lost), total).tolist() == expected


@pytest.fixture
def truncated(tmp_path: Path) -> Path:
    """An H.264 file with B-frames cut inside a packet two thirds of the way: its last picture does not decode."""
    return cut_inside_a_packet(tmp_path)


def assert_decoded_frames(path: Path, frames: np.ndarray, times: np.ndarray) -> None:
    """Each frame is the one a plain decode shows at its time."""
    plain_times, plain_frames = sequential(path)
    where = np.searchsorted(plain_times, times)
    assert (where < len(plain_times)).all()
    np.testing.assert_allclose(plain_times[where], times, atol=1e-9, err_msg="a time no decodable frame has")
    for i, (frame, t) in enumerate(zip(frames, times, strict=True)):
        assert np.array_equal(frame, plain_frames[where[i]]), f"frame {i} at {t:.3f} s"


def test_uniform_sampling_takes_the_nearest_decodable_frame(truncated: Path, caplog: pytest.LogCaptureFixture) -> None:
    with open_video(truncated) as video:
        announced = len(video.times)
        with pytest.raises(FramesLost) as raised:
            video.get_frames(uniform_indices(announced, 8))
        lost = raised.value.lost
    assert len(lost) == 1 and lost[0] in uniform_indices(announced, 8), "the sampling must meet the lost frame"
    with caplog.at_level(logging.WARNING, logger="llava.video.decode"):
        frames, times = load_video(truncated, num_frames=8)
    assert len(frames) == 8 and np.all(np.diff(times) > 0)
    assert_decoded_frames(truncated, frames, times)
    assert [r.getMessage() for r in caplog.records if f"1 of its {announced} frames are lost" in r.getMessage()]


def test_more_frames_than_decode_repeat_one(truncated: Path) -> None:
    with open_video(truncated) as video:
        announced = len(video.times)
    frames, times = load_video(truncated, num_frames=announced)
    assert len(frames) == announced and len(np.unique(times)) == announced - 1
    assert_decoded_frames(truncated, frames, times)


def test_rate_sampling_takes_the_nearest_decodable_frame(truncated: Path) -> None:
    frames, times = load_video_fps(truncated, fps=5.0)  # a frame every 0.2 s, up to the lost last one at 4.8 s
    assert len(frames) == 25 and np.all(np.diff(times) > 0) and times[-1] == pytest.approx(4.7)
    assert_decoded_frames(truncated, frames, times)
