"""Gaussian likelihood with a fixed, learned or decoder-predicted scale."""

from __future__ import annotations

import pyro.distributions as dist

from .base import register
from .location_scale import LocationScaleLikelihood


@register("gaussian")
class GaussianLikelihood(LocationScaleLikelihood):
    """x_d ~ N(m_d, s_d^2) with decoder mean m.

    log p(x | m) = -||x - m||^2 / (2 s^2) - (D/2) log(2 pi s^2) for a fixed scalar s: the
    squared-error reconstruction term of the classic VAE, exactly.
    Options: ``scale`` (a positive number, default 1, or "global", "per_dim", "decoder"),
    ``init_scale``, ``min_scale`` (see :class:`~pyrovae.likelihoods.scale.Scale`).
    """

    family = dist.Normal
    data_kind = "unit"
