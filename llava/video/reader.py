"""`VideoReader`: an opened video that knows its frames' presentation times and serves frames by index.

Every reader (files and URLs through PyAV, live streams, gifs, folders of frames) is one of these. Indices count
frames in display order; `times[i]` is when frame i is presented, in seconds since the start of the file, so a
variable-frame-rate file or one with timestamp gaps is labelled as a player shows it. Frames can be turned into
model inputs while they are decoded (`transform`), so a 4K file never sits in memory at full size; a
`BandedTransform` (`VisualProcessor.video`) is handed a 4K frame a band of RGB rows at a time (`FrameRows`) by the
readers that can, so the frame is not whole in RGB either. A decode that runs longer than `progress_delay` seconds
shows a progress bar on a terminal (`llava.progress`), nothing elsewhere.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Protocol, TypeVar, cast, runtime_checkable

import numpy as np
import torch
from tqdm import tqdm

from llava.errors import VideoError
from llava.progress import progress_bar
from llava.video.timeline import rate_indices

T = TypeVar("T")
Transform = Callable[[np.ndarray], torch.Tensor]  # uint8 (n, H, W, 3) -> (n, ...), e.g. VisualProcessor.video
BATCH_BYTES = 32 << 20  # decoded frames handed to a transform at once: 1 frame of 4K, 11 of 720p


@runtime_checkable
class FrameRows(Protocol):
    """One frame whose RGB rows are made a band at a time (a large frame is then never whole in RGB)."""

    shape: tuple[int, int, int]  # (H, W, 3), as the frame's RGB array would be
    band_rows: int

    def band(self, top: int) -> np.ndarray:
        """uint8 (rows, W, 3): rows top .. top + band_rows (fewer at the bottom); `top` a multiple of band_rows."""
        ...


@runtime_checkable
class BandedTransform(Protocol):
    """A transform that can also take one frame a band of rows at a time (`VisualProcessor.video`): readers that
    can hand a large frame over that way do, and never convert it to RGB whole."""

    def __call__(self, frames: np.ndarray) -> torch.Tensor: ...

    def from_rows(self, frame: FrameRows) -> torch.Tensor:
        """The transform of one frame, (1, ...), read band by band."""
        ...


def handed_alone(nbytes: int) -> bool:
    """Whether a frame of `nbytes` RGB goes to a transform alone (more than half of BATCH_BYTES: 4K and up)."""
    return 2 * nbytes > BATCH_BYTES


class FramesLost(VideoError):
    """Frames were asked for that the video announces but that do not decode (a damaged or truncated file)."""

    def __init__(self, message: str, lost: np.ndarray) -> None:
        super().__init__(message)
        self.lost = lost  # display indices of every frame of the video known not to decode


def as_indices(indices: Iterable[int] | np.ndarray, source: str) -> np.ndarray:
    """A 1-D int64 array of frame indices, or a VideoError naming the source."""
    idx = np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices)
    if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
        raise VideoError(f"{source}: frame indices must be a 1-D sequence of integers")
    return idx.astype(np.int64)


def _batches(frames: Iterable[np.ndarray | FrameRows]) -> Iterator[np.ndarray | FrameRows]:
    """Consecutive frames handed on a few at a time: at most BATCH_BYTES of pixels per batch. Frames of more than
    half of BATCH_BYTES (4K) go on one at a time as they are, without a copy (a `FrameRows` as it is); smaller ones
    are copied into one buffer, which is reused: a batch must be done with before the next is asked for. No frame
    is held here while the next one is decoded, and never a list of frames beside a stacked copy of them."""
    buffer: np.ndarray | None = None
    filled = 0
    for frame in frames:
        if isinstance(frame, FrameRows):
            if buffer is not None and filled:  # smaller frames before it (a size changing mid-file) keep their order
                yield buffer[:filled]
                filled = 0
            yield frame
            del frame  # let go of before the next frame is asked for
            continue
        if buffer is None and handed_alone(frame.nbytes):  # a buffer of one frame would be a second copy of it
            batch = frame[None]
            del frame
            yield batch
            del batch
            continue
        if buffer is None:
            buffer = np.empty((BATCH_BYTES // frame.nbytes, *frame.shape), dtype=frame.dtype)
        buffer[filled] = frame
        filled += 1
        del frame  # not held while the batch is transformed
        if filled == len(buffer):
            yield buffer
            filled = 0
    if buffer is not None and filled:
        yield buffer[:filled]


def transform_in_batches(
    frames: Iterable[np.ndarray | FrameRows], count: int, transform: Transform | BandedTransform
) -> torch.Tensor:
    """`transform` applied to `count` frames a few at a time, its outputs written into one tensor (N, ...) as
    they come: neither the decoded frames nor a second copy of the outputs are ever held whole. A `FrameRows`
    goes to `transform.from_rows` (the reader hands them only to a `BandedTransform`)."""
    out: torch.Tensor | None = None
    filled = 0
    for batch in _batches(frames):
        result = cast(BandedTransform, transform).from_rows(batch) if isinstance(batch, FrameRows) else transform(batch)
        del batch  # the frames are not held while the next ones are decoded
        if out is None:
            out = result.new_empty((count, *result.shape[1:]))
        out[filled : filled + len(result)] = result
        filled += len(result)
    if out is None or filled != count:
        raise RuntimeError(f"a reader served {filled} frames where {count} were asked for")
    return out


def _counted(items: Iterator[T], bar: tqdm) -> Iterator[T]:
    """`items`, each counted on `bar` as it is handed on and let go of before the next is made (a bar drawn on a
    terminal holds the last item while it asks for the next: two full-size frames at once)."""
    for item in items:
        bar.update()
        yield item
        del item


def _stack(frames: Iterable[np.ndarray], count: int) -> np.ndarray:
    """`count` frames written into one array as they come (no list of frames beside the stacked copy)."""
    out: np.ndarray | None = None
    filled = 0
    for frame in frames:
        if out is None:
            out = np.empty((count, *frame.shape), dtype=frame.dtype)
        out[filled] = frame
        filled += 1
    if out is None or filled != count:
        raise RuntimeError(f"a reader served {filled} frames where {count} were asked for")
    return out


class VideoReader(ABC):
    """An opened video: metadata, frames by index (`get_frames`) and frames in order (`iter_frames`)."""

    progress_delay = 2.0  # seconds a decode runs before its progress bar appears: short decodes print nothing

    def __init__(self, source: str, times: np.ndarray | None, fps: float, size: tuple[int, int]) -> None:
        self.source = source
        self.times = times  # (num_frames,) float64 seconds, display order; None for a live source
        self.fps = float(fps)  # nominal rate (frames per second); the times are the truth
        self.size = size  # (width, height) of the frames as returned (rotation applied)

    @property
    def num_frames(self) -> int | None:
        """Frames in the video, or None for a live source of unknown length."""
        return None if self.times is None else len(self.times)

    @property
    def duration(self) -> float | None:
        """Seconds from the start of the file to the end of the last frame, or None for a live source."""
        if self.times is None:
            return None
        return float(self.times[-1]) + 1.0 / self.fps if len(self.times) else 0.0

    def get_frames(
        self, indices: Iterable[int] | np.ndarray, transform: Transform | BandedTransform | None = None
    ) -> np.ndarray | torch.Tensor:
        """Frames at `indices` (any order, repeats allowed): uint8 (N, H, W, 3) RGB, or with `transform` its
        outputs stacked (N, ...), computed a few frames at a time while decoding (a `BandedTransform` takes the
        frames that go to it alone a band of rows at a time where the reader can). Asking for a frame that does not
        decode raises `FramesLost`, which names every such frame."""
        idx = as_indices(indices, self.source)
        if self.times is None:
            raise VideoError(f"{self.source}: live source has no known length; use iter_frames()")
        bad = idx[(idx < 0) | (idx >= len(self.times))]
        if bad.size:
            raise VideoError(
                f"{self.source}: frame index {int(bad[0])} out of range (video has {len(self.times)} frames)"
            )
        if idx.size == 0:
            empty = np.empty((0, self.size[1], self.size[0], 3), dtype=np.uint8)
            return empty if transform is None else transform(empty)
        unique, inverse = np.unique(idx, return_inverse=True)
        with self._progress(None, len(unique)) as bar:
            out: np.ndarray | torch.Tensor
            if transform is None:
                out = _stack(_counted(self._decode(unique), bar), len(unique))
            else:
                banded = isinstance(transform, BandedTransform)
                frames = self._decode_in_bands(unique) if banded else self._decode(unique)
                out = transform_in_batches(_counted(frames, bar), len(unique), transform)
        if len(unique) == len(idx) and np.array_equal(unique, idx):
            return out  # asked in order without repeats (the usual case): no second copy
        return out[inverse] if transform is None else out[torch.from_numpy(inverse)]

    def iter_frames(self, fps: float | None = None) -> Iterator[tuple[float, np.ndarray]]:
        """Yield (presentation time in seconds, frame) in order: every frame, or frames sampled at `fps`."""
        if self.times is None:
            raise VideoError(f"{self.source}: this reader cannot iterate a source of unknown length")
        idx = np.arange(len(self.times)) if fps is None else self.rate_indices(fps)
        for i, frame in zip(idx, self._decode(idx), strict=True):
            yield float(self.times[i]), frame

    def rate_indices(self, fps: float) -> np.ndarray:
        """Indices of the frames sampled at `fps` by presentation time (half a nominal frame of tolerance)."""
        if self.times is None:
            raise VideoError(f"{self.source}: a live source has no timeline to sample from")
        return rate_indices(self.times, fps, 0.5 / self.fps)

    def _progress(self, frames: Iterable[T] | None, total: int | None, desc: str = "decoding") -> tqdm:
        """`frames` (arrays or decoded pictures; None: a bar counted by hand) through a progress bar that stays
        hidden for `progress_delay` seconds and off a terminal (see `llava.progress`); it disappears when the
        decode is done."""
        return progress_bar(frames, total=total, desc=desc, unit="frame", leave=False, delay=self.progress_delay)

    @abstractmethod
    def _decode(self, indices: np.ndarray) -> Iterator[np.ndarray]:
        """Yield the frames at sorted, unique, valid `indices`, one (H, W, 3) uint8 array at a time."""

    def _decode_in_bands(self, indices: np.ndarray) -> Iterator[np.ndarray | FrameRows]:
        """As `_decode`, for a `BandedTransform`: a reader that can may yield a frame that goes to a transform alone
        (`handed_alone`) as a `FrameRows` instead of an array."""
        return self._decode(indices)

    def close(self) -> None:  # noqa: B027 (optional: only readers that hold a decoder override it)
        """Release the underlying decoder (a no-op for readers that hold none)."""

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}({self.source!r}, num_frames={self.num_frames}, fps={self.fps:.3f}, size={self.size})"
