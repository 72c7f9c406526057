"""Likelihoods p(x | z): each maps decoder output to a ``pyro.distributions`` object.

``make(name, x_dim=..., **options)`` builds one; ``names()`` lists them. A new family is one
new file that registers itself, imported below.
"""

from __future__ import annotations

from typing import Any

from ..plugins import Origin

# each import registers its likelihood
from . import bernoulli, continuous_bernoulli, discretized_logistic, gaussian, laplace, poisson  # noqa: F401
from .base import REGISTRY, Likelihood

__all__ = ["Likelihood", "make", "names", "options", "origin"]


def make(name: str, x_dim: int, **options: Any) -> Likelihood:
    """The likelihood registered as ``name`` for ``x_dim``-dimensional data."""
    return REGISTRY.make(name, x_dim=x_dim, **options)


def names() -> list[str]:
    return REGISTRY.names()


def options(name: str) -> list[str]:
    return REGISTRY.options(name)


def origin(name: str) -> Origin | None:
    """Where a plugin named ``name`` came from (:mod:`pyrovae.plugins`); None for a built-in."""
    return REGISTRY.origin(name)
