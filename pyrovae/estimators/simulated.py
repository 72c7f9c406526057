"""Data simulated from the model: (z, x) ~ p(z) p(x | z), handed back as the model's own argument.

RWS's sleep phase and bidirectional Monte Carlo both need data simulated from the model, with the
latents that produced it (an exact draw of p(z | x)), in the form the model and guide take their
data: the model's first argument, or that argument with the simulated points written at the indices
the data plate drew (a model that indexes the full data set).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import Message
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import site_is_subsample
from torch import Tensor

from ..errors import ModelStructureError
from .structure import site_infer, site_value
from .traced import SubsamplePin


@dataclass
class SimulatedData:
    """``args``: the model's arguments with the simulated data in place of the data; ``x``: the
    simulated observations; ``latents``: the latent values that produced them (a trace for
    ``poutine.replay``); ``scale``: the data plate's scale at the latent sites."""

    args: tuple
    x: Tensor
    latents: Trace
    scale: Any


def simulate_data(model: Callable, args: tuple, kwargs: dict, pin: SubsamplePin, user: str) -> SimulatedData:
    """One draw of (z, x) from ``model`` run at ``args`` (whose data values are not used), on the
    data points ``pin`` holds. ``user`` names the caller in the one-line refusals: a model without
    the data as its first argument or with other than one observed site, or one that transforms
    its data before observing it (a replay on the substituted argument must give the dream back)."""
    with torch.no_grad(), pin:
        trace = poutine.trace(poutine.uncondition(model)).get_trace(*args, **kwargs)
    observed = [n for n, s in trace.nodes.items() if s["type"] == "sample" and site_infer(s).get("was_observed")]
    x = args[0] if args else None
    if len(observed) != 1 or not isinstance(x, Tensor):
        raise ModelStructureError(
            f"{user} needs the data as the model's first argument and exactly one "
            f"observed site (found {observed or 'none'})"
        )
    x_simulated = site_value(trace.nodes[observed[0]]).detach()
    latents = Trace()
    scale: Any = 1.0
    for name, site in trace.nodes.items():
        if (
            site["type"] == "sample"
            and not site_infer(site).get("was_observed")
            and not (site["is_observed"] or site_is_subsample(site))
        ):
            latents.add_node(
                name, type="sample", is_observed=False, value=site_value(site).detach(), infer=site["infer"]
            )
            scale = site["scale"]
    fake = _simulated_input(x, x_simulated, trace)
    if fake is not None:
        with torch.no_grad(), pin:
            check = poutine.trace(poutine.replay(model, trace=latents)).get_trace(fake, *args[1:], **kwargs)
        seen = site_value(check.nodes[observed[0]])
    if fake is None or seen.shape != x_simulated.shape or not torch.equal(seen, x_simulated):
        raise ModelStructureError(
            f"{user} cannot hand the dreamt data to the guide: the model's observed site "
            f"{observed[0]!r} is not its first argument, nor that argument indexed by the data "
            "plate"
        )
    return SimulatedData((fake, *args[1:]), x_simulated, latents, scale)


class ReplayValues(Messenger):
    """Unobserved sites at the values in ``trace``, like ``poutine.replay`` but keeping each site's
    own ``infer`` (an effect-based guide, AutoNormalMessenger, keeps the site's prior there):
    ``ReplayValues(trace)(fn)``."""

    def __init__(self, trace: Trace) -> None:
        super().__init__()
        self.values = {name: site["value"] for name, site in trace.nodes.items()}

    def _pyro_sample(self, msg: Message) -> None:
        if msg["name"] in self.values and not msg["is_observed"]:
            msg["value"] = self.values[msg["name"]]
            msg["done"] = True


def _simulated_input(x: Tensor, x_simulated: Tensor, trace: Trace) -> Tensor | None:
    """The model's first argument with the dreamt observations in place of the data: ``x_simulated``
    itself when the model observes its argument as it is, else ``x`` with the dreamt points
    written at the indices the data plate drew (a model that indexes the full data set)."""
    if x.shape == x_simulated.shape:
        return x_simulated.to(x.dtype)
    for site in trace.nodes.values():
        if site["type"] == "sample" and site_is_subsample(site):
            idx = site["value"]
            # a subsample site's fn is pyro's _Subsample (the plate's full size), which Message types as a callable
            size = site["fn"].size  # type: ignore[attr-defined]
            if x.dim() >= 1 and x.shape[0] == size and x[idx].shape == x_simulated.shape:
                fake = x.detach().clone()
                fake[idx] = x_simulated.to(x.dtype)
                return fake
    return x_simulated.reshape(x.shape).to(x.dtype) if x.numel() == x_simulated.numel() else None
