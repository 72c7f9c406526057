"""One entry point for log weights: the direct path where it applies, tracing everywhere else."""

from __future__ import annotations

from collections.abc import Callable

from .fast_path import Producer, fast_path
from .traced import SubsamplePin, TracedLogWeights, guess_max_plate_nesting
from .weights import LogWeights


def draw(
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict,
    *,
    num_particles: int,
    max_plate_nesting: int | None = None,
    fast: bool | Producer = True,
    detach_latents: bool = False,
    grad_scale_latents: bool = False,
    pin: SubsamplePin | None = None,
    one_scale: str | None = "an importance-weighted estimate",
) -> LogWeights:
    """Draw ``num_particles`` particles of the guide and return their :class:`LogWeights`.

    Estimators, the log-likelihood and the diagnostics all draw here. ``fast``: take the fast path
    where :func:`~pyrovae.estimators.fast_path.fast_path` finds one (False: always trace; a producer
    it found already for this call: use it).
    ``detach_latents``: the model and log q see z with its path to the guide cut (RWS).
    ``grad_scale_latents``: make ``scale_latent_grads`` available (DReG). ``pin``: score the data
    points an earlier traced draw scored (its ``pin``), for plates that draw their own subsample.
    ``one_scale``: who needs one scale for the whole model (named in the refusal of a
    ``poutine.scale`` around part of it); None for a bound linear in the log weights, which
    carries a scale per site.
    """
    producer = fast_path(model, guide, args, kwargs) if fast is True else (fast or None)
    if producer is not None:
        return producer(
            model,
            guide,
            *args,
            **kwargs,
            num_particles=num_particles,
            detach_latents=detach_latents,
            grad_scale_latents=grad_scale_latents,
        )
    if max_plate_nesting is None:
        max_plate_nesting = guess_max_plate_nesting(model, guide, args, kwargs)
    w = TracedLogWeights(
        model,
        guide,
        args,
        kwargs,
        num_particles=num_particles,
        max_plate_nesting=max_plate_nesting,
        detach_latents=detach_latents,
        grad_scale_latents=grad_scale_latents,
        pin=pin,
    )
    if one_scale is not None:
        w.require_one_scale(one_scale)
    return w
