"""SUMO: an unbiased estimate of log p(x) by Russian roulette over IWAE's increments."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError
from .base import Estimator, register
from .weights import LogWeights

SUMO_GUIDES = ("variance", "sumo")


def tail(k: Tensor, cutoff: int, decay: float) -> Tensor:
    """P(Kc >= k) for k >= 1: 1 / k up to ``cutoff``, then (1 / cutoff) decay^(k - cutoff)."""
    k = k.double()
    return torch.where(k <= cutoff, 1.0 / k, decay ** (k - cutoff) / cutoff)


def expected_count(cutoff: int, decay: float) -> float:
    """E[Kc] = sum_{k >= 1} P(Kc >= k) = H_cutoff + decay / (cutoff (1 - decay))."""
    return sum(1.0 / k for k in range(1, cutoff + 1)) + decay / (cutoff * (1.0 - decay))


def draw_count(cutoff: int, decay: float, generator: torch.Generator | None = None) -> int:
    """Kc >= 1 with P(Kc >= k) = :func:`tail`: the largest k with P(Kc >= k) >= U, U uniform."""
    u = torch.rand((), dtype=torch.float64, generator=generator).clamp_min(1e-300).item()
    if u >= 1.0 / cutoff:
        return int(1.0 / u)
    return cutoff + int(math.log(u * cutoff) / math.log(decay))


def count_generator() -> torch.Generator:
    """A generator for the count that leaves torch's random streams where they are (so a seed gives
    the same particles and data points as any other estimator's), seeded by a hash of their state
    (the CPU's, and the current CUDA device's once CUDA is in use): the same under a seed, fresh
    after every draw of particles."""
    state = torch.get_rng_state().numpy().tobytes()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state += torch.cuda.get_rng_state().numpy().tobytes()
    digest = hashlib.sha256(state).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


def sumo_terms(lw: Tensor, m: int, cutoff: int, decay: float) -> Tensor:
    """SUMO per data point, ``[B]``, from ``lw [m + Kc, B]`` (nested: the first k draws make IWAE(k)):
    IWAE(m) + sum_{k=m}^{m+Kc-1} (IWAE(k + 1) - IWAE(k)) / P(Kc >= k - m + 1)."""
    n = lw.shape[0]
    counts = torch.arange(1, n + 1, device=lw.device, dtype=lw.dtype)[:, None]
    iwae = lw.logcumsumexp(0) - counts.log()  # [n, B]: IWAE(k) on the first k draws
    deltas = iwae[m:] - iwae[m - 1 : -1]  # [Kc, B]: IWAE(k + 1) - IWAE(k), k = m..m+Kc-1
    weights = tail(torch.arange(1, n - m + 1, device=lw.device), cutoff, decay).to(lw)[:, None]
    return iwae[m - 1] + (deltas / weights).sum(0)


@register("sumo")
class SUMO(Estimator):
    """SUMO (Luo et al. 2020): an unbiased estimate of log p(x), not a bound.

    With nested draws z_1, z_2, ... of q and Delta_k = IWAE(k + 1) - IWAE(k) on the first k + 1
    of them, SUMO = IWAE(m) + sum_{k=m}^{m+Kc-1} Delta_k / P(Kc >= k - m + 1), m = ``num_particles``
    and Kc >= 1 a random count drawn for each call (Russian roulette; from a generator of its own,
    :func:`count_generator`, so that the particles and data points of a seed are everyone's). E[SUMO] = log p(x) because
    IWAE(k) -> log p(x) and the series converges absolutely.

    The count's tail, as in the paper: P(Kc >= k) = 1 / k up to ``cutoff`` (80), then
    (1 / cutoff) ``decay``^(k - cutoff) (decay 0.9), so the expected cost is finite:
    m + E[Kc] draws, E[Kc] = H_cutoff + decay / (cutoff (1 - decay)) = 5.08 for the defaults
    (:attr:`expected_draws`). A heavier tail lowers the variance and raises the cost.

    Gradients: the model's parameters ascend SUMO (unbiased for grad log p(x)). The guide, whose
    parameters leave E[SUMO] unchanged, descends its second moment (``guide="variance"``, the
    paper's choice: minimizes the estimator's variance); ``guide="sumo"`` gives it SUMO's own
    reparameterized gradient instead (zero in expectation). Reported as "SUMO estimate".

    References: Luo, Beatson, Norouzi, Zhu, Duvenaud, Adams & Chen 2020, "SUMO: Unbiased Estimation
    of Log Marginal Probability for Latent Variable Models".
    """

    def __init__(
        self, num_particles: int = 1, cutoff: int = 80, decay: float = 0.9, guide: str = "variance", **kwargs: Any
    ) -> None:
        super().__init__(num_particles=num_particles, **kwargs)
        if isinstance(cutoff, bool) or not isinstance(cutoff, int) or cutoff < 1:
            raise ConfigError(f"sumo: cutoff must be an integer >= 1, got {cutoff!r}")
        if not 0.0 < float(decay) < 1.0:
            raise ConfigError(f"sumo: decay (the tail's rate beyond cutoff) must lie in (0, 1), got {decay!r}")
        if guide not in SUMO_GUIDES:
            raise ConfigError(f"sumo: unknown guide objective {guide!r}; valid: {', '.join(SUMO_GUIDES)}")
        self.cutoff, self.decay, self.guide = cutoff, float(decay), guide

    def __repr__(self) -> str:
        options = f"cutoff={self.cutoff}, decay={self.decay:g}, guide={self.guide!r}"
        return f"SUMO(num_particles={self.num_particles}, {options})"

    @property
    def reports_bound(self) -> bool:
        return False  # unbiased for log p(x): above it about half the time

    @property
    def what(self) -> str:
        return "SUMO estimate"

    @property
    def unbiased_gradient(self) -> bool:
        return self.guide == "sumo" and super().unbiased_gradient  # the variance objective is another one

    @property
    def expected_draws(self) -> float:
        """Particles per data point on average: m + E[Kc]."""
        return self.num_particles + expected_count(self.cutoff, self.decay)

    def log_weights(self, model: Callable, guide: Callable, args: tuple, kwargs: dict, **options: Any) -> LogWeights:
        count = draw_count(self.cutoff, self.decay, count_generator())
        options.pop("num_particles", None)
        return super().log_weights(model, guide, args, kwargs, num_particles=self.num_particles + count, **options)

    def point_bound(self, w: LogWeights, kl_weight: float = 1.0) -> Tensor:
        return sumo_terms(w.log_w(kl_weight), self.num_particles, self.cutoff, self.decay)

    def point_surrogate(self, w: LogWeights, kl_weight: float) -> Tensor | None:
        if self.guide == "sumo":
            return None
        sumo = self.point_bound(w, kl_weight)
        lik, prior = w.model_at_detached()  # theta only: p at stopped particles, q stopped
        lw_theta = lik + kl_weight * (prior - w.log_q.detach())
        sumo_theta = sumo_terms(lw_theta, self.num_particles, self.cutoff, self.decay)
        # theta: grad SUMO; phi: -grad SUMO^2 / 2 (the variance objective)
        return sumo_theta - sumo.detach() * (sumo - sumo_theta)
