"""Live sources through PyAV (rtsp/rtmp/udp URLs, /dev/videoN capture devices, or a file read as a stream).

A live source has no known length and cannot seek: it is read once, in order. Times count from its first frame.
"""

from __future__ import annotations

from collections.abc import Iterator

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from llava.errors import VideoError
from llava.video.pyav_media import nominal_fps, open_container, upright_rgb, upright_size, video_stream
from llava.video.reader import VideoReader


class PyAVLiveReader(VideoReader):
    """A stream of frames of unknown length; `iter_frames` is the only way to read it."""

    def __init__(self, source: str, fmt: str | None = None, timeout: float | None = None) -> None:
        self._fmt, self._timeout = fmt, timeout
        with open_container(source, fmt, timeout) as container:
            stream = video_stream(container, source)
            fps = nominal_fps(stream)
            size = (stream.codec_context.width, stream.codec_context.height)
        super().__init__(source, None, fps, size)

    def _frames(self) -> Iterator[av.VideoFrame]:
        """Decode the source in order, skipping packets the decoder rejects as corrupt."""
        with open_container(self.source, self._fmt, self._timeout) as container:
            stream = video_stream(container, self.source)
            try:
                for packet in container.demux(stream):
                    try:
                        yield from stream.decode(packet)
                    except av.InvalidDataError:
                        continue  # one corrupt packet: later frames may still decode
            except av.FFmpegError as err:
                raise VideoError(f"{self.source}: decoding failed ({err})") from err

    def iter_frames(self, fps: float | None = None) -> Iterator[tuple[float, np.ndarray]]:
        """Yield (seconds since the first frame, frame) while decoding; with `fps`, the first frame at or after
        each target time k / fps."""
        if fps is not None and fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        start: float | None = None
        k = 0
        reformatter = VideoReformatter()
        for count, frame in enumerate(self._frames()):
            t_abs = frame.time if frame.time is not None else count / self.fps
            start = t_abs if start is None else start
            t = t_abs - start
            if count == 0:
                self.size = upright_size(frame)
            if fps is not None:
                if t + 1e-9 < k / fps:
                    continue
                while k / fps <= t + 1e-9:
                    k += 1
            yield t, upright_rgb(frame, reformatter)

    def _decode(self, indices: np.ndarray) -> Iterator[np.ndarray]:
        raise VideoError(f"{self.source}: live source has no known length; use iter_frames()")
