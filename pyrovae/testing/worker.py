"""Running an estimator in a spawned process, as a comparison's grid worker does: it gets the
estimator's name or import path and options, never the object, and imports it itself."""

from __future__ import annotations

import multiprocessing as mp
from typing import Any

from .. import estimators
from ..plugins import add_roots
from .linear_gaussian import LinearGaussian
from .problem import call


def run_in_worker(name: str, options: dict[str, Any], seed: int) -> float:
    """The loss that a fresh spawned process computes for ``estimators.make(name, **options)`` on the
    perturbed linear-Gaussian problem, ``subsample=idx``, on the draw of ``seed``."""
    origin = None if name.startswith(estimators.PYRO_PREFIX) else estimators.origin(name)
    roots = [origin.root] if origin is not None and origin.root else []
    with mp.get_context("spawn").Pool(1) as pool:
        return float(pool.apply(worker_loss, (name, options, seed, roots)))


def worker_loss(name: str, options: dict[str, Any], seed: int, roots: list[str]) -> float:
    add_roots(roots)
    estimator: Any = estimators.make(name, **options)
    loss, _ = call(estimator.loss, LinearGaussian().perturb(), "idx", seed)
    return float(loss)
