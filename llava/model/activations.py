"""Activation functions by config name, shared by the towers, the bridge and the projector.

    act = activation(config.hidden_act, "bridge hidden_act")      # a function Tensor -> Tensor
    mlp = nn.Sequential(nn.Linear(d, h), Activation(config.hidden_act, "projector_hidden_act"))

An unknown name is a ConfigError that lists the valid ones.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llava.errors import ConfigError


def quick_gelu(x: Tensor) -> Tensor:
    """The OpenAI CLIP activation x * sigmoid(1.702 x)."""
    return x * torch.sigmoid(1.702 * x)


ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "quick_gelu": quick_gelu,
    "gelu": F.gelu,
    "relu": F.relu,
}


def activation(name: str, field: str = "hidden_act") -> Callable[[Tensor], Tensor]:
    """The function a config names; `field` names the config field in the error (e.g. "bridge hidden_act")."""
    if name not in ACTIVATIONS:
        raise ConfigError(f"unknown {field} {name!r}; valid: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class Activation(nn.Module):
    """A named activation as a module without parameters (for `nn.Sequential` blocks)."""

    def __init__(self, name: str, field: str = "hidden_act") -> None:
        super().__init__()
        self.name = name
        self.fn = activation(name, field)

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return self.name
