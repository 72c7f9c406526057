"""Importance-sampled log p(x) per data point, in bounded memory."""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError
from ..estimators.draw import draw
from ..estimators.fast_path import fast_path
from ..estimators.traced import SubsamplePin, guess_max_plate_nesting
from .ais import ais
from .sumo import sumo_log_likelihood

METHODS = ("is", "ais", "sumo")
SUMO_OPTIONS = ("cutoff", "decay")
AIS_OPTIONS = (
    "num_steps",
    "num_chains",
    "hmc_steps",
    "step_size",
    "target_accept",
    "schedule",
    "init",
    "adapt",
    "points_per_chunk",
    "progress",
)


def fixed_parameters(model: Callable) -> AbstractContextManager:
    """The model's ``fixed_parameters()`` scope where it has one (what depends on its parameters
    alone is computed once inside it: the VampPrior's pseudo-input encodings), else nothing."""
    scope = getattr(model, "fixed_parameters", None)
    return scope() if callable(scope) else nullcontext()


def log_likelihood(
    model: Callable,
    guide: Callable,
    *args: Any,
    method: str = "is",
    num_samples: int = 5000,
    chunk_size: int = 250,
    max_plate_nesting: int | None = None,
    subsample_pin: SubsamplePin | None = None,
    **kwargs: Any,
) -> Tensor:
    """log p(x_i), one value a data point, by importance sampling (``method="is"``), annealed
    importance sampling (``method="ais"``) or SUMO (``method="sumo"``: unbiased, see
    :func:`pyrovae.evaluation.sumo.sumo_log_likelihood`; ``num_samples`` is its m, and it takes
    ``cutoff`` and ``decay``, the tail of its random count).

    ``"ais"`` takes the options of :func:`pyrovae.evaluation.ais.ais` (``num_steps``,
    ``num_chains``, ``hmc_steps``, ``step_size``, ``target_accept``, ``schedule``, ``init``,
    ``points_per_chunk``, ``progress``) and returns its ``log_likelihood``; call ``ais`` itself for
    the per-chain log weights and the HMC statistics. Everything below is about ``"is"``.

    log p(x_i) ~ log (1/K) sum_k p(x_i, z_k) / q(z_k | x_i), z_k ~ q. The guide is the proposal.
    The K = ``num_samples`` particles are drawn ``chunk_size`` at a time and folded into a running
    logsumexp, so memory grows with the chunk, not with K. The estimate is the IWAE(K) bound: a
    lower bound in expectation, tight as K grows.

    Returns a tensor ``[B]`` on the model's device (unscaled: any mini-batch factor is ignored).
    Every chunk scores the same data points: a plate that draws its own subsample
    (``subsample_size=B``) draws it once, in the first chunk, and ``subsample_pin`` (a
    :class:`~pyrovae.estimators.SubsamplePin`) holds those indices afterwards, or passes in the
    ones of an earlier draw. The whole estimate runs inside the model's ``fixed_parameters()``
    where it has one, so what depends on the parameters alone is computed once, not per chunk.

    References: Burda, Grosse & Salakhutdinov 2016, "Importance Weighted Autoencoders".
    """
    if method not in METHODS:
        raise ConfigError(f"unknown log-likelihood method {method!r}; valid: {', '.join(METHODS)}")
    if method == "ais":
        options = {k: kwargs.pop(k) for k in AIS_OPTIONS if k in kwargs}
        if subsample_pin is not None:
            raise ConfigError("method='ais' draws its own data points once; subsample_pin is for method='is'")
        return ais(model, guide, *args, max_plate_nesting=max_plate_nesting, **options, **kwargs).log_likelihood
    sumo_options = {k: kwargs.pop(k) for k in SUMO_OPTIONS if k in kwargs} if method == "sumo" else {}
    if num_samples < 1 or chunk_size < 1:
        raise ConfigError(f"num_samples and chunk_size must be >= 1, got {num_samples} and {chunk_size}")
    fast = fast_path(model, guide, args, kwargs) or False
    if max_plate_nesting is None and not fast:
        max_plate_nesting = guess_max_plate_nesting(model, guide, args, kwargs)
    pin = SubsamplePin() if subsample_pin is None else subsample_pin
    if method == "sumo":
        with torch.no_grad(), fixed_parameters(model):
            return sumo_log_likelihood(model, guide, args, kwargs, num_samples=num_samples, chunk_size=chunk_size,
                                       fast=fast, max_plate_nesting=max_plate_nesting, pin=pin,
                                       **sumo_options)  # fmt: skip
    running: Tensor | None = None
    with torch.no_grad(), fixed_parameters(model):
        done = 0
        while done < num_samples:
            k = min(chunk_size, num_samples - done)
            w = draw(
                model,
                guide,
                args,
                kwargs,
                num_particles=k,
                max_plate_nesting=max_plate_nesting,
                fast=fast,
                pin=pin,
                one_scale="log_likelihood",
            )
            chunk = torch.logsumexp(w.log_w(), dim=0)  # [B]
            running = chunk if running is None else torch.logaddexp(running, chunk)
            done += k
    assert running is not None
    return running - math.log(num_samples)
