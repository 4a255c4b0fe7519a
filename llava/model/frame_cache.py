"""A memory-bounded cache of a frozen video tower's per-frame output, so that a video seen again in training (by
another row or in a later epoch) skips the tower.

    >>> cache = FrameTokenCache(budget_mb=1536)
    >>> model.attach_frame_token_cache(cache)           # refused unless the video tower is frozen
    >>> frames = model.encode_video_frames(videos)      # segmented videos: from the cache, or the tower once

Entries are keyed by the video's pixels: a BLAKE2b digest of the tensor's bytes, with its shape and dtype, so two
videos share an entry only when their pixels are the same bit for bit. It is a `llava.budget_cache.BudgetCache`
(least recently used dropped first; a video larger than the whole budget is returned but not kept) whose entries
are compact copies of the frame tokens (the CLS feature (T, D) and the pooled tokens (T, tokens_per_frame, D), on
the tower's device); a hit hands out a copy, so nothing a caller does to its tensors changes what later callers get.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import torch
from torch import Tensor

from llava.budget_cache import BudgetCache
from llava.model.stream import FrameTokens

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


class FrameTokenCache(BudgetCache[PixelsKey, FrameTokens]):
    """Frame tokens by video pixels, at most `budget_mb` megabytes of them; counts its hits and misses."""

    def __init__(self, budget_mb: float) -> None:
        super().__init__(budget_mb, size_of=frames_bytes, copy_of=copy_frames)

    def tokens(self, pixels: Tensor, encode: Callable[[Tensor], FrameTokens]) -> FrameTokens:
        """A copy of the frame tokens kept for these pixels, or `encode(pixels)` (kept when it fits). An error from
        `encode` propagates and nothing is kept."""
        return self.get(pixels_key(pixels), lambda: encode(pixels))
