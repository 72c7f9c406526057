"""Gaussian likelihood with a fixed, learned or decoder-predicted scale."""

from __future__ import annotations

import pyro.distributions as dist
from torch import Tensor

from .base import Likelihood, register
from .scale import Scale


@register("gaussian")
class GaussianLikelihood(Likelihood):
    """x_d ~ N(m_d, s_d^2) with decoder mean m.

    log p(x | m) = -||x - m||^2 / (2 s^2) - (D/2) log(2 pi s^2) for a fixed scalar s: the
    squared-error reconstruction term of the classic VAE, exactly.
    Options: ``scale`` (a positive number, or "global", "per_dim", "decoder"), ``init_scale``,
    ``min_scale`` (see :class:`~pyrovae.likelihoods.scale.Scale`).
    """

    data_kind = "unit"

    def __init__(
        self,
        x_dim: int,
        scale: float | str = 1.0,
        init_scale: float = 1.0,
        min_scale: float = 1e-3,
    ) -> None:
        super().__init__(x_dim)
        self.scale = Scale(x_dim, scale, init_scale, min_scale)
        self.num_params = 2 if self.scale.predicted else 1

    def forward(self, params: Tensor) -> dist.TorchDistribution:
        blocks = self.split(params)
        loc = blocks[0]
        scale = self.scale(blocks[1] if self.scale.predicted else None)
        return dist.Normal(loc, scale.expand_as(loc), validate_args=False).to_event(1)

    def support_error(self, x: Tensor) -> str | None:
        return None  # every finite real is in the support
