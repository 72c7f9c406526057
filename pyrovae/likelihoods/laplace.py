"""Laplace likelihood with a fixed, learned or decoder-predicted scale."""

from __future__ import annotations

import pyro.distributions as dist

from .base import register
from .location_scale import LocationScaleLikelihood


@register("laplace")
class LaplaceLikelihood(LocationScaleLikelihood):
    """x_d ~ Laplace(m_d, b_d): an L1 reconstruction term, robust to outlying pixels.

    log p(x | m) = -|x - m| / b - log(2 b), summed over dimensions.
    Options as for ``gaussian``: ``scale``, ``init_scale``, ``min_scale``.
    """

    family = dist.Laplace
    data_kind = "unit"
