"""Video reader backends: decord for files, PyAV for streams and fallback, PIL for gifs, and frame folders.

Every backend is a `VideoReader`: it knows `num_frames` (None for a live source), `fps`, `size` (w, h after
rotation) and serves RGB uint8 frames by index or one at a time. Third-party errors never escape: they are
re-raised as `VideoError` naming the source. Use `llava.video.decode.open_video` rather than these classes.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType

import av
import decord
import numpy as np
from PIL import Image, ImageOps, ImageSequence

from llava.errors import VideoError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
_PIL_ERRORS = (OSError, ValueError, Image.DecompressionBombError)
_CHUNK = 16  # frames decoded per batch while iterating an indexable source


def fps_indices(num_total: int, native_fps: float, fps: float) -> np.ndarray:
    """Indices of the frames sampled at `fps` from a video of `num_total` frames at `native_fps`.

    Target k (time k / fps) takes the first frame whose timestamp is at least k / fps minus half a frame;
    a frame is taken at most once, so asking for more than the native rate returns every frame.
    """
    if fps <= 0 or native_fps <= 0:
        raise ValueError(f"fps must be positive (got fps={fps}, native_fps={native_fps})")
    ratio = native_fps / fps
    count = math.ceil((num_total - 0.5) / ratio) if num_total > 0 else 0
    idx = np.ceil(np.arange(count) * ratio - 0.5 - 1e-9).astype(np.int64)
    return np.unique(idx[(idx >= 0) & (idx < num_total)])


def pil_to_rgb(img: Image.Image) -> np.ndarray:
    """Convert any PIL image (gray, 16-bit, palette, alpha, CMYK) to an (H, W, 3) uint8 RGB array."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max(initial=0) > 255 else 255.0
        gray = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def load_image_file(path: Path, label: str | None = None) -> np.ndarray:
    """Read one image file as (H, W, 3) uint8 RGB, applying EXIF orientation; errors name the file."""
    name = label or str(path)
    try:
        with Image.open(path) as img:
            img.load()
            return pil_to_rgb(ImageOps.exif_transpose(img))
    except _PIL_ERRORS as err:
        raise VideoError(f"{name}: cannot read image ({err})") from err


