"""Fully connected encoder and decoder."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError

ACTIVATIONS = {"relu": nn.ReLU, "softplus": nn.Softplus, "tanh": nn.Tanh, "elu": nn.ELU}


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {name!r}; valid: {', '.join(sorted(ACTIVATIONS))}")
    return ACTIVATIONS[name]()


def mlp(sizes: Sequence[int], act: str) -> nn.Sequential:
    """Linear layers ``sizes[0] -> ... -> sizes[-1]`` with ``act`` between them (not after)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation(act))
    return nn.Sequential(*layers)


class GaussianHead(nn.Module):
    """Features -> (mu, sigma) of a diagonal Gaussian, sigma = exp(log sigma^2 / 2)."""

    def __init__(self, in_features: int, z_dim: int) -> None:
        super().__init__()
        self.loc = nn.Linear(in_features, z_dim)
        self.log_var = nn.Linear(in_features, z_dim)

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        return self.loc(h), torch.exp(0.5 * self.log_var(h))


class MLPEncoder(nn.Module):
    """x ``[B, x_dim]`` -> (mu, sigma) ``[B, z_dim]`` through hidden layers of ``hidden`` units;
    ``input_scale`` multiplies x first (1/255 for 8-bit levels)."""

    def __init__(
        self, x_dim: int, z_dim: int, hidden: Sequence[int] = (400,), act: str = "relu", input_scale: float = 1.0
    ):
        super().__init__()
        self.input_scale = float(input_scale)
        self.body = nn.Sequential(*mlp([x_dim, *hidden], act), activation(act)) if hidden else None
        self.head = GaussianHead(hidden[-1] if hidden else x_dim, z_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = x * self.input_scale if self.input_scale != 1.0 else x
        return self.head(self.body(x) if self.body is not None else x)


class MLPDecoder(nn.Module):
    """z ``[..., z_dim]`` -> likelihood parameters ``[..., out_dim]`` (any leading dims)."""

    def __init__(self, z_dim: int, out_dim: int, hidden: Sequence[int] = (400,), act: str = "relu"):
        super().__init__()
        self.net = mlp([z_dim, *reversed(hidden), out_dim], act)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)
