"""How far the guide is from the posterior, seen through the importance weights."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError
from ..estimators.draw import draw
from .arviz_compat import psislw

MIN_PSIS_SAMPLES = 100
EQUAL_RELATIVE, EQUAL_ULPS = 1e-9, 1024  # log weights this close are equal weights (see pareto_khat)


def importance_ess(log_w: Tensor) -> Tensor:
    """Importance ESS per data point as a fraction of K: (sum w)^2 / sum w^2 / K.

    ``log_w`` is ``[K, B]``; all-equal weights (the exact posterior) give 1.
    References: Kong 1992; Yao et al. 2018, "Yes, but Did It Work?: Evaluating Variational
    Inference".
    """
    k = log_w.shape[0]
    return (2 * torch.logsumexp(log_w, 0) - torch.logsumexp(2 * log_w, 0) - math.log(k)).exp()


def pareto_khat(log_w: Tensor | np.ndarray) -> np.ndarray:
    """PSIS k-hat per data point from log weights ``[K, B]`` (K >= 100): the shape of a
    generalized Pareto fitted to the largest weights. k-hat > 0.7: the IS estimate is unreliable.

    All-equal weights (the guide is the exact posterior) have no tail to fit: they get the
    perfect score -inf instead of going to the fit. "Equal" allows for rounding: a spread of log
    weights up to 1e-9 of the largest, or ``EQUAL_ULPS`` units in the last place of the dtype the
    weights were computed in where that is more (float32 weights at the exact posterior differ by
    a few ulps, and a Pareto fit to that noise returns an arbitrary shape).
    References: Vehtari et al. 2024, "Pareto Smoothed Importance Sampling"; Yao et al. 2018.
    """
    eps = torch.finfo(log_w.dtype).eps if isinstance(log_w, Tensor) else np.finfo(np.asarray(log_w).dtype).eps
    lw = np.asarray(log_w.detach().cpu().double() if isinstance(log_w, Tensor) else log_w, dtype=np.float64).T
    if lw.shape[-1] < MIN_PSIS_SAMPLES:
        raise ConfigError(f"PSIS k-hat needs K >= {MIN_PSIS_SAMPLES} samples a point, got {lw.shape[-1]}")
    khat = np.full(lw.shape[0], -np.inf)
    spread = lw.max(-1) - lw.min(-1)
    fit = spread > max(EQUAL_RELATIVE, EQUAL_ULPS * eps) * np.maximum(1.0, np.abs(lw).max(-1))
    if fit.any():
        khat[fit] = psislw(lw[fit])[1]
    return khat


def importance_diagnostics(
    model: Callable,
    guide: Callable,
    *args: Any,
    num_samples: int = 1000,
    max_plate_nesting: int | None = None,
    **kwargs: Any,
) -> dict[str, np.ndarray]:
    """Per data point: PSIS ``khat`` and importance ``ess`` (a fraction of K) of the guide as a
    proposal for the model's posterior, from ``num_samples`` particles (>= 100). Works for any
    model/guide pair whose data points sit in a plate at dim -1."""
    with torch.no_grad():
        lw = draw(
            model,
            guide,
            args,
            kwargs,
            num_particles=num_samples,
            max_plate_nesting=max_plate_nesting,
            one_scale="importance_diagnostics",
        ).log_w()
    return {"khat": pareto_khat(lw), "ess": importance_ess(lw).cpu().numpy()}
