"""A memory-bounded cache of videos' model-ready pixels, so a video asked about by several rows, or in several
epochs, is decoded once per process.

    >>> cache = VideoCache(budget_mb=1024)
    >>> pixels = cache.get(key, lambda: sample_video(path, sampling, transform=processor.video)[0])

A `llava.budget_cache.BudgetCache` of tensors (least recently used dropped first, copies handed out). A DataLoader
worker holds its own cache: the budget is per worker, and the cache only outlives an epoch when the workers do
(`persistent_workers`).
"""

from __future__ import annotations

from collections.abc import Hashable

import torch

from llava.budget_cache import BudgetCache


class VideoCache(BudgetCache[Hashable, torch.Tensor]):
    """Tensors by key, at most `budget_mb` megabytes of them (0: keep nothing)."""

    def __init__(self, budget_mb: float) -> None:
        super().__init__(budget_mb, size_of=lambda tensor: tensor.nbytes, copy_of=torch.Tensor.clone)
