"""One adapter over ArviZ's PSIS: arviz 0.x (``az.psislw``) and arviz 1.x (``arviz_stats``)."""

from __future__ import annotations

import warnings

import numpy as np

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="ArviZ is undergoing a major refactor")
    import arviz as az
try:  # arviz >= 1 moved PSIS to arviz_stats, which arviz 0.x does not have
    from arviz_stats.base import array_stats
except ImportError:
    array_stats = None


def psislw(log_weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pareto-smoothed, normalized log weights and k-hat per row; the last axis is the samples.

    arviz >= 1 moved PSIS to ``arviz_stats``, whose array function takes log-likelihood-like
    values (the negated log weights) and returns the smoothed log weights; arviz 0.x's
    ``psislw`` takes the log weights themselves. Both give the same k-hat.
    """
    lw = np.asarray(log_weights, dtype=np.float64)
    if array_stats is None:
        smoothed, khat = az.psislw(lw, reff=1.0)
    else:
        smoothed, khat = array_stats.psislw(-lw, r_eff=1.0, axis=-1)
    return np.asarray(smoothed), np.asarray(khat)
