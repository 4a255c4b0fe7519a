"""A least-recently-used cache held within a byte budget: what keeps the training data's decoded videos
(`llava.data.video_cache`) and a frozen video tower's frame tokens (`llava.model.frame_cache`).

Entries are kept in least-recently-used order and the oldest are dropped to stay within the budget; a value larger
than the whole budget is returned but not kept. A hit hands out a copy of the kept value and a miss keeps a copy of
the value it returns, so nothing a caller does to a value changes what later callers get. Hits and misses are
counted.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

MB = 1 << 20
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BudgetCache(Generic[K, V]):
    """Values by key, at most `budget_mb` megabytes of them as `size_of` counts (0: keep nothing)."""

    def __init__(self, budget_mb: float, size_of: Callable[[V], int], copy_of: Callable[[V], V]) -> None:
        if budget_mb < 0:
            raise ValueError(f"a cache budget must be at least 0 MB, got {budget_mb}")
        self.budget_bytes = int(budget_mb * MB)
        self.held_bytes = 0
        self.hits = 0
        self.misses = 0
        self._size_of = size_of
        self._copy_of = copy_of
        self._entries: OrderedDict[K, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def get(self, key: K, load: Callable[[], V]) -> V:
        """A copy of the value kept under `key`, or `load()`'s result (a copy kept when it fits). An error from
        `load` propagates and nothing is kept."""
        kept = self._entries.get(key)
        if kept is not None:
            self.hits += 1
            self._entries.move_to_end(key)
            return self._copy_of(kept)
        self.misses += 1
        value = load()
        self._keep(key, value)
        return value

    def _keep(self, key: K, value: V) -> None:
        size = self._size_of(value)
        if size > self.budget_bytes:
            return
        while self.held_bytes + size > self.budget_bytes:
            _, oldest = self._entries.popitem(last=False)
            self.held_bytes -= self._size_of(oldest)
        self._entries[key] = self._copy_of(value)
        self.held_bytes += size
