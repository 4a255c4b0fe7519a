"""The decoder's frame threads are bounded by the memory their pictures take: FFmpeg's own count for normal sizes,
fewer at 1080p on many cores, none (slice threads only) from 4K on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest

from llava.video.decode import open_video
from llava.video.pyav_media import (
    FRAME_THREAD_BYTES,
    FRAME_THREAD_PIXEL_BYTES,
    MAX_AUTO_THREADS,
    frame_thread_limit,
    open_container,
    video_stream,
)


@pytest.mark.parametrize(
    ("width", "height", "limit"),
    [(1280, 720, 17), (1920, 1080, 7), (2560, 1440, 4), (3840, 2160, 1), (7680, 4320, 1), (64, 48, 5208)],
)
def test_frame_thread_limit_by_picture_size(width: int, height: int, limit: int) -> None:
    assert frame_thread_limit(width, height) == limit
    assert limit == 1 or limit * FRAME_THREAD_PIXEL_BYTES * width * height <= FRAME_THREAD_BYTES


def test_normal_sizes_keep_ffmpegs_own_thread_count() -> None:
    assert frame_thread_limit(1280, 720) > MAX_AUTO_THREADS  # 720p: never bounded


def threads_of(path: Path) -> tuple[av.codec.context.ThreadType, int]:
    """The thread type and count the readers' stream is opened with."""
    with open_container(str(path)) as container:
        stream = video_stream(container, str(path))
        return stream.thread_type, stream.codec_context.thread_count


def test_small_video_decodes_with_ffmpegs_threads(clip: Path) -> None:
    assert threads_of(clip) == (av.codec.context.ThreadType.AUTO, 0)  # 0: FFmpeg picks the count


def test_4k_video_decodes_with_slice_threads_only(make_video: Callable[..., Path]) -> None:
    frames = [np.full((2160, 3840, 3), 40 * i, np.uint8) for i in range(3)]
    path = make_video("uhd.mp4", frames)
    assert threads_of(path) == (av.codec.context.ThreadType.SLICE, 0)
    with open_video(path) as video:
        got = video.get_frames([2, 0])
    assert got.shape == (2, 2160, 3840, 3)
    assert abs(int(got[0].mean()) - 80) <= 2 and abs(int(got[1].mean())) <= 2
