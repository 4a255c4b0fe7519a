"""Which frames to take: uniform sampling by index and sampling at a rate by presentation time.

Both work on a video's timeline: the presentation time of every frame in display order, in seconds since the
start of the file (see `llava.video.reader.VideoReader.times`).

    >>> uniform_indices(300, 8)                       # the original's np.linspace(0, n - 1, 8).astype(int)
    >>> rate_indices(reader.times, fps=1.0, tolerance=0.5 / reader.fps)
"""

from __future__ import annotations

import numpy as np

_EPS = 1e-9


def uniform_indices(num_total: int, num_frames: int) -> np.ndarray:
    """`num_frames` indices spread evenly over `num_total` frames: int(linspace(0, num_total - 1, num_frames))."""
    if num_total <= 0 or num_frames <= 0:
        raise ValueError(f"need num_total > 0 and num_frames > 0 (got {num_total}, {num_frames})")
    return np.linspace(0, num_total - 1, num_frames).astype(np.int64)


def rate_indices(times: np.ndarray, fps: float, tolerance: float) -> np.ndarray:
    """Indices of the frames sampled at `fps` from frames presented at `times` (seconds, non-decreasing).

    Target k (time k / fps, for every target not after the last frame plus `tolerance`) takes the first frame
    presented at k / fps - `tolerance` or later; a frame is taken at most once, so asking for more than the
    video's rate returns every frame. `tolerance` is usually half the nominal frame interval.
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive (got {fps})")
    times = np.asarray(times, dtype=np.float64)
    if times.size == 0:
        return np.zeros(0, dtype=np.int64)
    origin = min(0.0, float(times[0]))
    count = int(np.floor((times[-1] - origin + tolerance) * fps + _EPS)) + 1
    targets = origin + np.arange(count) / fps - tolerance - _EPS
    idx = np.searchsorted(times, targets, side="left")
    return np.unique(idx[idx < times.size])


def frame_count(available: int, max_frames: int, multiple_of: int) -> int:
    """How many of `available` frames a capped, rounded sampling takes: at most `max_frames`, rounded down to a
    multiple of `multiple_of`, at least `multiple_of` (the original's streaming rule: 8 to 512)."""
    return max(multiple_of, min(available, max_frames) // multiple_of * multiple_of)


def nearest_decodable(indices: np.ndarray, lost: np.ndarray, num_total: int) -> np.ndarray:
    """`indices` (sorted) of a video of `num_total` frames with each frame in `lost` replaced by the nearest frame
    not lost (the earlier on a tie), keeping their count and order. Where at least as many frames decode as are
    asked for, the result has no repeats: a replacement that meets a frame already taken moves on to the next one
    (and those after it along), a run at the end of the video moves back."""
    kept = np.setdiff1d(np.arange(num_total, dtype=np.int64), lost)
    if kept.size == 0:
        raise ValueError("no frame of the video decodes")
    after = np.minimum(np.searchsorted(kept, indices), kept.size - 1)  # first kept frame at or after each index
    before = np.maximum(after - 1, 0)
    nearer_after = np.abs(kept[after] - indices) < np.abs(indices - kept[before])
    place = np.where(nearer_after, after, before)  # positions in `kept`, non-decreasing
    if kept.size >= place.size:  # each at least one past the one before, and room left for those after it
        step = np.arange(place.size)
        place = np.minimum(np.maximum.accumulate(place - step), kept.size - place.size) + step
    return kept[place]
