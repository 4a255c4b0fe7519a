"""SceneTilling: split a video into scenes from per-frame feature similarities.

Definition (VideoLLaMB, "SceneTilling"), for per-frame features ``f_0 .. f_{T-1}``:

* ``s_i = cos(f_i, f_{i+1})`` for ``i = 0 .. T-2`` (``s_i`` sits between frames ``i`` and ``i+1``);
* ``lpeak_i``: walk left from ``i`` while the similarity keeps rising (go from ``j`` to ``j-1``
  while ``s_{j-1} >= s_j``); the highest value reached.  ``rpeak_i``: the same to the right;
* ``depth_i = lpeak_i + rpeak_i - 2 * s_i``;
* top-k mode: the ``k`` deepest positions are cuts; threshold mode: the positions with
  ``depth_i > mean(depth) + alpha * std(depth)`` (unbiased std), at most ``max_cuts`` of them
  (the deepest are kept);
* a cut at ``i`` is a boundary: a segment ends at frame ``i`` (inclusive).  ``T-1`` is always
  appended as the final boundary.

The release computes the climbs with an O(T^2) loop; here they take O(T): a climb that steps onto
its neighbour continues exactly as the neighbour's climb, so ``lpeak`` is the similarity at the
start of the current non-increasing run (one left-to-right scan, vectorised with a running max of
run-start indices), ``rpeak`` likewise from the right.

Deterministic tie-breaking everywhere: equal depths are ranked lower index first.

Precision (``segment(..., precision=)``): "float64" computes the depths in float64 (from float32
similarities of torch features); "feature_dtype" is the release's arithmetic, so that its cuts reproduce:
``torch.cosine_similarity`` and ``lpeak + rpeak - 2 s`` in the features' own dtype (float16 for the
released model as its loader runs it) and the threshold ``mean + alpha * std`` from ``torch.std_mean`` in
that dtype.  The climbs only select values, so they are the same in both.

``OnlineSceneTiller`` is a streaming variant that decides each cut from past frames only.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "SCENETILLING_PRECISIONS",
    "similarities",
    "depth_scores",
    "segment",
    "segments_from_boundaries",
    "subsample_segment",
    "OnlineSceneTiller",
]

_EPS = 1e-8  # denominator floor of the cosine (zero vectors give similarity 0)
SCENETILLING_PRECISIONS = ("float64", "feature_dtype")

ArrayLike = torch.Tensor | np.ndarray


def similarities(features: ArrayLike) -> ArrayLike:
    """Cosine similarity of consecutive frames.

    Args:
        features: ``(T, D)`` torch tensor or numpy array (any leading frame count ``T >= 0``).

    Returns:
        ``(max(T-1, 0),)`` similarities, same kind as the input.  Torch inputs stay on their device
        (half precision is upcast to float32); numpy inputs are computed in float64.
        ``cos(a, b) = <a, b> / max(|a| |b|, 1e-8)``.
    """
    if isinstance(features, torch.Tensor):
        t = features
        if t.dim() != 2:
            raise ValueError(f"features must be (T, D), got shape {tuple(t.shape)}")
        if not t.is_floating_point() or t.dtype in (torch.float16, torch.bfloat16):
            t = t.float()
        dots_t = (t[:-1] * t[1:]).sum(dim=1)
        norms_t = t.pow(2).sum(dim=1).sqrt()
        return dots_t / (norms_t[:-1] * norms_t[1:]).clamp_min(_EPS)
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"features must be (T, D), got shape {f.shape}")
    dots = np.sum(f[:-1] * f[1:], axis=1)
    norms = np.sqrt(np.sum(f * f, axis=1))
    return dots / np.maximum(norms[:-1] * norms[1:], _EPS)


def _peaks(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where the left and the right climb of every similarity end (indices into `s`), in O(T)."""
    n = s.shape[0]
    idx = np.arange(n)
    # A left climb stops at j when j == 0 or s[j-1] < s[j]: lpeak_i = s[last such j <= i].
    starts = np.ones(n, dtype=bool)
    starts[1:] = s[:-1] < s[1:]
    left = np.maximum.accumulate(np.where(starts, idx, 0))
    # A right climb stops at j when j == n-1 or s[j+1] < s[j]: rpeak_i = s[first such j >= i].
    ends = np.ones(n, dtype=bool)
    ends[:-1] = s[1:] < s[:-1]
    right = np.minimum.accumulate(np.where(ends, idx, n)[::-1])[::-1]
    return left, right


