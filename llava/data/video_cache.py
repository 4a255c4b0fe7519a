"""A memory-bounded cache of videos' model-ready pixels, so a video asked about by several rows, or in several
epochs, is decoded once per process.

    >>> cache = VideoCache(budget_mb=1024)
    >>> pixels = cache.get(key, lambda: sample_video(path, sampling, transform=processor.video)[0])

Entries are kept in least-recently-used order and the oldest are dropped to stay within the budget; a video
larger than the whole budget is returned but not kept. `get` hands out a copy, so nothing a caller does to its
tensor changes what later callers get. A DataLoader worker holds its own cache: the budget is per worker, and the
cache only outlives an epoch when the workers do (`persistent_workers`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable

import torch

MB = 1 << 20


class VideoCache:
    """Tensors by key, at most `budget_mb` megabytes of them (0: keep nothing)."""

    def __init__(self, budget_mb: float) -> None:
        if budget_mb < 0:
            raise ValueError(f"a cache budget must be at least 0 MB, got {budget_mb}")
        self.budget_bytes = int(budget_mb * MB)
        self.held_bytes = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[Hashable, torch.Tensor] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def get(self, key: Hashable, load: Callable[[], torch.Tensor]) -> torch.Tensor:
        """A copy of the tensor kept under `key`, or `load()`'s result (kept when it fits). An error from `load`
        propagates and nothing is kept."""
        kept = self._entries.get(key)
        if kept is not None:
            self.hits += 1
            self._entries.move_to_end(key)
            return kept.clone()
        self.misses += 1
        tensor = load()
        size = tensor.nbytes
        if size <= self.budget_bytes:
            while self.held_bytes + size > self.budget_bytes:
                _, oldest = self._entries.popitem(last=False)
                self.held_bytes -= oldest.nbytes
            self._entries[key] = tensor.clone()
            self.held_bytes += size
        return tensor
