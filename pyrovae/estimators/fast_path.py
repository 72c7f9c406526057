"""The fast path, decided in one place: whether a model and guide compute their log weights
themselves, without Pyro's tracing, and which producer does it.

A model and guide may offer their log densities directly through a small typed protocol: one
latent site (:class:`~pyrovae.estimators.direct.DirectModel` and ``DirectGuide``; pyrovae's
one-Gaussian VAE) or several in layers (:class:`~pyrovae.estimators.layered.LayeredModel` and
``LayeredGuide``; pyrovae's hierarchical family). Their ``forward`` samples from the same methods,
so the direct producer draws the same random numbers in the same order as tracing and computes
the same tensors. A class whose ``forward`` is redefined below the class that wrote its direct
computation changes what it samples without saying how to compute it directly, so it is traced.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyro.poutine.runtime import _PYRO_STACK
from pyro.poutine.trace_messenger import TraceMessenger
from torch import Tensor

from . import direct, layered
from .traced import SubsamplePin
from .weights import LogWeights

Producer = Callable[..., LogWeights]  # a LogWeights class, called with the model, guide, data and flags


def _definer(cls: type, attr: str) -> type | None:
    return next((klass for klass in cls.__mro__ if attr in vars(klass)), None)


def computes_what_it_samples(obj: Any, methods: tuple[str, ...]) -> bool:
    """Whether ``obj`` has each direct method, written for the ``forward`` it runs: defined in the
    class that defines ``forward`` or below it. A subclass that overrides ``forward`` (what it
    samples) but not the direct computation fails this, as does an instance whose ``forward`` was
    replaced; one that overrides ``prior()`` or ``distribution()`` passes, since both paths are
    built from them. Checked by attribute: a Protocol's isinstance would cost more than the rest
    of a step."""
    if any(name in vars(obj) for name in ("forward", *methods)):
        return False
    cls = type(obj)
    forward = _definer(cls, "forward")
    if forward is None:
        return False
    for method in methods:
        owner = _definer(cls, method)
        if owner is None or not issubclass(owner, forward):
            return False
    return hasattr(obj, "pyro_name")


def _producer(model: Callable, guide: Callable) -> Producer | None:
    for producer, pair in ((direct.DirectLogWeights, direct), (layered.LayeredLogWeights, layered)):
        if computes_what_it_samples(model, pair.MODEL_METHODS) and computes_what_it_samples(guide, pair.GUIDE_METHODS):
            return producer
    return None


def _unhandled() -> bool:
    """No active handler changes the model (poutine.scale, condition, ...). SVI's capture of
    parameter sites does not (the modules still register their parameters for it), nor does a
    :class:`SubsamplePin` (pyrovae's plate is given its indices)."""
    return all(isinstance(m, SubsamplePin) or (isinstance(m, TraceMessenger) and m.param_only) for m in _PYRO_STACK)


def fast_path(
    model: Callable, guide: Callable, args: tuple | None = None, kwargs: dict | None = None
) -> Producer | None:
    """The producer that computes ``model`` and ``guide``'s log weights directly, exactly as tracing
    them would, or None (trace them). Without ``args``: whether the pair can take the fast path at
    all; with the call's ``args`` and ``kwargs``: whether this call does (the data as the one
    argument, ``num_data`` at most beside it, and no handler active)."""
    producer = _producer(model, guide)
    if producer is None or args is None:
        return producer
    if len(args) != 1 or not isinstance(args[0], Tensor) or set(kwargs or {}) - {"num_data"}:
        return None
    return producer if _unhandled() else None