def _natural_key(name: str) -> list[object]:
    """Sort key that orders 'frame2' before 'frame10'."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _rotate(frame: np.ndarray, rotation: int) -> np.ndarray:
    """Rotate a decoded frame counter-clockwise by `rotation` degrees (the display-matrix convention)."""
    turns = (round(rotation / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(frame, k=turns)) if turns else frame


class VideoReader(ABC):
    """An opened video: metadata plus random access (`get_frames`) and streaming access (`iter_frames`)."""

    def __init__(self, source: str, num_frames: int | None, fps: float, size: tuple[int, int]) -> None:
        self.source = source
        self.num_frames = num_frames  # None: a live source whose length is unknown
        self.fps = float(fps)
        self.size = size  # (width, height) of the frames as returned (rotation applied)

    @property
    def duration(self) -> float | None:
        """Length in seconds (num_frames / fps), or None for a live source."""
        return None if self.num_frames is None else self.num_frames / self.fps

    def get_frames(self, indices: Iterable[int] | np.ndarray) -> np.ndarray:
        """Frames at `indices` (any order, repeats allowed) as uint8 (N, H, W, 3) RGB."""
        idx = np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices)
        if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
            raise VideoError(f"{self.source}: frame indices must be a 1-D sequence of integers")
        if self.num_frames is None:
            raise VideoError(f"{self.source}: live source has no known length; use iter_frames()")
        bad = idx[(idx < 0) | (idx >= self.num_frames)]
        if bad.size:
            raise VideoError(
                f"{self.source}: frame index {int(bad[0])} out of range (video has {self.num_frames} frames)"
            )
        if idx.size == 0:
            return np.empty((0, self.size[1], self.size[0], 3), dtype=np.uint8)
        return self._read(idx.astype(np.int64))

    def iter_frames(self, fps: float | None = None) -> Iterator[tuple[float, np.ndarray]]:
        """Yield (timestamp_seconds, frame) one at a time: every frame, or frames sampled at `fps`."""
        if self.num_frames is None:
            raise VideoError(f"{self.source}: this reader cannot iterate a source of unknown length")
        idx = np.arange(self.num_frames) if fps is None else fps_indices(self.num_frames, self.fps, fps)
        for start in range(0, len(idx), _CHUNK):
            chunk = idx[start : start + _CHUNK]
            for i, frame in zip(chunk, self._read(chunk)):
                yield float(i) / self.fps, frame

    @abstractmethod
    def _read(self, indices: np.ndarray) -> np.ndarray:
        """Decode valid `indices` into (N, H, W, 3) uint8."""

    def close(self) -> None:
        """Release the underlying decoder (a no-op for readers that open files per call)."""

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}({self.source!r}, num_frames={self.num_frames}, fps={self.fps:.3f}, size={self.size})"


class PyAVReader(VideoReader):
    """PyAV (FFmpeg) reader for URLs, devices, live streams and files decord cannot serve.

    A container is opened per call, so readers hold no decoder between calls. Random access decodes
    sequentially from the start (faster than per-frame seeking for sampled frames).
    """

    def __init__(
        self,
        source: str,
        *,
        live: bool = False,
        fmt: str | None = None,
        timeout: float | None = None,
        count_packets: bool = False,
    ) -> None:
        self._fmt, self._timeout = fmt, timeout
        self.header_plausible = True  # False: the header claims more frames than the file has bytes (corrupt)
        with self._open(source) as container:
            stream = self._video_stream(container, source)
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            fps = float(rate) if rate else 30.0
            size = (stream.codec_context.width, stream.codec_context.height)
            if not live and Path(source).is_file() and stream.frames > Path(source).stat().st_size:
                self.header_plausible = False
            num_frames = None if live else self._count_frames(container, stream, fps, count_packets,
                                                              self.header_plausible)
        self._rotation = 0
        if num_frames is not None:
            self._rotation, size = self._probe(source, num_frames)
        super().__init__(source, num_frames, fps, size)

    @property
    def rotation(self) -> int:
        """Counter-clockwise display rotation in degrees, applied to every frame returned."""
        return self._rotation

    def _open(self, source: str) -> av.container.InputContainer:
        """Open the source for reading; FFmpeg errors become VideoError."""
        try:
            # metadata that is not UTF-8 (a corrupt or foreign tag) is replaced, not a reason to refuse the video
            return av.open(source, mode="r", format=self._fmt, timeout=self._timeout, metadata_errors="replace")
        except av.FFmpegError as err:
            reason = getattr(err, "strerror", None) or str(err)
            hint = " (not a video, or truncated/corrupt?)" if Path(source).is_file() else ""
            raise VideoError(f"{source}: cannot open video: {reason}{hint}") from err

    @staticmethod
    def _video_stream(container: av.container.InputContainer, source: str) -> av.video.stream.VideoStream:
        if not container.streams.video:
            raise VideoError(f"{source}: holds no video stream")
        stream = container.streams.video[0]
        if stream.codec_context is None:  # a codec FFmpeg does not know, or a corrupt sample description
            raise VideoError(f"{source}: cannot decode its video stream (unknown codec or corrupt header)")
        stream.thread_type = "AUTO"
        return stream

    @staticmethod
    def _count_packets(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> int | None:
        """Frames counted by demuxing every packet; None when demuxing fails (the caller estimates instead)."""
        try:
            return sum(1 for packet in container.demux(stream) if packet.size)
        except av.FFmpegError:
            return None

    @staticmethod
    def _count_frames(
        container: av.container.InputContainer, stream: av.video.stream.VideoStream, fps: float, count_packets: bool,
        header_plausible: bool,
    ) -> int | None:
        """Frame count from a plausible header, else by demuxing packets (local files), else from the duration."""
        if stream.frames > 0 and header_plausible:
            return int(stream.frames)
        counted = PyAVReader._count_packets(container, stream) if count_packets else None
        if counted is not None:
            return counted
        if stream.duration is not None and stream.time_base is not None:
            return max(1, round(float(stream.duration * stream.time_base) * fps))
        if container.duration is not None:
            return max(1, round(container.duration / 1_000_000 * fps))
        return None

    def _probe(self, source: str, num_frames: int) -> tuple[int, tuple[int, int]]:
        """Decode the first frame: proves the source decodes and reads its rotation and display size."""
        if num_frames == 0:
            raise VideoError(f"{source}: no decodable video frames")
        frame = next(self._decode(source), None)
        if frame is None:
            raise VideoError(f"{source}: no decodable video frames")
        rotation = int(frame.rotation or 0)
        w, h = frame.width, frame.height
        return rotation, ((h, w) if round(rotation / 90.0) % 2 else (w, h))

    def _decode(self, source: str) -> Iterator[av.VideoFrame]:
        """Decode every video frame of `source` in order, skipping packets the decoder rejects as corrupt."""
        with self._open(source) as container:
            stream = self._video_stream(container, source)
            try:
                for packet in container.demux(stream):
                    try:
                        frames = stream.decode(packet)
                    except av.InvalidDataError:
                        continue  # one corrupt packet: later frames may still decode
                    yield from frames
            except av.FFmpegError as err:
                raise VideoError(f"{source}: decoding failed ({err})") from err

    def _to_array(self, frame: av.VideoFrame) -> np.ndarray:
        return _rotate(frame.to_ndarray(format="rgb24"), self._rotation)

    def _read(self, indices: np.ndarray) -> np.ndarray:
        wanted = set(int(i) for i in indices)
        last = max(wanted)
        got: dict[int, np.ndarray] = {}
        decoded = 0
        for frame in self._decode(self.source):
            if decoded in wanted:
                got[decoded] = self._to_array(frame)
            decoded += 1
            if decoded > last:
                break
        missing = sorted(wanted - got.keys())
        if missing:
            raise VideoError(
                f"{self.source}: frame {missing[0]} could not be decoded "
                f"(only {decoded} frames decode; file truncated or corrupt?)"
            )
        return np.stack([got[int(i)] for i in indices])

    def iter_frames(self, fps: float | None = None) -> Iterator[tuple[float, np.ndarray]]:
        """Yield (seconds since the first frame, frame) while decoding; works for live sources."""
        if fps is not None and fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        half = 0.5 / self.fps if self.num_frames is not None else 0.0
        start: float | None = None
        k = 0
        for count, frame in enumerate(self._decode(self.source)):
            t_abs = frame.time if frame.time is not None else count / self.fps
            start = t_abs if start is None else start
            t = t_abs - start
            if fps is None:
                yield t, self._to_array(frame)
                continue
            if t + 1e-9 < k / fps - half:
                continue
            while k / fps - half <= t + 1e-9:
                k += 1
            yield t, self._to_array(frame)


class DecordReader(VideoReader):
    """decord reader for local video files; falls back to PyAV if decord fails on a read."""

    def __init__(self, path: str, size: tuple[int, int] | None = None) -> None:
        """`size` (w, h) as probed by PyAV; None decodes frame 0 with decord to learn it."""
        try:
            self._vr = decord.VideoReader(path, ctx=decord.cpu(0))
            num_frames, fps = len(self._vr), self._vr.get_avg_fps()
            if num_frames > 0 and size is None:
                height, width = self._vr[0].shape[:2]
                size = (int(width), int(height))
        except (decord.DECORDError, RuntimeError) as err:
            raise VideoError(f"{path}: decord cannot open the video ({err})") from err
        if num_frames <= 0 or not fps or fps <= 0 or size is None:
            raise VideoError(f"{path}: decord found no frames or no frame rate")
        self._fallback: PyAVReader | None = None
        super().__init__(path, num_frames, fps, size)

    def _read(self, indices: np.ndarray) -> np.ndarray:
        w, h = self.size
        try:
            frames = self._vr.get_batch(indices.tolist()).asnumpy()
        except (decord.DECORDError, RuntimeError, IndexError):
            frames = None  # decord gave up on this read: let PyAV try (it names the bad frame if it fails too)
        if frames is not None and frames.shape == (len(indices), h, w, 3):
            return frames
        if self._fallback is None:
            self._fallback = PyAVReader(self.source, count_packets=True)
        return self._fallback.get_frames(indices)

    def close(self) -> None:
        self._vr = None  # type: ignore[assignment]


class GifReader(VideoReader):
    """PIL reader for animated gifs; frame durations give the frame rate (100 ms when unset)."""

    def __init__(self, path: str) -> None:
        try:
            with Image.open(path) as img:
                durations = [frame.info.get("duration", 0) or 100 for frame in ImageSequence.Iterator(img)]
                size = img.size
        except _PIL_ERRORS as err:
            raise VideoError(f"{path}: cannot read gif ({err})") from err
        if not durations:
            raise VideoError(f"{path}: no decodable frames")
        fps = 1000.0 * len(durations) / sum(durations)
        super().__init__(path, len(durations), fps, size)

    def _read(self, indices: np.ndarray) -> np.ndarray:
        got: dict[int, np.ndarray] = {}
        try:
            with Image.open(self.source) as img:
                for i in sorted(set(int(i) for i in indices)):
                    img.seek(i)
                    got[i] = pil_to_rgb(img)
        except (EOFError, *_PIL_ERRORS) as err:
            raise VideoError(f"{self.source}: cannot decode gif frame ({err})") from err
        return np.stack([got[int(i)] for i in indices])


class FrameDirReader(VideoReader):
    """A directory of frame images in natural name order, played at `fps` frames per second."""

    def __init__(self, path: str, fps: float = 1.0) -> None:
        folder = Path(path)
        files = sorted(
            (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
            key=lambda p: _natural_key(p.name),
        )
        if not files:
            raise VideoError(f"{path}: directory holds no frame images ({', '.join(IMAGE_EXTENSIONS)})")
        self._files: Sequence[Path] = files
        first = load_image_file(files[0])
        super().__init__(path, len(files), fps, (first.shape[1], first.shape[0]))

    def _read(self, indices: np.ndarray) -> np.ndarray:
        frames = []
        for i in indices:
            frame = load_image_file(self._files[int(i)])
            if (frame.shape[1], frame.shape[0]) != self.size:
                raise VideoError(
                    f"{self._files[int(i)]}: frame size {frame.shape[1]}x{frame.shape[0]} differs from "
                    f"the first frame's {self.size[0]}x{self.size[1]} in {self.source}"
                )
            frames.append(frame)
        return np.stack(frames)
