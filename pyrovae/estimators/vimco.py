"""VIMCO: the IWAE bound with leave-one-out baselines for its score-function terms."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError
from .base import Estimator, register
from .weights import LogWeights, logmeanexp


def leave_one_out_bounds(lw: Tensor) -> Tensor:
    """L_{-k} = log (1/K) [sum_{j != k} exp(lw_j) + exp(mean_{j != k} lw_j)] per particle, ``[K, B]``.

    Particle k is replaced by the geometric mean of the others. The sum over j != k comes from
    prefix and suffix log-cumulative-sums, never from subtracting exp(lw_k) out of the full sum,
    which would cancel catastrophically when particle k dominates. No gradient (a baseline).
    """
    lw = lw.detach()
    k = lw.shape[0]
    if k < 2:
        raise ConfigError(f"leave-one-out baselines need at least 2 particles, got {k}")
    zero = torch.zeros_like(lw[:1])  # [1, B]
    # sum_{j != k} lw_j from prefix and suffix sums, never sum - lw_k: a particle with lw = -inf
    # (weight 0) would make that -inf - (-inf) = nan
    before = torch.cat([zero, lw[:-1]]).cumsum(0)  # [K, B]: sum_{j < k} lw_j
    after = torch.cat([lw[1:], zero]).flip(0).cumsum(0).flip(0)  # [K, B]: sum_{j > k} lw_j
    mean_others = (before + after) / (k - 1)  # [K, B]
    pad = torch.full_like(lw[:1], -math.inf)  # [1, B]
    prefix = torch.cat([pad, lw[:-1]]).logcumsumexp(0)  # [K, B]: log sum_{j < k} exp(lw_j)
    suffix = torch.cat([lw[1:], pad]).flip(0).logcumsumexp(0).flip(0)  # [K, B]: log sum_{j > k}
    others = torch.logaddexp(prefix, suffix)  # [K, B]: log sum_{j != k} exp(lw_j)
    return torch.logaddexp(others, mean_others) - math.log(k)


@register("vimco")
class VIMCO(Estimator):
    """IWAE(K) = log (1/K) sum_k exp(lw_k) per data point, with VIMCO's score-function gradient.

    The value and the reparameterized gradient are IWAE's. A guide site that cannot be
    reparameterized adds, per data point, the score-function term with a leave-one-out baseline
    for each particle:

        S = L + sum_k stop(L - L_{-k}) log q(z_k | x),
        L_{-k} = log (1/K) [sum_{j != k} exp(lw_j) + exp(mean_{j != k} lw_j)]

    (log q over the non-reparameterized sites only). L_{-k} does not depend on z_k, so the baseline
    leaves the gradient unbiased, and the learning signal L - L_{-k} is particle k's own share of
    the bound, far smaller than IWAE's stop(L), which every particle shares. Needs K >= 2.

    References: Mnih & Rezende 2016, "Variational Inference for Monte Carlo Objectives".
    """

    supports_score_function = True

    def __init__(self, num_particles: int = 2, **kwargs: Any) -> None:
        if not isinstance(num_particles, int) or isinstance(num_particles, bool) or num_particles < 2:
            raise ConfigError(
                f"vimco's num_particles must be an integer >= 2 (each particle's baseline comes from "
                f"the others), got {num_particles!r}"
            )
        super().__init__(num_particles=num_particles, **kwargs)

    @property
    def estimates(self) -> str:
        return "iwae"

    def point_bound(self, w: LogWeights, kl_weight: float = 1.0) -> Tensor:
        return logmeanexp(w.log_w(kl_weight), dim=0)

    def point_surrogate(self, w: LogWeights, kl_weight: float) -> Tensor | None:
        if w.log_q_score is None:
            return None
        lw = w.log_w(kl_weight)  # [K, B]
        bound = logmeanexp(lw, dim=0)  # [B]
        signal = bound.detach() - leave_one_out_bounds(lw)  # [K, B]
        return bound + (signal * w.log_q_score).sum(0)
