"""One adapter over ArviZ's PSIS: arviz 0.x (``az.psislw``) and arviz 1.x (``arviz_stats``).

arviz 0.x takes about three seconds to import (it brings xarray, pandas and its plots), and most
pyrovae processes (a grid's cells, ``pyrovae train`` without PSIS) never compute PSIS: it is
imported on its first use (:func:`lazy_module`), not at every start.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from types import ModuleType

import numpy as np


def lazy_module(name: str) -> ModuleType:
    """The module ``name``, executed at its first attribute access rather than now."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ImportError(f"No module named {name!r}")
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


if importlib.util.find_spec("arviz_stats") is not None:  # arviz >= 1 moved PSIS to arviz_stats
    from arviz_stats.base import array_stats
else:
    array_stats = None
az = lazy_module("arviz")


def psislw(log_weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pareto-smoothed, normalized log weights and k-hat per row; the last axis is the samples.

    arviz >= 1 moved PSIS to ``arviz_stats``, whose array function takes log-likelihood-like
    values (the negated log weights) and returns the smoothed log weights; arviz 0.x's
    ``psislw`` takes the log weights themselves. Both give the same k-hat.
    """
    lw = np.asarray(log_weights, dtype=np.float64)
    if array_stats is None:
        with warnings.catch_warnings():  # arviz 0.x announces its refactor when it is first imported
            warnings.filterwarnings("ignore", message="ArviZ is undergoing a major refactor")
            smoothed, khat = az.psislw(lw, reff=1.0)
    else:
        smoothed, khat = array_stats.psislw(-lw, r_eff=1.0, axis=-1)
    return np.asarray(smoothed), np.asarray(khat)
