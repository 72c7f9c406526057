"""The model structures the estimators accept, read off the traces of one draw.

Every estimator computes each data point's bound from that point's own log weights, so the
traces must say which point each term belongs to. The contract:

- **One data plate.** The data points sit in one vectorized ``pyro.plate`` at dim -1, the same
  plate (by name) around every sample site of the model and every site of the guide that enters
  log q. It may be a full batch, take ``subsample=idx`` or draw ``subsample_size=B`` itself.
- **Other plates whole.** Any number of other plates (vectorized at dims -2, -3, ... or
  sequential) are summed inside each point's log weight; none of them may be subsampled.
- **Scales.** A scale every site shares (the data plate's N / B times any ``poutine.scale``
  around the whole model and guide, a number or a tensor of one value a data point) multiplies
  the sum of per-point bounds, outside every logsumexp. Scales that differ between sites (a
  ``poutine.scale`` around part of the model, as Pyro's DMM example anneals its KL) are carried
  per site by the estimators whose bound is linear in the log weights (the ELBOs); an
  importance-weighted bound is not defined then, and the others refuse.
- **Matching sites.** Every unobserved guide site that is not auxiliary is a latent the model
  samples under the same name, with the same event dims and shape; every unobserved model site
  is sampled by the guide. Auxiliary guide sites (``infer={"is_auxiliary": True}``, as
  autoguides write them) and guide factors (``pyro.factor``) are terms of log q, as in Pyro.
  Other observed guide sites are conditioning and add nothing to log q (Pyro's ``Trace_ELBO``
  subtracts them).

:func:`read_structure` checks this and returns the data plate, the batch size and the scales;
anything outside it is one :class:`~pyrovae.errors.ModelStructureError` line that names the site
or plate and says what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import zip_longest
from typing import Any, cast

import torch
from pyro.distributions import Delta, TorchDistribution
from pyro.poutine.guide import GuideMessenger
from pyro.poutine.indep_messenger import CondIndepStackFrame
from pyro.poutine.runtime import InferDict, Message
from pyro.poutine.util import site_is_subsample
from torch import Tensor

from ..errors import ModelStructureError

PARTICLE_PLATE = "num_particles_vectorized"
OUTSIDE = "or use Pyro's own ELBO (estimator 'pyro.Trace_ELBO'), which takes any structure"

Scale = float | Tensor


@dataclass(frozen=True)
class Structure:
    """What the traces of one draw say about its data points.

    ``plate``: the data plate's name; ``batch``: the points it holds in this draw (-1 when the
    plate has no size); ``scale``: the factor every site shares (N / B times a shared
    ``poutine.scale``), a number or a tensor ``[B]``; ``site_scales``: where sites are scaled
    differently, each counted site's scale relative to ``scale`` (keyed ``("model", name)`` or
    ``("guide", name)``), else None; ``uneven``: the first such difference, in words.
    """

    plate: str
    batch: int
    scale: Scale
    site_scales: dict[tuple[str, str], Scale] | None = None
    uneven: str = ""


# A traced sample site, read with the types it has once it ran: Pyro's Message allows None for a
# site's name, value and infer dict (unset before it runs) and types its ``fn`` as any callable.
def site_name(site: Message) -> str:
    name = site["name"]
    assert name is not None, "a traced site has a name"
    return name


def site_value(site: Message) -> Tensor:
    value = site["value"]
    assert value is not None, f"site {site['name']!r} has no value"
    return value


def site_infer(site: Message) -> InferDict:
    infer = site["infer"]
    assert infer is not None, "Pyro gives every site an infer dict"
    return infer


def site_distribution(site: Message) -> TorchDistribution:
    """The distribution a sample site drew from (or scores its value by)."""
    return cast(TorchDistribution, site["fn"])


def counted_guide_sites(guide_trace: Any, guide: Any = None) -> dict[str, Message]:
    """The guide's sites that enter log q: latents, auxiliary sites and factors (``pyro.factor``
    writes an observed auxiliary site). Enumerated sites are refused. An effect-based guide
    (``GuideMessenger``, e.g. AutoNormalMessenger) runs the model inside itself, so its trace
    holds the model's observed sites and factors too: none of its observed sites counts."""
    effect = isinstance(guide, GuideMessenger)
    sites = {}
    for name, site in guide_trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        if site["is_observed"] and (effect or not site["infer"].get("is_auxiliary")):
            continue  # conditioning (an observed guide site), not a term of log q
        if site["infer"].get("enumerate"):
            raise ModelStructureError(
                f"guide site {name!r} is enumerated; pyrovae's estimators need sampled latents "
                "(use pyro.infer.TraceEnum_ELBO for enumeration)"
            )
        sites[name] = site
    return sites


