"""Deliberately naive SceneTilling, written literally from the definition (O(T^2) worst case).

Reference for ``llava.video.scenetilling``: used by ``tests/video/test_scenetilling.py`` (exact
agreement) and ``benchmarks/bench_scenetilling.py`` (timing).  Plain loops on purpose; only the
per-pair cosine and the mean/std use numpy, with the same arithmetic as the library, so that
both sides see bit-identical similarities and thresholds.
"""

from __future__ import annotations

import numpy as np


def naive_similarities(features: np.ndarray) -> list[float]:
    """``s_i = <f_i, f_{i+1}> / max(|f_i| |f_{i+1}|, 1e-8)``, one pair at a time."""
    f = np.asarray(features, dtype=np.float64)
    sims = []
    for i in range(len(f) - 1):
        a, b = f[i], f[i + 1]
        denom = max(float(np.sqrt(np.sum(a * a)) * np.sqrt(np.sum(b * b))), 1e-8)
        sims.append(float(np.sum(a * b)) / denom)
    return sims


def naive_depths(sims: list[float]) -> list[float]:
    """``lpeak_i + rpeak_i - 2 s_i`` with literal walking loops."""
    depths = []
    for i in range(len(sims)):
        j = i
        while j - 1 >= 0 and sims[j - 1] >= sims[j]:  # keep climbing left
            j -= 1
        lpeak = sims[j]
        j = i
        while j + 1 < len(sims) and sims[j + 1] >= sims[j]:  # keep climbing right
            j += 1
        rpeak = sims[j]
        depths.append((lpeak + rpeak) - 2 * sims[i])
    return depths


def _valid(cuts: list[int], num_frames: int, min_length: int) -> bool:
    """True if every segment made by ``cuts`` (plus the final frame) has ``>= min_length`` frames."""
    ends = sorted(cuts) + [num_frames - 1]
    start = 0
    for e in ends:
        if e - start + 1 < min_length:
            return False
        start = e + 1
    return True


def naive_segment(
    features: np.ndarray,
    k: int | None = None,
    alpha: float = 0.5,
    max_cuts: int | None = 15,
    min_length: int = 1,
) -> list[int]:
    """Boundaries by the definition; same contract as ``llava.video.scenetilling.segment``."""
    num_frames = len(features)
    if num_frames == 0:
        return []
    depths = naive_depths(naive_similarities(features))
    # rank: deepest first, equal depths lower index first
    ranked = sorted(range(len(depths)), key=lambda i: (-depths[i], i))
    if k is not None:
        limit = k
    else:
        d = np.asarray(depths, dtype=np.float64)
        if len(depths) < 2 or max(depths) == min(depths):
            ranked = []
        else:
            threshold = d.mean() + alpha * d.std(ddof=1)
            ranked = [i for i in ranked if depths[i] > threshold]
        limit = len(depths) if max_cuts is None else max_cuts
    cuts: list[int] = []
    for i in ranked:
        if len(cuts) >= limit:
            break
        if min_length <= 1 or _valid(cuts + [i], num_frames, min_length):
            cuts.append(i)
    cuts.sort()
    if not cuts or cuts[-1] != num_frames - 1:
        cuts.append(num_frames - 1)
    return cuts
