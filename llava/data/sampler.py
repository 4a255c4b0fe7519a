"""Modality-grouped sampling: each global batch (all processes together) holds rows of one modality.

With accelerate, the DataLoader cuts the sampler's index stream into per-device batches of `batch_size`, and
process r takes the r-th of every `world_size` consecutive batches; so a global batch is one window of
`batch_size * world_size` consecutive indices. The sampler fills each such window from one modality.

    >>> sampler = ModalityGroupedSampler(dataset.modalities, batch_size=8, world_size=4, seed=0)
    >>> sampler.set_epoch(1)          # a new deterministic order
    >>> loader = DataLoader(dataset, batch_size=8, sampler=sampler, collate_fn=DataCollator(tokenizer))

Nothing is dropped (the release silently dropped the last partial group of each modality). The leftovers of
each modality (fewer than `batch_size * world_size` rows each) come at the end of the epoch, one modality after
the other. A flat index stream cannot keep them all whole and aligned, so the last few global batches of an
epoch (at most one fewer than the number of modalities with leftovers) may mix two modalities; every other
global batch is single-modality, and all of them are when each modality's count is a multiple of the group size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class ModalityGroupedSampler(Sampler[int]):
    """Yield every row index once per epoch, grouped so that global batches are single-modality.

    modalities: one label per row ("video" / "image" / "text"), e.g. `SupervisedDataset.modalities`.
    batch_size: per-device batch size; world_size: number of processes; seed: with the epoch, fixes the order.
    """

    def __init__(self, modalities: Sequence[str], batch_size: int, world_size: int = 1, seed: int = 0) -> None:
        if batch_size < 1 or world_size < 1:
            raise ValueError(f"batch_size and world_size must be >= 1 (got {batch_size}, {world_size})")
        self.modalities = list(modalities)
        self.batch_size = batch_size
        self.world_size = world_size
        self.seed = seed
        self.epoch = 0

    @property
    def group_size(self) -> int:
        """Indices per global batch: batch_size * world_size."""
        return self.batch_size * self.world_size

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order the next `__iter__` yields (call before each epoch)."""
        self.epoch = epoch

    def groups(self, epoch: int | None = None) -> list[list[int]]:
        """The epoch's groups in yield order: full groups (shuffled order), then each modality's leftover.

        Each group holds indices of one modality; full groups hold exactly `group_size` indices.
        """
        epoch = self.epoch if epoch is None else epoch
        generator = torch.Generator().manual_seed(self.seed + epoch)
        full: list[list[int]] = []
        leftovers: list[list[int]] = []
        for modality in sorted(set(self.modalities)):
            members = [i for i, m in enumerate(self.modalities) if m == modality]
            order = torch.randperm(len(members), generator=generator).tolist()
            shuffled = [members[i] for i in order]
            for start in range(0, len(shuffled), self.group_size):
                chunk = shuffled[start : start + self.group_size]
                (full if len(chunk) == self.group_size else leftovers).append(chunk)
        full = [full[i] for i in torch.randperm(len(full), generator=generator).tolist()]
        leftovers = [leftovers[i] for i in torch.randperm(len(leftovers), generator=generator).tolist()]
        return full + leftovers

    def __iter__(self) -> Iterator[int]:
        for group in self.groups():
            yield from group

    def __len__(self) -> int:
        return len(self.modalities)
