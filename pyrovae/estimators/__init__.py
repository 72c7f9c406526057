"""Estimators: each a ``pyro.infer.ELBO`` that drops into ``pyro.infer.SVI``.

``make(name, **options)`` builds one, ``names()`` lists them. A new estimator is one new file
that registers itself, imported below.
"""

from __future__ import annotations

from typing import Any

from . import analytic_elbo, elbo, iwae  # noqa: F401 - each import registers its estimator
from .base import REGISTRY, Estimator, scaled_sum
from .weights import LogWeights, log_weights, logmeanexp

__all__ = [
    "Estimator",
    "LogWeights",
    "log_weights",
    "logmeanexp",
    "make",
    "names",
    "options",
    "scaled_sum",
]


def make(name: str, **options: Any) -> Estimator:
    """The estimator registered as ``name``, e.g. ``make("iwae", num_particles=5)``."""
    return REGISTRY.make(name, **options)


def names() -> list[str]:
    return REGISTRY.names()


def options(name: str) -> list[str]:
    return REGISTRY.options(name)
