"""PyAV plumbing shared by the file and live readers: open a container, pick its video stream, frames to RGB.

Frames reach RGB through one `VideoReformatter` per decoding loop (`upright_rgb`): `frame.to_ndarray(format=...)`
makes a new one for every frame, and setting up FFmpeg's converter again costs more than converting a small frame.

FFmpeg errors never escape from here: they become `VideoError` naming the source.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from llava.errors import VideoError


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
    stream.thread_type = "AUTO"
    return stream


def nominal_fps(stream: av.video.stream.VideoStream) -> float:
    """The stream's declared average frame rate (30 when it declares none)."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 30.0


def upright_rgb(frame: av.VideoFrame, reformatter: VideoReformatter) -> np.ndarray:
    """The frame as (H, W, 3) uint8 RGB, turned by its display rotation as a player shows it, converted by the
    decoding loop's `reformatter` (the same pixels as `frame.to_ndarray(format="rgb24")`)."""
    array = reformatter.reformat(frame, format="rgb24").to_ndarray()
    turns = round((frame.rotation or 0) / 90.0) % 4  # counter-clockwise, the display-matrix convention
    return np.ascontiguousarray(np.rot90(array, k=turns)) if turns else array


def upright_size(frame: av.VideoFrame) -> tuple[int, int]:
    """(width, height) of the frame once its display rotation is applied."""
    quarter = round((frame.rotation or 0) / 90.0) % 2
    return (frame.height, frame.width) if quarter else (frame.width, frame.height)
