"""Open videos, frame folders, gifs and streams; sample frames uniformly or at a fixed rate.

    >>> frames, seconds = load_video("playground/demo/clip.mp4", num_frames=16)   # (16, H, W, 3) uint8
    >>> with open_video("rtsp://camera/live") as video:
    ...     for t, frame in video.iter_frames(fps=1.0): ...

Files go to decord first (fastest here) and to PyAV when decord cannot open them or has rotation metadata it
would mishandle; URLs, devices and live streams go to PyAV; gifs to PIL. Every failure is a `VideoError` whose
message names the source and the problem.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from llava.errors import VideoError
from llava.video.backends import (
    DecordReader,
    FrameDirReader,
    GifReader,
    PyAVReader,
    VideoReader,
    fps_indices,
    load_image_file,
)

__all__ = [
    "VideoReader",
    "open_video",
    "uniform_indices",
    "fps_indices",
    "load_video",
    "load_video_fps",
    "load_image",
]

_STREAM_SCHEMES = ("http", "https", "rtsp", "rtsps", "rtmp", "rtmps", "rtp", "udp", "tcp", "srt", "hls")
_LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "rtp", "udp", "tcp", "srt")
_BACKENDS = ("auto", "decord", "pyav")


def _is_url(source: str) -> bool:
    return urlparse(source).scheme.lower() in _STREAM_SCHEMES


def _is_device(source: str) -> bool:
    return source.startswith("/dev/video")


def open_video(
    source: str | os.PathLike[str],
    *,
    backend: str = "auto",
    live: bool | None = None,
    frames_fps: float = 1.0,
    timeout: float = 10.0,
) -> VideoReader:
    """Open a video file, gif, frame folder, URL or capture device as a `VideoReader`.

    backend: "auto" (decord for files, PyAV otherwise), "decord" or "pyav" (files only; for tests and
    debugging). live: treat the source as a stream of unknown length (default: rtsp/rtmp/udp/... URLs and
    /dev/video* devices). frames_fps: the rate a folder of frames is played at. timeout: seconds to wait
    for network data.
    """
    src = os.fspath(source)
    if backend not in _BACKENDS:
        raise VideoError(f"{src}: unknown video backend {backend!r} (valid: {', '.join(_BACKENDS)})")
    if _is_url(src) or _is_device(src):
        is_live = live if live is not None else (_is_device(src) or urlparse(src).scheme in _LIVE_SCHEMES)
        fmt = "v4l2" if _is_device(src) else None
        return PyAVReader(src, live=is_live, fmt=fmt, timeout=timeout)
    path = Path(src)
    try:
        if not path.exists():
            raise VideoError(f"{src}: no such file or directory")
        if path.is_dir():
            return FrameDirReader(src, fps=frames_fps)
        empty = path.stat().st_size == 0
    except OSError as err:  # a name too long, a folder we may not list, ...
        raise VideoError(f"{src}: cannot access ({err.strerror or err})") from None
    if empty:
        raise VideoError(f"{src}: file is empty (0 bytes)")
    if live:
        return PyAVReader(src, live=True)
    if path.suffix.lower() == ".gif" and backend == "auto":
        return GifReader(src)
    return _open_file(src, backend)


def _open_file(src: str, backend: str) -> VideoReader:
    """decord first; PyAV when decord fails, when the video carries rotation metadata (decord mishandles it) or
    when its header claims an impossible number of frames (decord would abort the process allocating them)."""
    if backend == "pyav":
        return PyAVReader(src, count_packets=True)
    if backend == "decord":
        return DecordReader(src)
    try:
        probe: PyAVReader | None = PyAVReader(src)  # ~2 ms: reads rotation and display size
        probe_err: VideoError | None = None
    except VideoError as err:
        probe, probe_err = None, err
    if probe is not None and (probe.rotation % 360 != 0 or not probe.header_plausible):
        return PyAVReader(src, count_packets=True)
    try:
        return DecordReader(src, probe.size if probe is not None else None)
    except VideoError as decord_err:
        if probe_err is not None:
            raise probe_err from decord_err
        try:
            return PyAVReader(src, count_packets=True)
        except VideoError as err:
            raise err from decord_err


def uniform_indices(num_total: int, num_frames: int) -> np.ndarray:
    """`num_frames` indices spread evenly over `num_total` frames: int(linspace(0, num_total - 1, num_frames))."""
    if num_total <= 0 or num_frames <= 0:
        raise ValueError(f"need num_total > 0 and num_frames > 0 (got {num_total}, {num_frames})")
    return np.linspace(0, num_total - 1, num_frames).astype(np.int64)


def frame_count(available: int, max_frames: int, multiple_of: int) -> int:
    """How many of `available` frames a capped, rounded sampling takes: at most `max_frames`, rounded down to a
    multiple of `multiple_of`, at least `multiple_of` (the original's streaming rule: 8 to 512)."""
    return max(multiple_of, min(available, max_frames) // multiple_of * multiple_of)


Source = str | os.PathLike[str] | VideoReader


def _opened(source: Source) -> contextlib.AbstractContextManager[VideoReader]:
    """Open a path or URL (closed on exit); an already-open reader is used as is and left open."""
    return contextlib.nullcontext(source) if isinstance(source, VideoReader) else open_video(source)


def load_video(source: Source, num_frames: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Sample `num_frames` frames uniformly over the whole video (a path, URL or open `VideoReader`).

    Returns frames (T, H, W, 3) uint8 RGB and their timestamps in seconds (T,) float64.
    """
    with _opened(source) as video:
        if video.num_frames is None:
            raise VideoError(f"{video.source}: cannot sample uniformly from a live stream; use iter_frames()")
        idx = uniform_indices(video.num_frames, num_frames)
        return video.get_frames(idx), idx / video.fps


def load_video_fps(
    source: Source,
    fps: float = 1.0,
    max_frames: int = 512,
    multiple_of: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Sample frames at `fps` (timestamps 0, 1/fps, ...), at most `max_frames` of them.

    Over the cap, `max_frames` frames are spread uniformly over the whole video instead. With `multiple_of`
    (the streaming path uses 8) the count is rounded down to a multiple of it, at least `multiple_of`, by
    uniform subsampling. A live source is read from its start until `max_frames` frames are collected.
    Returns frames (T, H, W, 3) uint8 RGB and timestamps in seconds (T,).
    """
    if max_frames <= 0 or (multiple_of is not None and multiple_of <= 0):
        raise ValueError(f"max_frames and multiple_of must be positive (got {max_frames}, {multiple_of})")
    with _opened(source) as video:
        if video.num_frames is None:
            return _collect_live(video, fps, max_frames, multiple_of)
        idx = fps_indices(video.num_frames, video.fps, fps)
        if len(idx) > max_frames:
            idx = uniform_indices(video.num_frames, max_frames)
        if multiple_of is not None:
            count = frame_count(len(idx), max_frames, multiple_of)
            if count > len(idx):
                idx = uniform_indices(video.num_frames, count)
            elif count < len(idx):
                idx = idx[uniform_indices(len(idx), count)]
        return video.get_frames(idx), idx / video.fps


def _collect_live(
    video: VideoReader, fps: float, max_frames: int, multiple_of: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Take frames at `fps` from the start of a live source until `max_frames` are held."""
    frames, stamps = [], []
    for t, frame in video.iter_frames(fps):
        frames.append(frame)
        stamps.append(t)
        if len(frames) >= max_frames:
            break
    if not frames:
        raise VideoError(f"{video.source}: no decodable video frames")
    if multiple_of is not None and len(frames) >= multiple_of:
        keep = len(frames) // multiple_of * multiple_of
        frames, stamps = frames[:keep], stamps[:keep]
    return np.stack(frames), np.asarray(stamps, dtype=np.float64)


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image as (H, W, 3) uint8 RGB: gray, palette and alpha become RGB; EXIF rotation applied."""
    src = os.fspath(path)
    file = Path(src)
    try:
        if not file.is_file():
            raise VideoError(f"{src}: no such image file")
        empty = file.stat().st_size == 0
    except OSError as err:  # a name too long, ...
        raise VideoError(f"{src}: cannot access ({err.strerror or err})") from None
    if empty:
        raise VideoError(f"{src}: file is empty (0 bytes)")
    return load_image_file(file)
