"""PyAV plumbing shared by the file and live readers: open a container, pick its video stream, frames to RGB.

Frames reach RGB through one `VideoReformatter` per decoding loop (`upright_rgb`): `frame.to_ndarray(format=...)`
makes a new one for every frame, and setting up FFmpeg's converter again costs more than converting a small frame.

Frame threads (FFmpeg's default: one more than the cores, at most 16) each hold pictures of their own, about 3
bytes a pixel (measured on H.264: 62 MB more than slice threads alone for 3 threads at 4K): their number is bounded
so that they hold at most FRAME_THREAD_BYTES, which leaves FFmpeg's count up to 720p, allows 7 at 1080p and none
from 4K on (slice threads only).

FFmpeg errors never escape from here: they become `VideoError` naming the source.
"""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from llava.errors import VideoError

FRAME_THREAD_BYTES = 48_000_000  # pictures the decoder's frame threads may hold together
FRAME_THREAD_PIXEL_BYTES = 3  # what one frame thread holds, a pixel of the picture size (measured, H.264)
MAX_AUTO_THREADS = 16  # FFmpeg's cap on the thread count it picks itself


def open_container(source: str, fmt: str | None = None, timeout: float | None = None) -> av.container.InputContainer:
    """Open `source` for reading; metadata that is not UTF-8 is replaced, not a reason to refuse the video."""
    try:
        return av.open(source, mode="r", format=fmt, timeout=timeout, metadata_errors="replace")
    except av.FFmpegError as err:
        reason = getattr(err, "strerror", None) or str(err)
        hint = " (not a video, or truncated/corrupt?)" if Path(source).is_file() else ""
        raise VideoError(f"{source}: cannot open video: {reason}{hint}") from err


def video_stream(container: av.container.InputContainer, source: str) -> av.video.stream.VideoStream:
    """The stream a player shows (FFmpeg's best video stream: not cover art, the main one of several)."""
    if not container.streams.video:
        raise VideoError(f"{source}: holds no video stream")
    best = container.streams.best("video")
    stream = best if isinstance(best, av.video.stream.VideoStream) else container.streams.video[0]
    if stream.codec_context is None:  # a codec FFmpeg does not know, or a corrupt sample description
        raise VideoError(f"{source}: cannot decode its video stream (unknown codec or corrupt header)")
    limit_frame_threads(stream)
    return stream


def frame_thread_limit(width: int, height: int) -> int:
    """The most frame threads whose pictures of width x height fit FRAME_THREAD_BYTES (at least 1: none)."""
    return max(1, FRAME_THREAD_BYTES // max(1, FRAME_THREAD_PIXEL_BYTES * width * height))


def _auto_threads() -> int:
    """The thread count FFmpeg picks itself: one more than the cores this process may run on, at most 16."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(cores + 1, MAX_AUTO_THREADS)


def limit_frame_threads(stream: av.video.stream.VideoStream) -> None:
    """Frame and slice threads as FFmpeg picks them, fewer frame threads where their pictures would not fit
    FRAME_THREAD_BYTES, and slice threads alone (which hold no pictures of their own) where one would not."""
    limit = frame_thread_limit(stream.codec_context.width, stream.codec_context.height)
    stream.thread_type = "AUTO" if limit > 1 else "SLICE"
    if 1 < limit < _auto_threads():
        stream.codec_context.thread_count = limit


def nominal_fps(stream: av.video.stream.VideoStream) -> float:
    """The stream's declared average frame rate (30 when it declares none)."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 30.0


def quarter_turns(frame: av.VideoFrame) -> int:
    """Quarter turns (0-3, counter-clockwise, the display-matrix convention) a player gives the frame."""
    return round((frame.rotation or 0) / 90.0) % 4


def upright_rgb(frame: av.VideoFrame, reformatter: VideoReformatter) -> np.ndarray:
    """The frame as (H, W, 3) uint8 RGB, turned by its display rotation as a player shows it, converted by the
    decoding loop's `reformatter` (the same pixels as `frame.to_ndarray(format="rgb24")`)."""
    array = reformatter.reformat(frame, format="rgb24").to_ndarray()
    turns = quarter_turns(frame)
    return np.ascontiguousarray(np.rot90(array, k=turns)) if turns else array


def upright_size(frame: av.VideoFrame) -> tuple[int, int]:
    """(width, height) of the frame once its display rotation is applied."""
    return (frame.height, frame.width) if quarter_turns(frame) % 2 else (frame.width, frame.height)
