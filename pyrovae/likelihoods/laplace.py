"""Laplace likelihood with a fixed, learned or decoder-predicted scale."""

from __future__ import annotations

import pyro.distributions as dist
from torch import Tensor

from .base import Likelihood, register
from .scale import Scale


@register("laplace")
class LaplaceLikelihood(Likelihood):
    """x_d ~ Laplace(m_d, b_d): an L1 reconstruction term, robust to outlying pixels.

    log p(x | m) = -|x - m| / b - log(2 b), summed over dimensions.
    Options as for ``gaussian``: ``scale``, ``init_scale``, ``min_scale``.
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
        return dist.Laplace(loc, scale.expand_as(loc), validate_args=False).to_event(1)

    def support_error(self, x: Tensor) -> str | None:
        return None
