"""Open any video source and sample frames from it, by index (uniform) or by presentation time (a rate).

    >>> frames, seconds = load_video("playground/demo/clip.mp4", num_frames=16)   # (16, H, W, 3) uint8
    >>> pixels, seconds = load_video("clip.mp4", 24, transform=VisualProcessor().video)  # model inputs directly
    >>> with open_video("rtsp://camera/live") as video:
    ...     for t, frame in video.iter_frames(fps=1.0): ...

Files and seekable URLs are read exactly through PyAV (`pyav_file.py`): the frames returned are those a
sequential decode shows at those presentation times, and the seconds returned are those presentation times,
counted from the start of the file. Live URLs and capture devices are read in order (`pyav_live.py`), folders of
frame images with PIL. Every failure is a `VideoError` whose message names the source and the problem.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch

from llava.errors import VideoError
from llava.video.image_readers import FrameDirReader, load_image_file
from llava.video.pyav_file import PyAVFileReader
from llava.video.pyav_live import PyAVLiveReader
from llava.video.reader import FramesLost, Transform, VideoReader
from llava.video.timeline import frame_count, nearest_decodable, uniform_indices

__all__ = [
    "VIDEO_EXTENSIONS",
    "VideoReader",
    "Transform",
    "open_video",
    "uniform_indices",
    "load_video",
    "load_video_fps",
    "load_image",
]

# file names taken for videos where a folder is searched (the reader itself opens anything FFmpeg can)
VIDEO_EXTENSIONS = (
    ".mp4",
    ".m4v",
    ".mov",
    ".mkv",
    ".webm",
    ".avi",
    ".ts",
    ".m2ts",
    ".mts",
    ".mpg",
    ".mpeg",
    ".flv",
    ".wmv",
    ".3gp",
    ".ogv",
    ".gif",
)
_STREAM_SCHEMES = ("http", "https", "rtsp", "rtsps", "rtmp", "rtmps", "rtp", "udp", "tcp", "srt", "hls")
_LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "rtp", "udp", "tcp", "srt")
log = logging.getLogger(__name__)


def _is_url(source: str) -> bool:
    return urlparse(source).scheme.lower() in _STREAM_SCHEMES


def _is_device(source: str) -> bool:
    return source.startswith("/dev/video")


def open_video(
    source: str | os.PathLike[str],
    *,
    live: bool | None = None,
    frames_fps: float = 1.0,
    timeout: float = 10.0,
) -> VideoReader:
    """Open a video file, gif, frame folder, URL or capture device as a `VideoReader`.

    live: read the source as a stream of unknown length, in order (default: rtsp/rtmp/udp/... URLs and
    /dev/video* devices). frames_fps: the rate a folder of frames is played at. timeout: seconds to wait
    for network data.
    """
    src = os.fspath(source)
    if _is_url(src) or _is_device(src):
        is_live = live if live is not None else (_is_device(src) or urlparse(src).scheme in _LIVE_SCHEMES)
        if is_live:
            return PyAVLiveReader(src, fmt="v4l2" if _is_device(src) else None, timeout=timeout)
        return PyAVFileReader(src, timeout=timeout)
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
    return PyAVLiveReader(src) if live else PyAVFileReader(src)


Source = str | os.PathLike[str] | VideoReader


def _opened(source: Source) -> contextlib.AbstractContextManager[VideoReader]:
    """Open a path or URL (closed on exit); an already-open reader is used as is and left open."""
    return contextlib.nullcontext(source) if isinstance(source, VideoReader) else open_video(source)


def load_video(
    source: Source, num_frames: int = 16, transform: Transform | None = None
) -> tuple[np.ndarray | torch.Tensor, np.ndarray]:
    """Sample `num_frames` frames uniformly by index over the whole video (a path, URL or open `VideoReader`),
    as the original did: indices int(linspace(0, n - 1, num_frames)).

    Returns the frames, (T, H, W, 3) uint8 RGB or `transform`'s outputs (applied while decoding), and their
    presentation times in seconds (T,) float64.
    """
    with _opened(source) as video:
        if video.times is None:
            raise VideoError(f"{video.source}: cannot sample uniformly from a live stream; use iter_frames()")
        return _sampled(video, video.times, uniform_indices(len(video.times), num_frames), transform)


def load_video_fps(
    source: Source,
    fps: float = 1.0,
    max_frames: int = 512,
    multiple_of: int | None = None,
    transform: Transform | None = None,
) -> tuple[np.ndarray | torch.Tensor, np.ndarray]:
    """Sample frames at `fps` by presentation time (targets 0, 1/fps, ... s), at most `max_frames` of them.

    Over the cap, `max_frames` frames are spread uniformly over the whole video instead. With `multiple_of`
    (the streaming path uses 8) the count is rounded down to a multiple of it, at least `multiple_of`, by
    uniform subsampling. A live source is read from its start until `max_frames` frames are collected.
    Returns the frames, (T, H, W, 3) uint8 RGB or `transform`'s outputs, and their presentation times (T,).
    """
    if max_frames <= 0 or (multiple_of is not None and multiple_of <= 0):
        raise ValueError(f"max_frames and multiple_of must be positive (got {max_frames}, {multiple_of})")
    with _opened(source) as video:
        if video.times is None:
            frames, stamps = _collect_live(video, fps, max_frames, multiple_of)
            return (frames if transform is None else transform(frames)), stamps
        idx = video.rate_indices(fps)
        if len(idx) > max_frames:
            idx = uniform_indices(len(video.times), max_frames)
        if multiple_of is not None:
            count = frame_count(len(idx), max_frames, multiple_of)
            if count > len(idx):
                idx = uniform_indices(len(video.times), count)
            elif count < len(idx):
                idx = idx[uniform_indices(len(idx), count)]
        return _sampled(video, video.times, idx, transform)


def _sampled(
    video: VideoReader, times: np.ndarray, idx: np.ndarray, transform: Transform | None
) -> tuple[np.ndarray | torch.Tensor, np.ndarray]:
    """The frames at sorted `idx` of `video` (presented at `times`) and their times; where some do not decode (a
    damaged file), the nearest frames that do, in the same number and order, with one warning."""
    try:
        return video.get_frames(idx, transform), times[idx]
    except FramesLost as err:
        taken = nearest_decodable(idx, err.lost, len(times))
        log.warning(
            "%s: %d of its %d frames are lost, they do not decode (damaged file?); %d sampled replaced by the nearest",
            video.source,
            len(err.lost),
            len(times),
            np.count_nonzero(taken != idx),
        )
        return video.get_frames(taken, transform), times[taken]


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
