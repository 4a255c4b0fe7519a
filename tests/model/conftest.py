"""Tiny models and scene videos for the model tests (the tokenizer fixture lives in tests/conftest.py)."""

import pytest
import torch

from llava.model.presets import tiny_config
from llava.model.videollamb import VideoLLaMBForCausalLM


@pytest.fixture
def tiny_model(tokenizer):
    torch.manual_seed(0)
    return VideoLLaMBForCausalLM(tiny_config(vocab_size=len(tokenizer))).eval()


def random_video(frames: int, seed: int, size: int = 32) -> torch.Tensor:
    """(T, 3, size, size) made of a few flat-coloured scenes, so SceneTilling finds cuts."""
    g = torch.Generator().manual_seed(seed)
    scenes = torch.randn(3, 3, 1, 1, generator=g).expand(3, 3, size, size)
    cut = sorted(torch.randperm(frames - 1, generator=g)[:2].add(1).tolist())
    owner = [sum(t >= c for c in cut) for t in range(frames)]
    return scenes[owner] + 0.05 * torch.randn(frames, 3, size, size, generator=g)
