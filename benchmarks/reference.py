"""A hand-written, idiomatic PyTorch VAE: the reference pyrovae's speed is measured against.

The same maths and architecture as pyrovae's MLP VAE (784-400-50 ReLU by default, Bernoulli logits,
q = N(mu, exp(log sigma^2 / 2)), prior N(0, I)), written the way a researcher would write it by
hand: no Pyro, no distributions objects in the hot path, one foreach (CPU) or fused (CUDA) Adam,
no host sync. Estimators: ELBO, IWAE and DReG (Tucker et al. 2019, single latent site), each
returning the negated bound of the batch scaled by N / B, with the estimator's gradient.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LOG_2PI = math.log(2 * math.pi)


ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


class ReferenceVAE(nn.Module):
    """``hidden`` layer sizes on the encoder side, mirrored by the decoder (784-400-50 ReLU by
    default; ``hidden=(200, 200), activation="tanh"`` is Burda et al.'s 1-layer network)."""

    def __init__(self, x_dim: int = 784, hidden=(400,), z_dim: int = 50, activation: str = "relu") -> None:
        super().__init__()
        act = ACTIVATIONS[activation]
        sizes = [x_dim, *hidden]
        pairs = zip(sizes[:-1], sizes[1:], strict=True)
        self.enc = nn.Sequential(*[m for a, b in pairs for m in (nn.Linear(a, b), act())])
        self.enc_loc = nn.Linear(sizes[-1], z_dim)
        self.enc_log_var = nn.Linear(sizes[-1], z_dim)
        back = [z_dim, *reversed(hidden)]
        layers = [m for a, b in zip(back[:-1], back[1:], strict=True) for m in (nn.Linear(a, b), act())]
        self.dec = nn.Sequential(*layers, nn.Linear(back[-1], x_dim))

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.enc(x)
        return self.enc_loc(h), torch.exp(0.5 * self.enc_log_var(h))

    def log_terms(self, x: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """log p(x | z) and log p(z), ``[K, B]``, and the loc, std ``[B, Z]`` and z ``[K, B, Z]``."""
        loc, std = self.encode(x)  # [B, Z]
        z = loc + std * torch.randn((k, *loc.shape), device=x.device, dtype=x.dtype)  # [K, B, Z]
        logits = self.dec(z)  # [K, B, D]
        log_lik = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)
        log_prior = -0.5 * (z * z).sum(-1) - 0.5 * z.shape[-1] * LOG_2PI
        return log_lik, log_prior, loc, std, z

    @staticmethod
    def log_q(z: Tensor, loc: Tensor, std: Tensor) -> Tensor:
        return (-0.5 * ((z - loc) / std) ** 2 - std.log()).sum(-1) - 0.5 * z.shape[-1] * LOG_2PI


def loss(model: ReferenceVAE, x: Tensor, k: int, n: int, estimator: str) -> Tensor:
    """The negated bound of the batch times N / B, carrying the estimator's gradient."""
    log_lik, log_prior, loc, std, z = model.log_terms(x, k)
    scale = n / x.shape[0]
    if estimator == "dreg":
        lw = log_lik + log_prior - model.log_q(z, loc.detach(), std.detach())  # path derivative only
        w = torch.softmax(lw.detach(), 0)
        if z.requires_grad:
            z.register_hook(lambda g: g * w.unsqueeze(-1))  # one latent site: w~^2 for phi
        bound = torch.logsumexp(lw.detach(), 0) - math.log(k)
        surrogate = (w * lw).sum(0)
        return -scale * (bound.sum() + (surrogate - surrogate.detach()).sum())
    lw = log_lik + log_prior - model.log_q(z, loc, std)  # [K, B]
    bound = lw.mean(0) if estimator == "elbo" else torch.logsumexp(lw, 0) - math.log(k)
    return -scale * bound.sum()


def make_step(model: ReferenceVAE, optimizer: torch.optim.Optimizer, k: int, n: int, estimator: str):
    def step(x: Tensor) -> Tensor:
        optimizer.zero_grad(set_to_none=True)
        value = loss(model, x, k, n, estimator)
        value.backward()
        optimizer.step()
        return value.detach()

    return step


@torch.no_grad()
def log_likelihood(model: ReferenceVAE, x: Tensor, num_samples: int, chunk: int) -> Tensor:
    """IS log p(x) per point with a running logsumexp over chunks of particles."""
    running = None
    done = 0
    while done < num_samples:
        k = min(chunk, num_samples - done)
        log_lik, log_prior, loc, std, z = model.log_terms(x, k)
        lse = torch.logsumexp(log_lik + log_prior - model.log_q(z, loc, std), 0)
        running = lse if running is None else torch.logaddexp(running, lse)
        done += k
    return running - math.log(num_samples)