def _depth_numpy(s: np.ndarray) -> np.ndarray:
    """O(T) vectorised depth of a 1-D float64 similarity array (see module docstring)."""
    if s.shape[0] == 0:
        return s.copy()
    left, right = _peaks(s)
    return (s[left] + s[right]) - 2 * s


def release_depth_scores(features: ArrayLike) -> torch.Tensor:
    """The release's depths of ``(T, D)`` features, computed in their own dtype (``T-1`` values): cosine
    similarity of consecutive frames by ``torch.cosine_similarity``, then ``(lpeak + rpeak) - 2 s``."""
    f = torch.as_tensor(features)
    if f.dim() != 2 or not f.is_floating_point():
        raise ValueError(f"features must be floating point (T, D), got {f.dtype} {tuple(f.shape)}")
    s = torch.cosine_similarity(f[:-1], f[1:])
    values = s.detach().double().cpu().numpy()  # exact: the climbs compare the dtype's own values
    if not np.all(np.isfinite(values)):
        raise ValueError("similarities contain non-finite values")
    if s.shape[0] == 0:
        return s
    left, right = (torch.from_numpy(i.copy()).to(s.device) for i in _peaks(values))  # copy: no negative strides
    return (s[left] + s[right]) - 2 * s


def depth_scores(similarities: ArrayLike) -> ArrayLike:
    """Depth ``lpeak_i + rpeak_i - 2 s_i`` of every similarity, in O(T).

    Args:
        similarities: 1-D torch tensor or numpy array (``T-1`` values).

    Returns:
        Same length and kind as the input (torch: same dtype and device; numpy: float64).

    Raises:
        ValueError: if the input is not 1-D or holds non-finite values.
    """
    if isinstance(similarities, torch.Tensor):
        s = similarities.detach().double().cpu().numpy()
    else:
        s = np.asarray(similarities, np.float64)
    if s.ndim != 1:
        raise ValueError(f"similarities must be 1-D, got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("similarities contain non-finite values")
    d = _depth_numpy(s)
    if isinstance(similarities, torch.Tensor):
        return torch.from_numpy(d).to(device=similarities.device, dtype=similarities.dtype)
    return d


def _threshold(depth: np.ndarray, alpha: float) -> float:
    """mean + alpha * std (unbiased) of float64 depths."""
    return float(depth.mean() + alpha * depth.std(ddof=1))


def _release_threshold(depth: torch.Tensor, alpha: float) -> float:
    """mean + alpha * std (unbiased) as the release computes it: ``torch.std_mean`` in the depths' dtype."""
    std, mean = torch.std_mean(depth)
    return float(mean + alpha * std)


def _rank(depth: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Candidates ordered deepest first; equal depths: lower index first."""
    return candidates[np.lexsort((candidates, -depth[candidates]))]


def _accept(ranked: np.ndarray, limit: int, num_frames: int, min_length: int) -> list[int]:
    """Accept ranked cuts until ``limit``, skipping any that makes a segment < ``min_length``.

    Boundary ``b`` ends a segment at frame ``b``; with accepted neighbours ``p < b < q``
    (``p = -1`` and ``q = T-1`` at the ends) the two new segments have ``b - p`` and ``q - b``
    frames, both must be ``>= min_length``.
    """
    if min_length <= 1:
        return sorted(int(b) for b in ranked[:limit])
    accepted: list[int] = []
    for b in ranked.tolist():
        if len(accepted) >= limit:
            break
        pos = bisect_left(accepted, b)
        prev = accepted[pos - 1] if pos > 0 else -1
        nxt = accepted[pos] if pos < len(accepted) else num_frames - 1
        if b - prev >= min_length and nxt - b >= min_length:
            accepted.insert(pos, b)
    return accepted


def segment(
    features: ArrayLike,
    k: int | None = None,
    alpha: float = 0.5,
    max_cuts: int | None = 15,
    min_length: int = 1,
    precision: str = "float64",
) -> list[int]:
    """Scene boundaries of a video (SceneTilling).

    Args:
        features: ``(T, D)`` per-frame features, torch tensor or numpy array.
        k: top-k mode: the ``k`` deepest positions are cuts (all ``T-1`` if ``k`` exceeds them).
            ``None``: threshold mode.
        alpha: threshold mode: cut where ``depth > mean(depth) + alpha * std(depth)`` (unbiased
            std).  With fewer than two depths (``T <= 2``) the std is undefined and, as with all
            depths equal (e.g. constant features), nothing stands out: no cuts.
        max_cuts: threshold mode: keep at most this many cuts, the deepest (``None``: no limit).
        min_length: minimum frames per segment.  Candidates are accepted deepest-first (ties: lower
            index first) and one is skipped if it would leave a segment shorter than
            ``min_length``; top-k mode then goes on down the ranking until ``k`` are accepted.
            ``1`` (default) is the original behaviour.  A video shorter than ``min_length`` is one
            segment.
        precision: "float64" or "feature_dtype" (the release's arithmetic; see the module docstring).

    Returns:
        Sorted boundaries as python ints; a boundary ``b`` ends a segment at frame ``b``
        (inclusive); the last one is always ``T-1``.  ``T == 0`` gives ``[]``.
    """
    if k is not None and k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if min_length < 1:
        raise ValueError(f"min_length must be >= 1, got {min_length}")
    if precision not in SCENETILLING_PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(SCENETILLING_PRECISIONS)}")
    num_frames = len(features)
    if num_frames == 0:
        return []
    if precision == "feature_dtype":
        exact = release_depth_scores(features)
        depth = exact.detach().double().cpu().numpy()  # exact: ranks as the dtype's values do
    else:
        sims = similarities(features)
        if isinstance(sims, torch.Tensor):
            sims = sims.detach().double().cpu().numpy()
        depth = np.asarray(depth_scores(sims))  # numpy in, numpy out
    n = depth.shape[0]
    if k is not None:
        ranked, limit = _rank(depth, np.arange(n)), k
    elif n < 2 or depth.max() == depth.min():
        ranked, limit = np.arange(0), 0
    else:
        threshold = _release_threshold(exact, alpha) if precision == "feature_dtype" else _threshold(depth, alpha)
        ranked = _rank(depth, np.flatnonzero(depth > threshold))
        limit = n if max_cuts is None else max_cuts
    cuts = _accept(ranked, limit, num_frames, min_length)
    if not cuts or cuts[-1] != num_frames - 1:
        cuts.append(num_frames - 1)
    return cuts


def segments_from_boundaries(boundaries: Sequence[int]) -> list[tuple[int, int]]:
    """``[(start, end_inclusive), ...]`` from sorted boundaries (each ends a segment).

    Example: ``[2, 5, 6] -> [(0, 2), (3, 5), (6, 6)]``.
    """
    segments: list[tuple[int, int]] = []
    start = 0
    for b in boundaries:
        b = int(b)
        if b < start:
            raise ValueError(f"boundaries must be strictly increasing and >= 0, got {list(boundaries)}")
        segments.append((start, b))
        start = b + 1
    return segments


def subsample_segment(start: int, end: int, max_frames: int) -> list[int]:
    """At most ``max_frames`` frame indices spread uniformly over ``start .. end`` (inclusive).

    Uses ``np.linspace(start, end, n).astype(int)`` (truncation) with
    ``n = min(max_frames, end - start + 1)``; short segments keep all their frames.
    """
    if end < start:
        raise ValueError(f"end ({end}) < start ({start})")
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    n = min(max_frames, end - start + 1)
    return [int(i) for i in np.linspace(start, end, n).astype(int)]


ONLINE_ALPHA = 0.5  # online SceneTilling's defaults (`BridgeConfig.stream_scenetilling_*` starts from them)
ONLINE_MIN_DEPTH = 0.1


class OnlineSceneTiller:
    """Streaming SceneTilling: decides each cut from the frames seen so far, O(1) per frame.

    Each new frame ``t`` gives ``s = cos(f_{t-1}, f_t)`` and a left-only depth
    ``d = lpeak - s``, where ``lpeak`` is the climb to the left (kept incrementally: it carries
    over while the similarity does not rise, else restarts at ``s``).  A cut between frames
    ``t-1`` and ``t`` (frame ``t-1`` ends a segment) is declared when all of:

    * ``d > mean + alpha * std`` of the depths seen before (running Welford mean and unbiased std;
      the std counts as 0 until two depths were seen);
    * ``d >= min_depth``: an absolute floor, so noise in a static scene never cuts;
    * the current segment already has ``>= min_length`` frames;

    or, regardless of the above, when the current segment has reached ``max_length`` frames.

    Args:
        alpha: how many standard deviations above the running mean a depth must be.
        min_depth: absolute floor on the depth of a cut (cosine units).
        min_length: minimum frames in a segment (the first segment included).
        max_length: if set, force a cut once a segment has this many frames.

    Memory: the previous feature plus a handful of scalars; ``state_dict()`` holds only plain
    python floats/ints (and the previous feature as a list of floats).
    """

    def __init__(
        self,
        alpha: float = ONLINE_ALPHA,
        min_depth: float = ONLINE_MIN_DEPTH,
        min_length: int = 1,
        max_length: int | None = None,
    ) -> None:
        if min_length < 1:
            raise ValueError(f"min_length must be >= 1, got {min_length}")
        if max_length is not None and max_length < min_length:
            raise ValueError(f"max_length ({max_length}) < min_length ({min_length})")
        self.alpha = float(alpha)
        self.min_depth = float(min_depth)
        self.min_length = int(min_length)
        self.max_length = None if max_length is None else int(max_length)
        self.reset()

    def reset(self) -> None:
        """Forget the stream (configuration is kept)."""
        self._prev: np.ndarray | None = None
        self._prev_norm = 0.0
        self._prev_sim: float | None = None
        self._lpeak = 0.0
        self._count = 0  # depths seen
        self._mean = 0.0
        self._m2 = 0.0
        self._seg_len = 0  # frames in the current segment
        self.frames_seen = 0

    def _threshold(self) -> float:
        std = math.sqrt(self._m2 / (self._count - 1)) if self._count >= 2 else 0.0
        return self._mean + self.alpha * std

    def push(self, feature: ArrayLike) -> bool:
        """Add the next frame's feature (1-D); True if the previous frame ended a segment."""
        if isinstance(feature, torch.Tensor):
            feature = feature.detach().double().cpu().numpy()
        f = np.asarray(feature, dtype=np.float64).reshape(-1)
        norm = float(np.sqrt(np.sum(f * f)))
        self.frames_seen += 1
        if self._prev is None:
            self._prev, self._prev_norm, self._seg_len = f, norm, 1
            return False
        s = float(np.sum(self._prev * f)) / max(self._prev_norm * norm, _EPS)
        self._lpeak = self._lpeak if self._prev_sim is not None and self._prev_sim >= s else s
        d = self._lpeak - s
        cut = d > self._threshold() and d >= self.min_depth and self._seg_len >= self.min_length
        if self.max_length is not None and self._seg_len >= self.max_length:
            cut = True
        self._count += 1  # Welford update with d, after the decision
        delta = d - self._mean
        self._mean += delta / self._count
        self._m2 += delta * (d - self._mean)
        self._prev, self._prev_norm, self._prev_sim = f, norm, s
        self._seg_len = 1 if cut else self._seg_len + 1
        return cut

    def state_dict(self) -> dict[str, Any]:
        """Configuration and stream state as plain python values (JSON-serialisable)."""
        return {
            "alpha": self.alpha,
            "min_depth": self.min_depth,
            "min_length": self.min_length,
            "max_length": self.max_length,
            "prev_feature": None if self._prev is None else [float(x) for x in self._prev],
            "prev_sim": self._prev_sim,
            "lpeak": self._lpeak,
            "count": self._count,
            "mean": self._mean,
            "m2": self._m2,
            "segment_length": self._seg_len,
            "frames_seen": self.frames_seen,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict()`` returned; the stream resumes exactly where it was."""
        self.alpha = float(state["alpha"])
        self.min_depth = float(state["min_depth"])
        self.min_length = int(state["min_length"])
        self.max_length = None if state["max_length"] is None else int(state["max_length"])
        prev = state["prev_feature"]
        self._prev = None if prev is None else np.asarray(prev, dtype=np.float64)
        self._prev_norm = 0.0 if self._prev is None else float(np.sqrt(np.sum(self._prev * self._prev)))
        self._prev_sim = None if state["prev_sim"] is None else float(state["prev_sim"])
        self._lpeak = float(state["lpeak"])
        self._count = int(state["count"])
        self._mean = float(state["mean"])
        self._m2 = float(state["m2"])
        self._seg_len = int(state["segment_length"])
        self.frames_seen = int(state["frames_seen"])