def is_latent(site: Message) -> bool:
    """A guide site the model must sample too: unobserved and not auxiliary."""
    return not site["is_observed"] and not site_infer(site).get("is_auxiliary")


def counted_model_sites(model_trace: Any) -> dict[str, Message]:
    """The model's sample sites that enter log p: every one but the plates' subsample sites and
    ``pyro.deterministic`` records (masked out, they add nothing, wherever they sit)."""
    return {
        name: site
        for name, site in model_trace.nodes.items()
        if site["type"] == "sample" and not site_is_subsample(site) and not site["infer"].get("_deterministic")
    }


def _data_frame(site: Message) -> CondIndepStackFrame | None:
    for frame in site["cond_indep_stack"]:
        if frame.vectorized and frame.dim == -1 and frame.name != PARTICLE_PLATE:
            return frame
    return None


def find_data_plate(model_sites: dict[str, Message], guide_sites: dict[str, Message]) -> CondIndepStackFrame:
    """The data plate: the plate at dim -1 around the model's first observed site (its first site
    when it observes none), checked to enclose every counted site of both."""
    roles = [("model", n, s) for n, s in model_sites.items()] + [("guide", n, s) for n, s in guide_sites.items()]
    if not roles:
        raise ModelStructureError("the model and guide have no sample site: there is nothing to estimate")
    observed = [r for r in roles if r[0] == "model" and r[2]["is_observed"]]
    _, first, site = (observed or roles)[0]
    frame = _data_frame(site)
    for role, _, s in roles:
        check_in_data_plate(s, role, frame.name if frame is not None else None, first)
    assert frame is not None  # check_in_data_plate refused the first site otherwise
    return frame


def check_in_data_plate(site: Message, role: str, plate: str | None, first: str = "") -> None:
    """One site: inside the data plate ``plate`` (by name), no other plate subsampled."""
    name = site["name"]
    frame = _data_frame(site)
    if frame is None or plate is None:
        joined = (
            " (an autoguide that joins every latent into one vector, as AutoDiagonalNormal does, couples "
            "the data points: use AutoNormal or AutoNormalMessenger, whose sites stay in the data plate)"
            if role == "guide" and site_infer(site).get("is_auxiliary")
            else ""
        )
        raise ModelStructureError(
            f"{role} site {name!r} is not inside a plate at dim=-1: pyrovae's estimators need the data points "
            f"in one pyro.plate(..., dim=-1) that encloses every sample site (a global latent is outside the "
            f"contract){joined}; put the site inside the data plate, {OUTSIDE}"
        )
    if frame.name != plate:
        raise ModelStructureError(
            f"{role} site {name!r} is in plate {frame.name!r} at dim=-1, but the data plate is {plate!r} (the "
            f"plate of site {first!r}): pyrovae's estimators need one data plate at dim=-1 around every sample "
            f"site; give the other plate another dim (dim=-2, ...), {OUTSIDE}"
        )
    for f in site["cond_indep_stack"]:
        if f.name in (plate, PARTICLE_PLATE) or f.full_size in (None, f.size):
            continue
        kind = f"plate {f.name!r} (dim {f.dim})" if f.vectorized else f"sequential plate {f.name!r}"
        raise ModelStructureError(
            f"{kind} around {role} site {name!r} is subsampled ({f.size} of {f.full_size}): only the data "
            f"plate {plate!r} may be subsampled, since each point's bound sums its inner plates whole; "
            f"use the whole plate, {OUTSIDE}"
        )


def require_density(q_sites: dict[str, Message], user: str, instead: str) -> None:
    """Refuse, in one line, a guide whose log q cannot be evaluated at latent values it did not draw
    itself (``user`` needs that: RWS's sleep phase, annealing from the guide): log q with terms
    from auxiliary sites or factors (autoguides that sample an auxiliary site and map it), or a
    point mass (``Delta``, as AutoDelta's) with no density off its value. ``instead``: what to do."""
    for name, site in q_sites.items():
        if not is_latent(site):
            raise ModelStructureError(
                f"{user} needs log q(z | x) at latents the guide did not draw, and the guide's log q has a term "
                f"from {name!r} (an auxiliary site or factor, as autoguides such as AutoNormal write), which a "
                f"replay at given latents cannot give; {instead}"
            )
        if isinstance(site["fn"], Delta) or isinstance(getattr(site["fn"], "base_dist", None), Delta):
            raise ModelStructureError(
                f"{user} needs log q(z | x) at latents the guide did not draw, and guide site {name!r} is a point "
                f"mass (Delta, as AutoDelta's) with no density there; {instead}"
            )


