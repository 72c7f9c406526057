"""The shared shape of a location-scale likelihood: the decoder gives the location, and the
scale is fixed, learned or predicted (:class:`~pyrovae.likelihoods.scale.Scale`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import pyro.distributions as dist
from torch import Tensor

from .base import Likelihood
from .scale import Scale


class LocationScaleLikelihood(Likelihood):
    """x_d ~ family(m_d, s_d): decoder output m, scale s per ``Scale``. Subclasses name the
    family (a ``pyro.distributions`` class taking ``(loc, scale)``) and its defaults.

    Options: ``scale`` (a positive number, or "global", "per_dim", "decoder"), ``init_scale``,
    ``min_scale``.
    """

    family: ClassVar[Callable[..., dist.TorchDistribution]]  # a distribution class taking (loc, scale)
    default_scale: ClassVar[float | str] = 1.0
    default_init_scale: ClassVar[float] = 1.0

    def __init__(
        self, x_dim: int, scale: float | str | None = None, init_scale: float | None = None, min_scale: float = 1e-3
    ) -> None:
        super().__init__(x_dim)
        scale = self.default_scale if scale is None else scale
        init_scale = self.default_init_scale if init_scale is None else init_scale
        self.scale = Scale(x_dim, scale, init_scale, min_scale)
        self.num_params = 2 if self.scale.predicted else 1

    def loc_scale(self, params: Tensor) -> tuple[Tensor, Tensor]:
        blocks = self.split(params)
        loc = blocks[0]
        return loc, self.scale(blocks[1] if self.scale.predicted else None).expand_as(loc)

    def forward(self, params: Tensor) -> dist.TorchDistribution:
        return self.family(*self.loc_scale(params), validate_args=False).to_event(1)

    def support_error(self, x: Tensor) -> str | None:
        return None  # every finite real is in the support
