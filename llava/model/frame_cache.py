"""A memory-bounded cache of a frozen video tower's per-frame output, so that a video seen again in training (by
another row or in a later epoch) skips the tower.

    >>> cache = FrameTokenCache(budget_mb=1536)
    >>> model.attach_frame_token_cache(cache)           # refused unless the video tower is frozen
    >>> frames = model.encode_video_frames(videos)      # segmented videos: from the cache, or the tower once

Entries are keyed by the video's pixels: a BLAKE2b digest of the tensor's bytes, with its shape and dtype, so two
videos share an entry only when their pixels are the same bit for bit. They are kept in least-recently-used order
and the oldest are dropped to stay within the budget; a video larger than the whole budget is returned but not kept.
An entry is a compact copy of the frame tokens (the CLS feature (T, D) and the pooled tokens (T, tokens_per_frame,
D), on the tower's device), and `get` hands out a copy of it, so nothing a caller does to its tensors changes what
later callers get.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import Tensor

from llava.model.stream import FrameTokens

MB = 1 << 20
PixelsKey = tuple[bytes, tuple[int, ...], str]  # (digest of the bytes, shape, dtype)


def pixels_key(pixels: Tensor) -> PixelsKey:
    """A pixel tensor's cache key: the BLAKE2b digest (32 bytes) of its bytes, with its shape and dtype."""
    data = pixels.detach().contiguous().cpu()
    digest = hashlib.blake2b(data.reshape(-1).view(torch.uint8).numpy().data, digest_size=32).digest()
    return digest, tuple(data.shape), str(data.dtype)


def copy_frames(frames: FrameTokens) -> FrameTokens:
    """Compact, detached copies of the frame tokens (the CLS of `pool_frames` is a view of all the tower's tokens)."""
    return FrameTokens(
        cls=frames.cls.detach().clone(memory_format=torch.contiguous_format),
        patches=frames.patches.detach().clone(memory_format=torch.contiguous_format),
    )


def frames_bytes(frames: FrameTokens) -> int:
    return frames.cls.nbytes + frames.patches.nbytes


class FrameTokenCache:
    """Frame tokens by video pixels, at most `budget_mb` megabytes of them; counts its hits and misses."""

    def __init__(self, budget_mb: float) -> None:
        if budget_mb < 0:
            raise ValueError(f"a cache budget must be at least 0 MB, got {budget_mb}")
        self.budget_bytes = int(budget_mb * MB)
        self.held_bytes = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[PixelsKey, FrameTokens] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, pixels: Tensor, encode: Callable[[Tensor], FrameTokens]) -> FrameTokens:
        """A copy of the frame tokens kept for these pixels, or `encode(pixels)` (kept when it fits). An error from
        `encode` propagates and nothing is kept."""
        key = pixels_key(pixels)
        kept = self._entries.get(key)
        if kept is not None:
            self.hits += 1
            self._entries.move_to_end(key)
            return copy_frames(kept)
        self.misses += 1
        frames = encode(pixels)
        self._keep(key, frames)
        return frames

    def _keep(self, key: PixelsKey, frames: FrameTokens) -> None:
        """Keep a copy of `frames`, dropping the least recently used entries to make room, unless it is larger
        than the whole budget."""
        size = frames_bytes(frames)
        if size > self.budget_bytes:
            return
        while self.held_bytes + size > self.budget_bytes:
            _, oldest = self._entries.popitem(last=False)
            self.held_bytes -= frames_bytes(oldest)
        self._entries[key] = copy_frames(frames)
        self.held_bytes += size
