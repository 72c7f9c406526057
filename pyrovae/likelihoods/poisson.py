"""Poisson likelihood for 8-bit pixel counts."""

from __future__ import annotations

import pyro.distributions as dist
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from .base import Likelihood, register, value_range


@register("poisson")
class PoissonLikelihood(Likelihood):
    """x_d ~ Poisson(r_d), r = softplus(decoder output) + min_rate; data: counts 0, 1, 2, ...

    log p(x | r) = x log r - r - log x!.
    """

    data_kind = "counts"

    def __init__(self, x_dim: int, min_rate: float = 1e-4) -> None:
        super().__init__(x_dim)
        if not min_rate > 0:  # the floor that keeps log r finite where softplus underflows
            raise ConfigError(f"min_rate must be positive, got {min_rate}")
        self.min_rate = float(min_rate)

    def forward(self, params: Tensor) -> dist.TorchDistribution:
        (raw,) = self.split(params)
        rate = F.softplus(raw) + self.min_rate
        return dist.Poisson(rate, validate_args=False).to_event(1)

    def support_error(self, x: Tensor) -> str | None:
        if (x < 0).any() or (x != x.round()).any():
            return f"needs non-negative integer counts, got values in {value_range(x)}"
        return None
