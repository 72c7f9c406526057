"""Estimators: each a ``pyro.infer.ELBO`` that drops into ``pyro.infer.SVI``.

``make(name, **options)`` builds one, ``names()`` lists them. A new estimator is one new file
that registers itself, imported below.
"""

from __future__ import annotations

from typing import Any

import pyro.infer

from ..errors import ConfigError
from ..plugins import Origin

# each import registers its estimator
from . import (  # noqa: F401
    analytic_elbo,
    ciwae,
    dreg,
    elbo,
    gdreg,
    iwae,
    jvi,
    miwae,
    piwae,
    renyi,
    rws,
    stl,
    sumo,
    tvo,
    vargrad,
    vimco,
)
from .analytic_elbo import AnalyticELBO
from .base import REGISTRY, Estimator, path_surrogate, scaled_sum
from .direct import DirectGuide, DirectLogWeights, DirectModel
from .draw import draw
from .fast_path import fast_path
from .layered import LayeredGuide, LayeredLogWeights, LayeredModel
from .traced import SubsamplePin, TracedLogWeights
from .weights import LogWeights, logmeanexp

__all__ = [
    "AnalyticELBO",
    "DirectGuide",
    "DirectLogWeights",
    "DirectModel",
    "Estimator",
    "LayeredGuide",
    "LayeredLogWeights",
    "LayeredModel",
    "LogWeights",
    "SubsamplePin",
    "TracedLogWeights",
    "draw",
    "fast_path",
    "logmeanexp",
    "make",
    "names",
    "options",
    "origin",
    "path_surrogate",
    "scaled_sum",
]


PYRO_PREFIX = "pyro."
PYRO_WITHOUT_LOSS = ("TraceTailAdaptive_ELBO",)


def make(name: str, **options: Any) -> pyro.infer.ELBO:
    """The estimator registered as ``name``, e.g. ``make("iwae", num_particles=5)``.

    ``"pyro.<Class>"`` builds one of Pyro's own ELBOs instead (``"pyro.Trace_ELBO"``,
    ``"pyro.TraceMeanField_ELBO"``, ``"pyro.RenyiELBO"``, ...), with vectorized particles and
    the data plate as the only plate; training and evaluation accept any ``pyro.infer.ELBO``.
    Pyro's ``RenyiELBO`` is not a bound under subsampling (the N / B scale lands inside its
    logsumexp) and has no ``differentiable_loss``; pyrovae's ``renyi`` is both.
    """
    if name.startswith(PYRO_PREFIX):
        return _make_pyro(name[len(PYRO_PREFIX) :], options)
    return REGISTRY.make(name, **options)


def _make_pyro(cls_name: str, options: dict[str, Any]) -> pyro.infer.ELBO:
    cls = getattr(pyro.infer, cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, pyro.infer.ELBO)):
        valid = sorted(
            n
            for n in dir(pyro.infer)
            if isinstance(getattr(pyro.infer, n), type) and issubclass(getattr(pyro.infer, n), pyro.infer.ELBO)
        )
        raise ConfigError(f"pyro.infer has no ELBO {cls_name!r}; valid: {', '.join(valid)}")
    if cls_name in PYRO_WITHOUT_LOSS:
        raise ConfigError(
            f"pyro.infer.{cls_name} has no loss to report (Pyro implements only its gradient); "
            "use another of Pyro's ELBOs or pyrovae's"
        )
    k = options.get("num_particles", 1)
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ConfigError(f"pyro.infer.{cls_name}: num_particles must be an integer >= 1, got {k!r}")
    options = {"vectorize_particles": True, "max_plate_nesting": 1, **options}
    try:
        return cls(**options)
    except (TypeError, ValueError, AssertionError) as e:  # Pyro's own checks of its options
        raise ConfigError(f"pyro.infer.{cls_name}: {str(e).strip().splitlines()[0]}") from e


def names() -> list[str]:
    return REGISTRY.names()


def options(name: str) -> list[str]:
    return REGISTRY.options(name)


def origin(name: str) -> Origin | None:
    """Where a plugin named ``name`` came from (:mod:`pyrovae.plugins`); None for a built-in."""
    return REGISTRY.origin(name)
