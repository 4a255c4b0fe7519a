"""Time the O(T) SceneTilling against the literal O(T^2) definition.

Usage::

    python benchmarks/bench_scenetilling.py [--out benchmarks/results/scenetilling.json]

For T in 256 .. 8192 it segments two inputs with both implementations (threshold mode, the
released defaults), checks that they return the same boundaries and prints a table:

* ``drift``: frames rotating in a plane with a steadily growing step, so the similarity falls
  monotonically and every left climb runs back to the start: the naive walk's worst case, O(T^2);
* ``scenes``: 16 noisy static scenes with hard cuts; climbs are short, so even the naive walk is
  close to linear there and the gap is the Python loop overhead.

Times are medians: 3 runs of the naive implementation (``benchmarks/naive_scenetilling.py``; about
2 s per run at T=8192 on ``drift``), 7 of ours.  The whole benchmark takes about 10 s on a CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
sys.path.insert(0, str(_HERE.parent))

from naive_scenetilling import naive_segment  # noqa: E402

from llava.progress import progress_bar  # noqa: E402
from llava.video.scenetilling import segment  # noqa: E402

SIZES = (256, 512, 1024, 2048, 4096, 8192)


def drift_features(num_frames: int, dim: int = 256) -> np.ndarray:
    """Unit vectors in a random plane; the angle step grows, so similarities fall monotonically."""
    rng = np.random.default_rng(0)
    basis, _ = np.linalg.qr(rng.normal(size=(dim, 2)))
    steps = np.linspace(1e-4, 0.05, num_frames)
    angles = np.concatenate([[0.0], np.cumsum(steps[:-1])])
    return np.cos(angles)[:, None] * basis[:, 0] + np.sin(angles)[:, None] * basis[:, 1]


def scene_features(num_frames: int, dim: int = 256, scenes: int = 16) -> np.ndarray:
    """``scenes`` unit scene vectors held for equal spans, plus small per-frame noise."""
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(scenes, dim))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    labels = np.arange(num_frames) * scenes // num_frames
    return centers[labels] + rng.normal(scale=0.1 / np.sqrt(dim), size=(num_frames, dim))


def _time(fn: Callable[[], list[int]], repeats: int) -> tuple[float, list[int]]:
    """Median wall time of ``repeats`` calls, and the last result."""
    times, result = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def run(sizes: tuple[int, ...] = SIZES) -> list[dict]:
    """Benchmark rows: input, T, naive seconds, ours seconds, ratio, boundaries equal."""
    rows = []
    inputs = (("drift", drift_features), ("scenes", scene_features))
    cases = [(name, make, num_frames) for name, make in inputs for num_frames in sizes]
    for name, make, num_frames in progress_bar(cases, desc="inputs", unit="input"):
        feats = make(num_frames)
        naive_s, naive_out = _time(lambda: naive_segment(feats), repeats=3)
        ours_s, ours_out = _time(lambda: segment(feats), repeats=7)
        if naive_out != ours_out:
            raise AssertionError(f"{name} T={num_frames}: boundaries differ")
        rows.append(
            dict(input=name, T=num_frames, naive_s=naive_s, ours_s=ours_s,
                 speedup=naive_s / ours_s, same_boundaries=True, num_boundaries=len(ours_out))
        )
        print(f"{name:7s} {num_frames:6d} {naive_s:10.4f} {ours_s:10.5f} {naive_s / ours_s:10.0f}x", flush=True)
    return rows


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args()
    print(f"{'input':7s} {'T':>6s} {'naive s':>10s} {'ours s':>10s} {'ratio':>11s}")
    rows = run()
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"benchmark": "scenetilling", "rows": rows}, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
