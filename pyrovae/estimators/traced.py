"""Log weights of any Pyro model and guide, by tracing them in a vectorized particle plate.

The guide runs once inside a plate of K particles; the model is replayed on the guide's latents.
What the traces must look like (one data plate, scales, matching sites) is checked by
:func:`~pyrovae.estimators.structure.read_structure`. Every later pass of the same draw (the
model at stopped latents, the guide at stopped values for a path derivative, the next chunk of a
log-likelihood estimate) runs under the draw's :class:`SubsamplePin`, so a plate that draws its
own mini-batch (``pyro.plate("data", N, subsample_size=B)``) sees the indices of the first pass in
every pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import Message
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import site_is_subsample
from torch import Tensor
from torch.distributions import kl_divergence

from ..errors import ModelStructureError
from .structure import (
    PARTICLE_PLATE,
    Scale,
    check_shapes,
    counted_guide_sites,
    counted_model_sites,
    is_latent,
    read_structure,
    site_distribution,
    site_infer,
    site_name,
    site_value,
)
from .weights import LatentAtLeaf, Leaves, LogWeights, hooked_view, partial_grads


def particle_plate(num_particles: int, max_plate_nesting: int) -> pyro.plate:
    """The outermost plate of K particles, left of every plate of the model."""
    return pyro.plate(PARTICLE_PLATE, num_particles, dim=-(max_plate_nesting + 1))


class SubsamplePin(Messenger):
    """Every plate that draws its own subsample gets, in every pass, the indices it drew first.

    A plate built with ``subsample_size=B`` draws B indices each time it is entered; one draw of
    log weights enters it several times (guide, model replay, stopped-gradient replays, later
    chunks), and all of them must score the same data points. Indices the user passes
    (``subsample=idx``) are left as they are, and so is the particle plate, whose size an estimator
    may change from one draw to the next (SUMO's roulette).
    """

    def __init__(self) -> None:
        super().__init__()
        self.indices: dict[str, Tensor] = {}

    def _pyro_sample(self, msg: Message) -> None:
        if site_is_subsample(msg) and msg["value"] is None and msg["name"] in self.indices:
            msg["value"] = self.indices[msg["name"]]

    def _pyro_post_sample(self, msg: Message) -> None:
        if site_is_subsample(msg) and site_name(msg) != PARTICLE_PLATE:
            self.indices.setdefault(site_name(msg), site_value(msg))


def _fork_rng(device_tensors: list[Tensor]) -> Any:
    devices = sorted({t.device.index or 0 for t in device_tensors if t.is_cuda})
    return torch.random.fork_rng(devices=devices)


def guess_max_plate_nesting(model: Callable, guide: Callable, args: tuple, kwargs: dict) -> int:
    """How many plates deep the model goes, found by one run that leaves the RNG untouched.

    A model or guide may declare it as a ``max_plate_nesting`` attribute (pyrovae's do), which
    skips the run. Pyro's own guess consumes random numbers, which breaks resumable runs.
    """
    for fn in (model, guide):
        declared = getattr(fn, "max_plate_nesting", None)
        if isinstance(declared, int):
            return declared
    tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, Tensor)]
    with _fork_rng(tensors), poutine.block(), torch.no_grad(), SubsamplePin():
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    dims = [
        frame.dim
        for trace in (model_trace, guide_trace)
        for site in trace.nodes.values()
        if site["type"] == "sample"
        for frame in site["cond_indep_stack"]
        if frame.dim is not None  # vectorized
    ]
    return -min(dims) if dims else 0


def site_log_prob(site: Message, nesting: int, scale: Scale | None = None) -> Tensor:
    """Masked log prob of a site, times ``scale`` (a per-site scale relative to the shared one;
    None: unscaled), summed over inner plates: ``[K, B]`` (or size 1)."""
    lp = element_log_prob(site, nesting, scale)  # [K, *inner, B]
    return lp.sum(dim=tuple(range(1, nesting))) if nesting > 1 else lp


def element_log_prob(site: Message, nesting: int, scale: Scale | None = None) -> Tensor:
    """:func:`site_log_prob` before the sum over inner plates: ``[K, *inner, B]`` (sizes 1 where
    the site does not extend)."""
    try:
        lp = site_distribution(site).log_prob(site_value(site), *site["args"], **site["kwargs"])
    except (ValueError, RuntimeError) as e:
        if isinstance(e, torch.OutOfMemoryError):
            raise
        lines = str(e).strip().splitlines()
        raise ModelStructureError(f"site {site['name']!r}: its log_prob failed: {lines[0] if lines else e!r}") from e
    if site["mask"] is not None:
        lp = scale_and_mask(lp, mask=site["mask"])
    if scale is not None:
        lp = lp * scale
    if lp.dim() > nesting + 1:
        raise ModelStructureError(
            f"site {site['name']!r} has batch shape {tuple(lp.shape)}, wider than its plates; "
            "declare event dims with .to_event(...)"
        )
    check_plate_dims(site, lp.shape, nesting)
    return lp.reshape((1,) * (nesting + 1 - lp.dim()) + lp.shape)  # [K, *inner, B]


def check_plate_dims(site: Message, shape: torch.Size, nesting: int) -> None:
    """Each batch dim of a site's log prob, right of the particles, is 1 or the size of the plate
    at that dim around the site. A value that lost a plate dim (``y.sum(-2)`` where
    ``y.sum(-2, keepdim=True)`` is meant) lines the particles up with a plate's dim: Pyro computes
    something then, silently; here it is refused."""
    sizes = {f.dim: f.size for f in site["cond_indep_stack"] if f.vectorized and f.name != PARTICLE_PLATE}
    for dim in range(-min(len(shape), nesting), 0):
        size, plate = shape[dim], sizes.get(dim)
        if size != 1 and plate not in (size, -1):
            where = "the site is in no plate" if plate is None else f"its plate there has {plate}"
            raise ModelStructureError(
                f"site {site['name']!r} has batch shape {tuple(shape)}: size {size} at dim {dim}, where {where}; "
                "a value that lost a plate's dim (x.sum(-2) for x.sum(-2, keepdim=True)) puts the particles' "
                "dim there: keep plate dims with keepdim=True"
            )


def _mask(site: Message) -> Tensor | None:
    mask = site["mask"]
    return None if mask is None or isinstance(mask, bool) and mask else torch.as_tensor(mask)


def _values(
    sites: dict[str, Message],
    detach: bool,
    grad_scale: dict | None,
    nesting: int,
    given: dict[str, Tensor] | None = None,
) -> Trace:
    """A trace for ``poutine.replay`` holding the values a pass sees (``given`` ones where named)."""
    trace = Trace()
    for name, site in sites.items():
        value = site_value(site).detach() if detach else site_value(site)
        value = given[name] if given is not None and name in given else value
        value = hooked_view(value, grad_scale, site_distribution(site).event_dim, nesting)
        trace.add_node(name, type="sample", is_observed=False, value=value, infer=site["infer"])
    return trace


def match_latents(model_sites: dict[str, Message], latents: dict[str, Message], nesting: int) -> None:
    """Every unobserved model site is a guide latent and vice versa, with the same shape."""
    for name, site in model_sites.items():
        if site["is_observed"]:
            if name in latents:
                raise ModelStructureError(f"site {name!r} is sampled by the guide but observed in the model")
        elif name not in latents and site_infer(site).get("enumerate"):
            raise ModelStructureError(
                f"model site {name!r} is enumerated; pyrovae's estimators need every latent sampled by the guide "
                "(use pyro.infer.TraceEnum_ELBO for enumeration)"
            )
        elif name not in latents:
            raise ModelStructureError(
                f"the model samples {name!r} but the guide does not: every latent site of "
                "the model needs a guide site of the same name"
            )
        else:
            check_shapes(site, latents[name], nesting)
    missing = sorted(set(latents) - {n for n, s in model_sites.items() if not s["is_observed"]})
    if missing:
        raise ModelStructureError(
            f"the guide samples {', '.join(map(repr, missing))} which the model does not: every guide latent "
            "needs a model site of the same name (mark an auxiliary guide site infer={'is_auxiliary': True})"
        )


class TracedLogWeights(LogWeights):
    """:class:`LogWeights` of any model/guide pair, from Pyro traces of one vectorized draw.

    Args:
        model, guide, args, kwargs: the pair and what they are called with.
        num_particles: K.
        max_plate_nesting: plates the model nests (the data plate counts one).
        detach_latents: the model and log q see z with its path to the guide cut (RWS).
        grad_scale_latents: make :meth:`scale_latent_grads` available (DReG).
        pin: the :class:`SubsamplePin` of an earlier draw whose data points this one must score
            (the chunks of a log-likelihood estimate); a new one by default.
    """

    def __init__(
        self,
        model: Callable,
        guide: Callable,
        args: tuple,
        kwargs: dict,
        *,
        num_particles: int,
        max_plate_nesting: int,
        detach_latents: bool = False,
        grad_scale_latents: bool = False,
        pin: SubsamplePin | None = None,
    ) -> None:
        if max_plate_nesting < 1:
            raise ModelStructureError(
                "the model has no sample site inside a plate: pyrovae's estimators need the data points in a "
                "pyro.plate(..., dim=-1) that encloses every sample site"
            )
        self.model, self.guide, self.args, self.kwargs = model, guide, args, kwargs
        self.nesting, self.detached = max_plate_nesting, detach_latents
        self.pin = pin if pin is not None else SubsamplePin()
        self.plate = particle_plate(num_particles, max_plate_nesting)
        with self.pin:
            self.guide_trace = poutine.trace(self.plate(guide)).get_trace(*args, **kwargs)
        self._q_sites = counted_guide_sites(self.guide_trace, guide)  # latents, auxiliary sites, factors
        self._latents = {name: site for name, site in self._q_sites.items() if is_latent(site)}
        grad_scale: dict[str, Any] | None = {} if grad_scale_latents else None
        replay = (
            _values(self._latents, detach_latents, grad_scale, self.nesting)
            if detach_latents or grad_scale_latents
            else self.guide_trace
        )
        self.model_trace = self._run_model(replay)
        self._model_sites = model_sites = counted_model_sites(self.model_trace)
        self.structure = read_structure(model_sites, self._q_sites)
        match_latents(model_sites, self._latents, self.nesting)
        log_lik, self.site_log_p = self._model_terms(model_sites)
        # with the latents detached, each site's density must see its parents detached too
        q_sites = self._stopped_sites() if detach_latents else self._q_sites
        self.site_log_q = {name: self._log_prob("guide", site) for name, site in q_sites.items()}
        unreparam = [] if detach_latents else self.non_reparameterized()
        score = [site_log_prob(q_sites[n], self.nesting) for n in unreparam]  # unscaled: the score
        terms = [log_lik, *self.site_log_p.values(), *self.site_log_q.values()]
        shape = (num_particles, self._batch(terms))
        zero = terms[0].new_zeros(())
        log_prior, log_q = sum(self.site_log_p.values(), zero), sum(self.site_log_q.values(), zero)
        super().__init__(
            log_lik.expand(shape),
            log_prior.expand(shape),
            log_q.expand(shape),
            self.structure.scale,
            latents={name: site_value(site) for name, site in self._latents.items()},
            log_q_score=sum(score, zero).expand(shape) if score else None,
            log_q_unreparam=sum((self.site_log_q[n] for n in unreparam), zero).expand(shape) if score else None,
            grad_scale=grad_scale,
            uneven_scales=self.structure.uneven,
        )

    def _batch(self, terms: list[Tensor]) -> int:
        """The data plate's size, or for a plate without one, the widest term's last dim."""
        return self.structure.batch if self.structure.batch >= 0 else max(t.shape[-1] for t in terms)

    def _log_prob(self, role: str, site: Message) -> Tensor:
        scales = self.structure.site_scales
        return site_log_prob(site, self.nesting, None if scales is None else scales[(role, site_name(site))])

    def _model_terms(self, model_sites: dict[str, Message]) -> tuple[Tensor, dict[str, Tensor]]:
        """log p(x | z) (every observed site, factors included) and each latent site's log p."""
        log_lik: Tensor | None = None
        site_log_p = {}
        for name, site in model_sites.items():
            lp = self._log_prob("model", site)
            if site["is_observed"]:
                log_lik = lp if log_lik is None else log_lik + lp
            else:
                site_log_p[name] = lp
        if log_lik is None:  # a model that observes nothing
            log_lik = next(iter(site_log_p.values())).new_zeros(())
        return log_lik, site_log_p

    def _run_model(self, replay: Trace) -> Trace:
        with self.pin:
            return poutine.trace(poutine.replay(self.plate(self.model), trace=replay)).get_trace(
                *self.args, **self.kwargs
            )

    def log_q_stop(self) -> Tensor:
        """log q_stop(z) = log q(z) - log q(stop z) + stop(log q(stop z)).

        log q(stop z), evaluated with every sampled value detached, carries exactly the direct
        gradient d log q / dphi at fixed z; subtracting it leaves the path terms. With one site
        in log q its distribution does not depend on the sample and is reused; with several, the
        guide is replayed at the detached values (on the same data points) so that later sites
        see stopped parents.
        """
        bad = self.non_reparameterized()
        if bad:
            raise ModelStructureError(
                f"guide site {bad[0]!r} cannot be reparameterized: the path derivative that STL "
                "and DReG use does not exist for it"
            )
        direct = torch.zeros_like(self.log_q)
        for site in self._stopped_sites().values():
            direct = direct + self._log_prob("guide", site)
        return self.log_q - direct + direct.detach()

    def _stopped_sites(self) -> dict[str, Message]:
        """The guide's log-q sites at the detached values, each distribution built from detached
        parents: one site's distribution does not depend on the sample and is reused; with
        several, the guide is replayed at the detached values (on the same data points)."""
        if len(self._q_sites) == 1:
            return {name: {**site, "value": site_value(site).detach()} for name, site in self._q_sites.items()}
        sampled = {name: site for name, site in self._q_sites.items() if not site["is_observed"]}
        with self.pin:
            replayed = poutine.trace(
                poutine.replay(self.plate(self.guide), trace=_values(sampled, True, None, self.nesting))
            ).get_trace(*self.args, **self.kwargs)
        return {name: replayed.nodes[name] for name in self._q_sites}

    def at_leaves(self) -> Leaves:
        leaves = {name: site_value(site).detach().requires_grad_() for name, site in self._latents.items()}
        model_sites = counted_model_sites(self._run_model(_values(self._latents, True, None, self.nesting, leaves)))
        log_lik, site_log_p = self._model_terms(model_sites)
        q_sites: dict[str, Message]
        if len(self._q_sites) == 1:
            q_sites = {name: cast(Message, {**site, "value": leaves[name]}) for name, site in self._q_sites.items()}
        else:
            sampled = {name: site for name, site in self._q_sites.items() if not site["is_observed"]}
            with self.pin:
                replayed = poutine.trace(
                    poutine.replay(self.plate(self.guide), trace=_values(sampled, True, None, self.nesting, leaves))
                ).get_trace(*self.args, **self.kwargs)
            q_sites = {name: replayed.nodes[name] for name in self._q_sites}
        log_q = sum((self._log_prob("guide", site).sum() for site in q_sites.values()), torch.zeros(()))
        grads = partial_grads(log_q, list(leaves.values()))
        sites = {
            name: LatentAtLeaf(leaves[name], site_distribution(model_sites[name]), _mask(model_sites[name]))
            for name in leaves
        }
        log_prior = sum(site_log_p.values(), torch.zeros(()))
        return Leaves(sites, log_lik, log_prior, dict(zip(leaves, grads, strict=True)))

    def model_at_detached(self) -> tuple[Tensor, Tensor]:
        trace = self._run_model(_values(self._latents, True, None, self.nesting))
        log_lik, site_log_p = self._model_terms(counted_model_sites(trace))
        log_prior = sum(site_log_p.values(), torch.zeros_like(self.log_q))
        return log_lik.expand_as(self.log_q), log_prior.expand_as(self.log_q)

    def kl(self) -> Tensor:
        """Per latent site: the closed form at the sampled values of the earlier sites where the
        guide samples every latent the model drew before this site first (then those values are
        given when the site is drawn, and the closed form is the conditional expectation of the
        Monte Carlo term); the Monte Carlo term log q - log p elsewhere, e.g. for a bottom-up guide
        whose site's prior depends on a latent the guide samples later, where the closed form at
        that later sample would be biased. Auxiliary sites and guide factors add their log q."""
        total = torch.zeros_like(self.log_q)
        guide_order = list(self._latents)
        model_order = [name for name in self.model_trace.nodes if name in self.site_log_p]
        for name, lq in self.site_log_q.items():
            if name not in self._latents:
                total = total + lq
                continue
            g, m = self.guide_trace.nodes[name], self.model_trace.nodes[name]
            given = set(guide_order[: guide_order.index(name)])
            try:
                if not set(model_order[: model_order.index(name)]) <= given:
                    raise NotImplementedError
                kl = kl_divergence(site_distribution(g), site_distribution(m))
            except NotImplementedError:
                total = total + lq - self.site_log_p[name]
                continue
            # the site scored by its KL; Message types fn as a callable, and _Constant stands in for a
            # distribution (only its log_prob is read, which ignores the value)
            kl_site: Message = {**g, "fn": _Constant(kl), "args": (), "kwargs": {}}  # type: ignore[typeddict-item]
            total = total + self._log_prob("guide", kl_site)
        return total

    def score_term(self, kl_weight: float | Tensor = 1.0) -> Tensor:
        """As Pyro's ``Trace_ELBO``: each site's learning signal is the log weight restricted to the
        terms in the site's own plates; the terms of other elements of a plate inside the data
        plate cannot depend on it (a lower-variance signal with the same expectation)."""
        sites = [self._q_sites[name] for name in self.non_reparameterized()]
        if all(len(_plate_dims(site)) == 1 for site in sites):  # only the data plate: the whole log weight
            return super().score_term(kl_weight)
        terms = [
            (self._element_log_prob("model", s), 1.0 if s["is_observed"] else kl_weight)
            for s in self._model_sites.values()
        ]
        terms += [(self._element_log_prob("guide", s), -kl_weight) for s in self._q_sites.values()]
        total = torch.zeros_like(self.log_q)
        inner = tuple(range(1, self.nesting))
        for site in sites:
            keep = _plate_dims(site)
            signal = sum(_sum_outside(lp, keep, self.nesting) * weight for lp, weight in terms)  # [K, *inner, B]
            score = element_log_prob(site, self.nesting)  # unscaled: the score of what was drawn
            term = signal.detach() * score  # type: ignore[union-attr]
            total = total + (term.sum(dim=inner) if inner else term)
        return total

    def _element_log_prob(self, role: str, site: Message) -> Tensor:
        scales = self.structure.site_scales
        return element_log_prob(site, self.nesting, None if scales is None else scales[(role, site_name(site))])

    def non_reparameterized(self) -> list[str]:
        return [name for name, site in self._q_sites.items() if not site_distribution(site).has_rsample]

    def auxiliary(self) -> list[str]:
        """The guide's log-q sites that are not latents of the model: auxiliary sites, factors."""
        return [name for name in self._q_sites if name not in self._latents]


def _plate_dims(site: Message) -> set[int]:
    """The dims of the vectorized plates around a site, the particles' aside."""
    return {f.dim for f in site["cond_indep_stack"] if f.dim is not None and f.name != PARTICLE_PLATE}  # vectorized


def _sum_outside(lp: Tensor, keep: set[int], nesting: int) -> Tensor:
    """``lp [K, *inner, B]`` summed over the inner plate dims not in ``keep``, kept as size 1."""
    dims = tuple(d for d in range(-nesting, -1) if d not in keep)
    return lp.sum(dim=dims, keepdim=True) if dims else lp


class _Constant:
    """Stands in for a distribution whose log_prob is a precomputed tensor (a site's KL)."""

    def __init__(self, value: Tensor) -> None:
        self.value = value

    def log_prob(self, _value: Any) -> Tensor:
        return self.value
