"""One entry point for log weights: the direct path where it applies, tracing everywhere else."""

from __future__ import annotations

from collections.abc import Callable

from .direct import DirectLogWeights, applies, offers_single
from .layered import LayeredLogWeights
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
    fast: bool | None = None,
    detach_latents: bool = False,
    grad_scale_latents: bool = False,
    pin: SubsamplePin | None = None,
    one_scale: str | None = "an importance-weighted estimate",
) -> LogWeights:
    """Draw ``num_particles`` particles of the guide and return their :class:`LogWeights`.

    Estimators, the log-likelihood and the diagnostics all draw here. ``fast``: None checks
    :func:`~pyrovae.estimators.direct.applies`, True or False says it was decided already.
    ``detach_latents``: the model and log q see z with its path to the guide cut (RWS).
    ``grad_scale_latents``: make ``scale_latent_grads`` available (DReG). ``pin``: score the data
    points an earlier traced draw scored (its ``pin``), for plates that draw their own subsample.
    ``one_scale``: who needs one scale for the whole model (named in the refusal of a
    ``poutine.scale`` around part of it); None for a bound linear in the log weights, which
    carries a scale per site.
    """
    if fast if fast is not None else applies(model, guide, args, kwargs):
        producer = DirectLogWeights if offers_single(model, guide) else LayeredLogWeights
        return producer(model, guide, *args, **kwargs, num_particles=num_particles,  # type: ignore[arg-type]
                        detach_latents=detach_latents, grad_scale_latents=grad_scale_latents)  # fmt: skip
    if max_plate_nesting is None:
        max_plate_nesting = guess_max_plate_nesting(model, guide, args, kwargs)
    w = TracedLogWeights(
        model, guide, args, kwargs, num_particles=num_particles, max_plate_nesting=max_plate_nesting,
        detach_latents=detach_latents, grad_scale_latents=grad_scale_latents, pin=pin,
    )  # fmt: skip
    if one_scale is not None:
        w.require_one_scale(one_scale)
    return w