def check_shapes(model_site: Message, guide_site: Message, nesting: int) -> None:
    """Model and guide agree on a latent site's event dims and shape (Pyro's
    ``check_model_guide_match``, with the particle plate counted as a plate)."""
    name, m, g = model_site["name"], site_distribution(model_site), site_distribution(guide_site)
    if m.event_dim != g.event_dim:
        raise ModelStructureError(
            f"model and guide event dims disagree at site {name!r}: {m.event_dim} vs {g.event_dim}; declare "
            "the same .to_event(...) in both"
        )
    m_shape, g_shape = m.batch_shape + m.event_shape, g.batch_shape + g.event_shape
    if m_shape == g_shape:
        return
    m_shape, g_shape = m_shape[-(nesting + 1 + m.event_dim) :], g_shape[-(nesting + 1 + g.event_dim) :]
    if any(a != b for a, b in zip_longest(reversed(m_shape), reversed(g_shape), fillvalue=1)):
        raise ModelStructureError(
            f"model and guide shapes disagree at site {name!r}: {tuple(m_shape)[1:]} vs {tuple(g_shape)[1:]} "
            "(batch and event dims, left of them the particles)"
        )


def _same(a: Scale, b: Scale) -> bool:
    if a is b:
        return True
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        return a == b
    try:
        return bool(torch.as_tensor(a == b).all())  # a host sync, for tensor scales only
    except RuntimeError:  # shapes that do not broadcast
        return False


def _per_point(scale: Scale, batch: int) -> Scale | None:
    """A shared scale as a number or one value a data point ``[B]``; None if it varies otherwise."""
    if not isinstance(scale, Tensor) or scale.dim() == 0:
        return scale
    if scale.shape[:-1].numel() == 1 and scale.shape[-1] in (1, batch):
        return scale.reshape(-1)
    return None


def _describe(scale: Scale) -> str:
    if isinstance(scale, Tensor) and scale.numel() == 1:
        scale = scale.item()
    return f"{scale:g}" if not isinstance(scale, Tensor) else "a tensor"


def read_structure(model_sites: dict[str, Message], guide_sites: dict[str, Message]) -> Structure:
    """The data plate, batch and scales of one draw (see the module docstring); refuses what is
    outside the contract."""
    frame = find_data_plate(model_sites, guide_sites)
    counted = [(("model", n), s) for n, s in model_sites.items()] + [(("guide", n), s) for n, s in guide_sites.items()]
    (_, first_site), shared = counted[0], counted[0][1]["scale"]
    uneven = next(((key, s) for key, s in counted if not _same(s["scale"], shared)), None)
    per_point = _per_point(shared, frame.size) if uneven is None else None
    if per_point is not None:
        return Structure(frame.name, frame.size, per_point)
    data_scale = 1.0 if frame.full_size in (None, frame.size) or frame.size <= 0 else frame.full_size / frame.size
    site_scales = {key: s["scale"] / data_scale for key, s in counted}
    if uneven is None:
        what = f"a scale that varies inside each data point ({_describe(shared)})"
    else:
        (role, name), site = uneven
        what = (
            f"{role} site {name!r} scaled by {_describe(site['scale'] / data_scale)} where site "
            f"{first_site['name']!r} has {_describe(shared / data_scale)}"
        )
    return Structure(frame.name, frame.size, data_scale, site_scales, what)


def refuse_uneven_scales(uneven: str, user: str) -> None:
    """The one-line refusal of per-site scales (``uneven``: :attr:`Structure.uneven`) by whatever
    needs an importance-weighted bound."""
    if uneven:
        raise ModelStructureError(
            f"{user} needs one scale for the whole model, and {uneven} (a poutine.scale around part "
            "of the model): an importance-weighted bound is not defined when sites are scaled differently; "
            "anneal the KL with the estimator's kl_weight (and kl_warmup), or use 'elbo', 'analytic_elbo' or "
            "'stl', which carry a scale per site as Pyro's Trace_ELBO does"
        )
