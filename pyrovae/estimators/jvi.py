"""Jackknife variational inference: IWAE with its leading bias terms removed."""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError
from .base import Estimator, register
from .weights import LogWeights

JVI_GRADIENTS = ("reparam", "dreg")
MAX_SUBSETS = 100_000  # leave-j-out sets enumerated per draw (K = 64, order 2: 2,016)


def jackknife_coefficients(k: int, order: int) -> list[float]:
    """c_j = (-1)^j (K - j)^m / (j! (m - j)!), j = 0..m: they sum to 1 and cancel IWAE's bias
    terms up to O(K^-m) (Nowozin 2018, eq. 12 with the generalized jackknife of Schucany et al.)."""
    return [(-1) ** j * (k - j) ** order / (math.factorial(j) * math.factorial(order - j)) for j in range(order + 1)]


@functools.lru_cache(maxsize=64)
def left_out(k: int, j: int, device: torch.device) -> Tensor:
    """``[C(K, j), K]`` boolean: each row marks the j particles one leave-j-out subset drops (built
    once per K, j and device, then read only)."""
    mask = torch.zeros(math.comb(k, j), k, dtype=torch.bool, device=device)
    for row, drop in enumerate(itertools.combinations(range(k), j)):
        mask[row, list(drop)] = True
    return mask


@register("jvi")
class JVI(Estimator):
    """The jackknife estimate of log p(x) of order m (Nowozin 2018). NOT a bound.

    JVI_m = sum_{j=0..m} c_j * mean over the subsets S of K - j particles of IWAE(S), with
    c_j = (-1)^j (K - j)^m / (j! (m - j)!). IWAE(K)'s bias is O(1/K); order m removes the terms up
    to O(1/K^m). Order 1: JVI_1 = K IWAE(K) - (K - 1) mean_i IWAE_{-i}. It can exceed log p(x),
    so ``loss`` is the negated JVI estimate (``reports_bound`` is False) and reports say
    "JVI estimate". At the exact posterior every IWAE(S) is log p(x), so JVI is exact.

    Gradients: ``gradient="reparam"`` differentiates the formula through the reparameterized
    particles; ``gradient="dreg"`` replaces each IWAE(S) term's gradient by its doubly
    reparameterized one (theta: sum_{k in S} w~^S_k grad log p(x, z_k); phi:
    sum_{k in S} (w~^S_k)^2 path derivative of lw'_k), combined with the same coefficients. Both
    are unbiased for the gradient of E[JVI]. ``order`` 0 is IWAE(K). The subsets are enumerated
    (K(K-1)/2 for order 2): K must leave at least one particle per subset (K > order).

    References: Nowozin 2018, "Debiasing Evidence Approximations: On Importance-weighted
    Autoencoders and Jackknife Variational Inference" (google-research dreg_estimators has the
    DReG form).
    """

    def __init__(self, num_particles: int = 2, order: int = 1, gradient: str = "reparam", **kwargs: Any) -> None:
        super().__init__(num_particles=num_particles, **kwargs)
        if isinstance(order, bool) or not isinstance(order, int) or order < 0:
            raise ConfigError(f"jvi: order must be an integer >= 0 (1 or 2 in the paper), got {order!r}")
        if num_particles <= order:
            raise ConfigError(f"jvi of order {order} needs num_particles > {order}, got {num_particles}")
        n_sets = sum(math.comb(num_particles, j) for j in range(order + 1))
        if n_sets > MAX_SUBSETS:
            raise ConfigError(f"jvi: order {order} with K = {num_particles} enumerates {n_sets:,} subsets per "
                              f"draw (at most {MAX_SUBSETS:,}); lower the order or K")  # fmt: skip
        if gradient not in JVI_GRADIENTS:
            raise ConfigError(f"jvi: unknown gradient {gradient!r}; valid: {', '.join(JVI_GRADIENTS)}")
        self.order, self.gradient = order, gradient

    def __repr__(self) -> str:
        return f"JVI(num_particles={self.num_particles}, order={self.order}, gradient={self.gradient!r})"

    @property
    def reports_bound(self) -> bool:
        return False  # an estimate of log p(x), above it as often as its bias allows

    @property
    def what(self) -> str:
        """How reports name the value: an estimate, not a bound."""
        return "JVI estimate"

    def point_bound(self, w: LogWeights, kl_weight: float = 1.0) -> Tensor:
        lw = w.log_w(kl_weight)  # [K, B]
        total = lw.new_zeros(lw.shape[1:])
        for j, (c, mask) in enumerate(self._terms(lw)):
            subset = lw.masked_fill(mask[:, :, None], -math.inf)  # [C, K, B]
            total = total + c * (subset.logsumexp(1) - math.log(lw.shape[0] - j)).mean(0)
        return total

    def point_surrogate(self, w: LogWeights, kl_weight: float) -> Tensor | None:
        if self.gradient == "reparam":
            return None
        lw = w.log_w(kl_weight).detach()
        a, v = lw.new_zeros(lw.shape), lw.new_zeros(lw.shape)  # [K, B]: sum_j c_j mean_S w~^S, (w~^S)^2
        for c, mask in self._terms(lw):
            wt = lw.masked_fill(mask[:, :, None], -math.inf).softmax(1)  # [C, K, B], zero where left out
            a, v = a + c * wt.mean(0), v + c * (wt * wt).mean(0)
        log_p_lik, log_p_prior = w.model_at_detached()  # theta only
        log_p = w.log_lik + kl_weight * w.log_prior
        log_p_det = log_p_lik + kl_weight * log_p_prior
        path = log_p - kl_weight * w.log_q_stop() - log_p_det  # phi's path derivative of lw', no theta
        v = (1.0 - kl_weight) * a + kl_weight * v  # each subset's w~ - beta w~ (1 - w~), as DReG's
        return (a * log_p_det).sum(0) + (v * path).sum(0)

    def _terms(self, lw: Tensor) -> list[tuple[float, Tensor]]:
        k = lw.shape[0]
        coef = jackknife_coefficients(k, self.order)
        return [(coef[j], left_out(k, j, lw.device)) for j in range(self.order + 1)]
