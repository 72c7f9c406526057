"""Log weights of any Pyro model and guide, by tracing them in a vectorized particle plate.

The guide runs once inside a plate of K particles; the model is replayed on the guide's latents.
Every later pass of the same draw (the model at stopped latents, the guide at stopped values for
a path derivative, the next chunk of a log-likelihood estimate) runs under the draw's
:class:`SubsamplePin`, so a plate that draws its own mini-batch (``pyro.plate("data", N,
subsample_size=B)``) sees the indices of the first pass in every pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.poutine.messenger import Messenger
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import site_is_subsample
from torch import Tensor
from torch.distributions import kl_divergence

from ..errors import ModelStructureError
from .weights import LogWeights, hooked_view

PARTICLE_PLATE = "num_particles_vectorized"


def particle_plate(num_particles: int, max_plate_nesting: int) -> pyro.plate:
    """The outermost plate of K particles, left of every plate of the model."""
    return pyro.plate(PARTICLE_PLATE, num_particles, dim=-(max_plate_nesting + 1))


class SubsamplePin(Messenger):
    """Every plate that draws its own subsample gets, in every pass, the indices it drew first.

    A plate built with ``subsample_size=B`` draws B indices each time it is entered; one draw of
    log weights enters it several times (guide, model replay, stopped-gradient replays, later
    chunks), and all of them must score the same data points. Indices the user passes
    (``subsample=idx``) are left as they are.
    """

    def __init__(self) -> None:
        super().__init__()
        self.indices: dict[str, Tensor] = {}

    def _pyro_sample(self, msg: dict) -> None:
        if site_is_subsample(msg) and msg["value"] is None and msg["name"] in self.indices:
            msg["value"] = self.indices[msg["name"]]

    def _pyro_post_sample(self, msg: dict) -> None:
        if site_is_subsample(msg):
            self.indices.setdefault(msg["name"], msg["value"])


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
        if frame.vectorized
    ]
    return -min(dims) if dims else 0


def site_log_prob(site: dict, nesting: int) -> Tensor:
    """Unscaled, masked log prob of a site, summed over inner plates: ``[K, B]`` (or size 1)."""
    lp = site["fn"].log_prob(site["value"], *site["args"], **site["kwargs"])
    if site["mask"] is not None:
        lp = scale_and_mask(lp, mask=site["mask"])
    if lp.dim() > nesting + 1:
        raise ModelStructureError(
            f"site {site['name']!r} has batch shape {tuple(lp.shape)}, wider than its plates; "
            "declare event dims with .to_event(...)"
        )
    lp = lp.reshape((1,) * (nesting + 1 - lp.dim()) + lp.shape)  # [K, *inner, B]
    if nesting > 1:
        lp = lp.sum(dim=tuple(range(1, nesting)))
    return lp


def _check_plates(site: dict, role: str) -> None:
    """The data plate at dim -1 encloses the site; no plate inside it is subsampled (the per-point
    log weight sums every inner element unscaled, which a subsampled inner plate would not be)."""
    if not any(f.dim == -1 for f in site["cond_indep_stack"]):
        raise ModelStructureError(
            f"{role} site {site['name']!r} is not inside a plate at dim=-1: pyrovae's "
            "estimators need the data points in a pyro.plate(..., dim=-1) that encloses "
            "every sample site"
        )
    for f in site["cond_indep_stack"]:
        if f.dim not in (-1, None) and f.name != PARTICLE_PLATE and f.full_size not in (None, f.size):
            raise ModelStructureError(
                f"plate {f.name!r} (dim {f.dim}) around {role} site {site['name']!r} is subsampled "
                f"({f.size} of {f.full_size}): only the data plate at dim=-1 may be subsampled"
            )


def _check_scale(site: dict, scale: Any) -> Any:
    s = site["scale"]
    if scale is None:
        return s
    if not isinstance(s, Tensor) and not isinstance(scale, Tensor) and s != scale:
        raise ModelStructureError(
            f"site {site['name']!r} has scale {s} where other sites have {scale}: the "
            "mini-batch scale must be one factor for the whole data plate (a poutine.scale "
            "around part of the model is not supported; use the estimator's kl_weight)"
        )
    return scale


def _latent_sites(guide_trace: Trace) -> dict[str, dict]:
    latents = {}
    for name, site in guide_trace.nodes.items():
        if site["type"] != "sample" or site["is_observed"] or site_is_subsample(site):
            continue
        if site["infer"].get("enumerate"):
            raise ModelStructureError(
                f"guide site {name!r} is enumerated; pyrovae's estimators need sampled latents "
                "(use pyro.infer.TraceEnum_ELBO for enumeration)"
            )
        _check_plates(site, "guide")
        latents[name] = site
    return latents


def _values(latents: dict[str, dict], detach: bool, grad_scale: dict | None, nesting: int) -> Trace:
    """A trace for ``poutine.replay`` holding the latent values a pass sees."""
    trace = Trace()
    for name, site in latents.items():
        value = site["value"].detach() if detach else site["value"]
        value = hooked_view(value, grad_scale, site["fn"].event_dim, nesting)
        trace.add_node(name, type="sample", is_observed=False, value=value, infer=site["infer"])
    return trace


def _batch_size(*traces: Trace) -> int:
    for trace in traces:
        for site in trace.nodes.values():
            if site["type"] == "sample" and not site_is_subsample(site):
                for f in site["cond_indep_stack"]:
                    if f.dim == -1:
                        return int(f.size)
    raise ModelStructureError("no sample site inside a plate at dim=-1")


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
        nesting = max_plate_nesting
        if nesting < 1:
            raise ModelStructureError(
                "the model has no plate: pyrovae's estimators need the data points in a "
                "pyro.plate(..., dim=-1) that encloses every sample site"
            )
        self.model, self.guide, self.args, self.kwargs = model, guide, args, kwargs
        self.nesting, self.detached = nesting, detach_latents
        self.pin = pin if pin is not None else SubsamplePin()
        self.plate = particle_plate(num_particles, nesting)
        with self.pin:
            guide_trace = poutine.trace(self.plate(guide)).get_trace(*args, **kwargs)
        latents = _latent_sites(guide_trace)
        grad_scale: dict[str, Any] | None = {} if grad_scale_latents else None
        replay = _values(latents, detach_latents, grad_scale, nesting) if detach_latents or grad_scale_latents \
            else guide_trace  # fmt: skip
        model_trace = self._run_model(replay)
        self.guide_trace, self.model_trace, self._sites = guide_trace, model_trace, latents

        scale: Any = None
        zero = self._like(latents, model_trace).new_zeros(())
        log_lik: Tensor = zero
        log_prior: Tensor = zero
        self.site_log_p: dict[str, Tensor] = {}
        for name, site in model_trace.nodes.items():
            if site["type"] != "sample" or site_is_subsample(site):
                continue
            _check_plates(site, "model")
            scale = _check_scale(site, scale)
            if site["is_observed"]:
                if name in latents:
                    raise ModelStructureError(f"site {name!r} is sampled by the guide but observed in the model")
                log_lik = log_lik + site_log_prob(site, nesting)
            else:
                if name not in latents:
                    raise ModelStructureError(
                        f"the model samples {name!r} but the guide does not: every latent site of "
                        "the model needs a guide site of the same name"
                    )
                self.site_log_p[name] = site_log_prob(site, nesting)
                log_prior = log_prior + self.site_log_p[name]
        missing = set(latents) - set(self.site_log_p)
        if missing:
            raise ModelStructureError(
                f"the guide samples {', '.join(map(repr, sorted(missing)))} which the model does "
                "not: every guide latent needs a model site of the same name"
            )

        log_q: Tensor = zero
        log_q_score: Tensor | None = None
        self.site_log_q: dict[str, Tensor] = {}
        # with the latents detached, each site's density must see its parents detached too
        q_sites = self._stopped_sites() if detach_latents else latents
        for name, site in latents.items():
            scale = _check_scale(site, scale)
            self.site_log_q[name] = site_log_prob(q_sites[name], nesting)
            log_q = log_q + self.site_log_q[name]
            if not site["fn"].has_rsample and not detach_latents:
                log_q_score = self.site_log_q[name] + (0 if log_q_score is None else log_q_score)

        shape = (num_particles, _batch_size(model_trace, guide_trace))
        log_lik, log_prior, log_q = (t.expand(shape) for t in (log_lik, log_prior, log_q))
        super().__init__(
            log_lik, log_prior, log_q, 1.0 if scale is None else scale,
            latents={name: site["value"] for name, site in latents.items()},
            log_q_score=None if log_q_score is None else log_q_score.expand(shape),
            grad_scale=grad_scale,
        )  # fmt: skip

    @staticmethod
    def _like(latents: dict[str, dict], model_trace: Trace) -> Tensor:
        first = next(iter(latents.values()), None)
        if first is not None:
            return first["value"]
        return next(s["value"] for s in model_trace.nodes.values() if s["type"] == "sample")

    def _run_model(self, replay: Trace) -> Trace:
        with self.pin:
            return poutine.trace(poutine.replay(self.plate(self.model), trace=replay)).get_trace(
                *self.args, **self.kwargs
            )

    def log_q_stop(self) -> Tensor:
        """log q_stop(z) = log q(z) - log q(stop z) + stop(log q(stop z)).

        log q(stop z), evaluated with every latent detached, carries exactly the direct gradient
        d log q / dphi at fixed z; subtracting it leaves the path terms. With one latent site its
        distribution does not depend on z and is reused; with several, the guide is replayed at
        the detached values (on the same data points) so that later sites see stopped parents.
        """
        bad = self.non_reparameterized()
        if bad:
            raise ModelStructureError(
                f"guide site {bad[0]!r} cannot be reparameterized: the path derivative that STL "
                "and DReG use does not exist for it"
            )
        direct = torch.zeros_like(self.log_q)
        for site in self._stopped_sites().values():
            direct = direct + site_log_prob(site, self.nesting)
        return self.log_q - direct + direct.detach()

    def _stopped_sites(self) -> dict[str, dict]:
        """The guide's latent sites at the detached values, each distribution built from detached
        parents: one site's distribution does not depend on the latents and is reused; with
        several, the guide is replayed at the detached values (on the same data points)."""
        if len(self._sites) == 1:
            return {name: {**site, "value": site["value"].detach()} for name, site in self._sites.items()}
        with self.pin:
            replayed = poutine.trace(poutine.replay(self.plate(self.guide), trace=_values(
                self._sites, True, None, self.nesting))).get_trace(*self.args, **self.kwargs)  # fmt: skip
        return {name: replayed.nodes[name] for name in self._sites}

    def model_at_detached(self) -> tuple[Tensor, Tensor]:
        trace = self._run_model(_values(self._sites, True, None, self.nesting))
        lik, prior = torch.zeros_like(self.log_q), torch.zeros_like(self.log_q)
        for site in trace.nodes.values():
            if site["type"] == "sample" and not site_is_subsample(site):
                if site["is_observed"]:
                    lik = lik + site_log_prob(site, self.nesting)
                else:
                    prior = prior + site_log_prob(site, self.nesting)
        return lik, prior

    def kl(self) -> Tensor:
        """Per site: the closed form at the sampled values of the earlier sites where the guide
        samples every latent the model drew before this site first (then those values are given
        when the site is drawn, and the closed form is the conditional expectation of the Monte
        Carlo term); the Monte Carlo term log q - log p elsewhere, e.g. for a bottom-up guide whose
        site's prior depends on a latent the guide samples later, where the closed form at that
        later sample would be biased."""
        total = torch.zeros_like(self.log_q)
        guide_order = list(self.site_log_q)
        model_order = [name for name in self.model_trace.nodes if name in self.site_log_p]
        for name, lq in self.site_log_q.items():
            g, m = self.guide_trace.nodes[name], self.model_trace.nodes[name]
            given = set(guide_order[: guide_order.index(name)])
            try:
                if not set(model_order[: model_order.index(name)]) <= given:
                    raise NotImplementedError
                kl = kl_divergence(g["fn"], m["fn"])
            except NotImplementedError:
                total = total + lq - self.site_log_p[name]
                continue
            site = {**g, "fn": _Constant(kl), "value": None, "args": (), "kwargs": {}}
            total = total + site_log_prob(site, self.nesting)
        return total

    def non_reparameterized(self) -> list[str]:
        return [name for name, site in self._sites.items() if not site["fn"].has_rsample]


class _Constant:
    """Stands in for a distribution whose log_prob is a precomputed tensor (a site's KL)."""

    def __init__(self, value: Tensor) -> None:
        self.value = value

    def log_prob(self, _value: Any) -> Tensor:
        return self.value
