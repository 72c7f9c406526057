"""A hand-written AIS with HMC transitions for the reference VAE: what pyrovae's AIS is timed against.

The same algorithm as ``pyrovae.evaluation.ais`` written directly on tensors, the way a researcher
would write it for one model: chains start from the encoder's Gaussian, the geometric path to
p(x, z) along the given betas, ``leapfrogs`` leapfrog steps a transition with the gradient of
log p by autograd and that of log q in closed form, a Metropolis correction, and one step size per
data point adapted toward ``target`` acceptance (x1.02 / x0.98, within [1e-4, 1]).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from reference import LOG_2PI, ReferenceVAE
from torch import Tensor


@torch.no_grad()
def ais(model: ReferenceVAE, x: Tensor, betas: list[float], num_chains: int, leapfrogs: int,
        step_size: float = 0.05, target: float = 0.65) -> Tensor:  # fmt: skip
    """log p(x) per point ``[B]`` by AIS from q(z | x) with C chains."""
    loc, std = model.encode(x)  # [B, Z]
    var = std * std
    z_dim = loc.shape[-1]
    const = -0.5 * z_dim * LOG_2PI - std.log().sum(-1)  # [B]

    def log_q(z: Tensor) -> Tensor:
        return -0.5 * (((z - loc) / std) ** 2).sum(-1) + const

    def log_p(z: Tensor) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            logits = model.dec(z)  # [C, B, D]
            lp = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)
            lp = lp - 0.5 * (z * z).sum(-1) - 0.5 * z_dim * LOG_2PI
            return lp.detach(), torch.autograd.grad(lp.sum(), z)[0]

    z = loc + std * torch.randn(num_chains, *loc.shape, dtype=x.dtype)  # [C, B, Z]
    lp, gp = log_p(z)
    lq, gq = log_q(z), -(z - loc) / var
    eps = torch.full((x.shape[0],), step_size, dtype=x.dtype)
    log_w = torch.zeros(num_chains, x.shape[0], dtype=x.dtype)
    for t in range(1, len(betas)):
        log_w += (betas[t] - betas[t - 1]) * (lp - lq)
        if t == len(betas) - 1:
            break
        b = betas[t]
        e = eps.view(1, -1, 1)
        p0 = torch.randn_like(z)
        p = p0 + 0.5 * e * ((1 - b) * gq + b * gp)
        zn = z
        for step in range(leapfrogs):
            zn = zn + e * p
            lpn, gpn = log_p(zn)
            gqn = -(zn - loc) / var
            p = p + (0.5 * e if step == leapfrogs - 1 else e) * ((1 - b) * gqn + b * gpn)
        lqn = log_q(zn)
        log_a = ((1 - b) * lqn + b * lpn) - ((1 - b) * lq + b * lp) - 0.5 * (p * p).sum(-1) + 0.5 * (p0 * p0).sum(-1)
        log_a = torch.nan_to_num(log_a, nan=-math.inf)
        accept = torch.rand_like(log_a).log() < log_a  # [C, B]
        keep = accept.unsqueeze(-1)
        z, gp, gq = torch.where(keep, zn, z), torch.where(keep, gpn, gp), torch.where(keep, gqn, gq)
        lp, lq = torch.where(accept, lpn, lp), torch.where(accept, lqn, lq)
        rate = log_a.clamp(max=0).exp().mean(0)
        eps = torch.where(rate > target, eps * 1.02, eps * 0.98).clamp(1e-4, 1.0)
    return log_w.logsumexp(0) - math.log(num_chains)
