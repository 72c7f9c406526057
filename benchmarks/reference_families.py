"""Hand-written PyTorch equivalents of two pyrovae families: the speed references of family_speed.py.

- :class:`ReferenceTwoLayer`: Burda et al.'s two stochastic layers as pyrovae's
  ``HierarchicalModel``/``HierarchicalGuide`` build them (x -hidden- z1 -[d2, d2]- z2 both ways,
  Gaussian layers sigma = exp(log sigma^2 / 2), N(0, I) on top, Bernoulli logits for x).
- :class:`ReferenceIAF`: pyrovae's 784-400-50 encoder with its last hidden layer as the context h,
  then T inverse autoregressive steps z <- m + exp(s) z with (m, s) from a conditional MADE on
  (z, h) (the same ``pyro.nn.ConditionalAutoRegressiveNN`` module as pyrovae's flow guide: a plain
  torch module; the density is written out here, no distribution objects), then pyrovae's decoder.

Both written as a researcher would by hand: no Pyro inference, no distribution objects in the hot
path, log densities as explicit sums, K particles as a leading dim. ``loss(model, x, k, n,
estimator)`` is the negated ELBO or IWAE(K) of the batch times N / B, with its gradient.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pyro.nn import ConditionalAutoRegressiveNN
from torch import Tensor, nn

LOG_2PI = math.log(2 * math.pi)
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


def mlp(sizes: list[int], act: str, last_act: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if last_act or i < len(sizes) - 2:
            layers.append(ACTIVATIONS[act]())
    return nn.Sequential(*layers)


class GaussianLayer(nn.Module):
    """h -> (mu, sigma) through ``hidden`` layers."""

    def __init__(self, in_dim: int, out_dim: int, hidden: list[int], act: str) -> None:
        super().__init__()
        self.body = mlp([in_dim, *hidden], act, last_act=True) if hidden else nn.Identity()
        width = hidden[-1] if hidden else in_dim
        self.loc, self.log_var = nn.Linear(width, out_dim), nn.Linear(width, out_dim)

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        f = self.body(h)
        return self.loc(f), torch.exp(0.5 * self.log_var(f))


def log_normal(z: Tensor, loc: Tensor | float, scale: Tensor | float) -> Tensor:
    scale = torch.as_tensor(scale, dtype=z.dtype)
    return (-0.5 * ((z - loc) / scale) ** 2 - scale.log()).sum(-1) - 0.5 * z.shape[-1] * LOG_2PI


def bernoulli_log_lik(logits: Tensor, x: Tensor) -> Tensor:
    return -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)


class ReferenceTwoLayer(nn.Module):
    def __init__(self, x_dim: int = 784, latents=(100, 50), hidden=(100, 100), activation: str = "tanh") -> None:
        super().__init__()
        d1, d2 = latents
        hidden = list(hidden)
        self.q1 = GaussianLayer(x_dim, d1, hidden, activation)
        self.q2 = GaussianLayer(d1, d2, [d2, d2], activation)
        self.p1 = GaussianLayer(d2, d1, [d2, d2], activation)
        self.dec = mlp([d1, *reversed(hidden), x_dim], activation, last_act=False)

    def log_weights(self, x: Tensor, k: int) -> Tensor:
        loc1, s1 = self.q1(x)  # [B, d1]
        z1 = loc1 + s1 * torch.randn((k, *loc1.shape), dtype=x.dtype)  # [K, B, d1]
        loc2, s2 = self.q2(z1)  # [K, B, d2]
        z2 = loc2 + s2 * torch.randn_like(loc2)
        ploc1, ps1 = self.p1(z2)
        log_p = bernoulli_log_lik(self.dec(z1), x) + log_normal(z1, ploc1, ps1) + log_normal(z2, 0.0, 1.0)
        return log_p - log_normal(z1, loc1, s1) - log_normal(z2, loc2, s2)  # [K, B]


class ReferenceIAF(nn.Module):
    def __init__(self, x_dim: int = 784, z_dim: int = 50, hidden=(400,), activation: str = "relu", flow_layers: int = 2,
                 flow_hidden=(200,)) -> None:  # fmt: skip
        super().__init__()
        hidden = list(hidden)
        self.body = mlp([x_dim, *hidden], activation, last_act=True)
        self.loc, self.log_var = nn.Linear(hidden[-1], z_dim), nn.Linear(hidden[-1], z_dim)
        order = torch.arange(z_dim)
        self.flows = nn.ModuleList(
            ConditionalAutoRegressiveNN(
                z_dim,
                hidden[-1],
                list(flow_hidden),
                param_dims=[1, 1],
                permutation=order.flip(0) if t % 2 else order,
                nonlinearity=ACTIVATIONS[activation](),
            )  # fmt: skip
            for t in range(flow_layers)
        )
        self.dec = mlp([z_dim, *reversed(hidden), x_dim], activation, last_act=False)

    def log_weights(self, x: Tensor, k: int) -> Tensor:
        h = self.body(x)  # [B, H], the context
        loc, scale = self.loc(h), torch.exp(0.5 * self.log_var(h))
        z = loc + scale * torch.randn((k, *loc.shape), dtype=x.dtype)  # [K, B, Z]
        log_q = log_normal(z, loc, scale)
        for made in self.flows:
            m, s = made(z, h)  # as Pyro's affine IAF: log scale clamped to [-5, 3]
            s = s.clamp(-5.0, 3.0)
            z = m + torch.exp(s) * z
            log_q = log_q - s.sum(-1)
        return bernoulli_log_lik(self.dec(z), x) + log_normal(z, 0.0, 1.0) - log_q  # [K, B]


def loss(model: nn.Module, x: Tensor, k: int, n: int, estimator: str) -> Tensor:
    lw = model.log_weights(x, k)
    bound = lw.mean(0) if estimator == "elbo" else torch.logsumexp(lw, 0) - math.log(k)
    return -(n / x.shape[0]) * bound.sum()
