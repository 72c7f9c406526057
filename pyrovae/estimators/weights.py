"""Log importance weights per particle and data point: the one piece every estimator shares.

For a model p(x, z) and guide q(z | x) whose data points sit in a ``pyro.plate`` at dim -1
enclosing every sample site, :func:`log_weights` draws K particles in a vectorized particle
plate and returns, per particle k and data point i (shape ``[K, B]``):

    lw_ki = log p(x_i | z_ki) + log p(z_ki) - log q(z_ki | x_i)

from UNSCALED log probabilities, with the mini-batch scale N / B kept apart so that estimators
apply it outside any logsumexp. Only the guide's unobserved sites are latents; observed guide
sites are conditioning and add nothing to log q.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import site_is_subsample
from torch import Tensor
from torch.distributions import kl_divergence

from ..errors import ModelStructureError

PARTICLE_PLATE = "num_particles_vectorized"


def particle_plate(num_particles: int, max_plate_nesting: int) -> pyro.plate:
    """The outermost plate of K particles, left of every plate of the model."""
    return pyro.plate(PARTICLE_PLATE, num_particles, dim=-(max_plate_nesting + 1))


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
    with _fork_rng(tensors), poutine.block(), torch.no_grad():
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


def _site_log_prob(site: dict, nesting: int) -> Tensor:
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


def _check_in_data_plate(site: dict, role: str) -> None:
    if not any(f.dim == -1 for f in site["cond_indep_stack"]):
        raise ModelStructureError(
            f"{role} site {site['name']!r} is not inside a plate at dim=-1: pyrovae's "
            "estimators need the data points in a pyro.plate(..., dim=-1) that encloses "
            "every sample site"
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


class LogWeights:
    """The log weights of one draw of K particles for a batch of B data points.

    Attributes (all ``[K, B]``): ``log_lik`` (observed model sites), ``log_prior`` (latent model
    sites), ``log_q`` (latent guide sites), and ``log_q_score`` (the guide sites that cannot be
    reparameterized, for score-function terms; None when every site is reparameterized).
    ``scale`` is the mini-batch factor N / B (times any ``poutine.scale``); ``latents`` the
    sampled values by site name. Built by tracing (:func:`log_weights`) or, for pyrovae's own
    VAE, directly (:mod:`pyrovae.estimators.direct`).
    """

    def __init__(
        self,
        log_lik: Tensor,
        log_prior: Tensor,
        log_q: Tensor,
        scale: float | Tensor,
        *,
        log_q_score: Tensor | None = None,
        site_log_q: dict[str, Tensor] | None = None,
        site_log_p: dict[str, Tensor] | None = None,
        guide_trace: Trace | None = None,
        model_trace: Trace | None = None,
        log_q_stop_fn: Callable[[], Tensor] | None = None,
        grad_scale: dict[str, Any] | None = None,
        nesting: int = 1,
        kl_fn: Callable[[], Tensor] | None = None,
        latents: dict[str, Tensor] | None = None,
        model_at_detached_fn: Callable[[], tuple[Tensor, Tensor]] | None = None,
    ) -> None:
        self.log_lik, self.log_prior, self.log_q = log_lik, log_prior, log_q
        self.scale = scale
        self.log_q_score = log_q_score
        self.site_log_q = site_log_q or {}
        self.site_log_p = site_log_p or {}
        self.guide_trace, self.model_trace = guide_trace, model_trace
        self._log_q_stop_fn = log_q_stop_fn
        self._grad_scale = grad_scale
        self.nesting = nesting
        self._kl_fn = kl_fn
        self._model_at_detached_fn = model_at_detached_fn
        self.latents = latents if latents is not None else {}

    @property
    def num_particles(self) -> int:
        return self.log_q.shape[0]

    def log_w(self, kl_weight: float | Tensor = 1.0) -> Tensor:
        """lw = log p(x | z) + kl_weight * (log p(z) - log q(z | x)); ``[K, B]``."""
        if isinstance(kl_weight, (int, float)) and kl_weight == 1.0:
            return self.log_lik + self.log_prior - self.log_q
        return self.log_lik + kl_weight * (self.log_prior - self.log_q)

    def log_q_stop(self) -> Tensor:
        """log q(z | x) with the guide's parameters stopped and the path through z kept.

        Its value is ``log_q``; its gradient is d log q / dz * dz / dphi only (the score term
        d log q / dphi at fixed z is dropped), as sticking-the-landing and DReG need.
        """
        if self._log_q_stop_fn is None:
            raise ModelStructureError("these log weights were built without a stop-gradient guide")
        return self._log_q_stop_fn()

    def model_at_detached(self) -> tuple[Tensor, Tensor]:
        """(log p(x | stop z), log p(stop z)), ``[K, B]`` each: the model run again on the same
        particles with their path to the guide cut, so a term built from them reaches the model's
        parameters only."""
        if self._model_at_detached_fn is None:
            raise ModelStructureError("these log weights cannot re-run the model")
        return self._model_at_detached_fn()

    def scale_latent_grads(self, factor: Tensor) -> None:
        """Multiply the gradient that reaches the latents through the MODEL by ``factor [K, B]``.

        Only the model's view of each z carries the hook, so with several dependent latent
        sites the factor applies once per path, never compounded along the guide's chain.
        """
        if self._grad_scale is None:
            raise ModelStructureError("these log weights were built without latent grad scaling")
        self._grad_scale["factor"] = factor.detach()

    def kl(self) -> Tensor:
        """KL(q(z | x) || p(z)) per particle and point, ``[K, B]``: closed form per site where
        torch knows it, the Monte Carlo term log q - log p elsewhere."""
        if self._kl_fn is not None:
            return self._kl_fn()
        assert self.guide_trace is not None and self.model_trace is not None
        total = torch.zeros_like(self.log_q)
        for name, lq in self.site_log_q.items():
            g, m = self.guide_trace.nodes[name], self.model_trace.nodes[name]
            try:
                kl = kl_divergence(g["fn"], m["fn"])
            except NotImplementedError:
                total = total + lq - self.site_log_p[name]
                continue
            site = {**g, "fn": _Constant(kl), "value": None, "args": (), "kwargs": {}}
            total = total + _site_log_prob(site, self.nesting)
        return total

    def require_reparam(self, estimator: str) -> None:
        if self.log_q_score is not None:
            bad = [
                n
                for n, s in self.guide_trace.nodes.items()  # type: ignore[union-attr]
                if n in self.site_log_q and not s["fn"].has_rsample
            ]
            raise ModelStructureError(
                f"estimator {estimator!r} needs reparameterized guide sites; "
                f"{', '.join(map(repr, bad))} cannot be reparameterized (use 'elbo' or 'iwae', "
                "which add score-function terms)"
            )


class _Constant:
    """Stands in for a distribution whose log_prob is a precomputed tensor (a site's KL)."""

    def __init__(self, value: Tensor) -> None:
        self.value = value

    def log_prob(self, _value: Any) -> Tensor:
        return self.value


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
        _check_in_data_plate(site, "guide")
        latents[name] = site
    return latents


def _values_for_model(latents: dict[str, dict], detach: bool, grad_scale: dict[str, Any] | None, nesting: int) -> Trace:
    """A trace for ``poutine.replay`` holding the values the model sees."""
    trace = Trace()
    for name, site in latents.items():
        value = site["value"].detach() if detach else site["value"]
        if grad_scale is not None and value.requires_grad:
            value = value.view_as(value)  # the model's own view of z, so the hook is the model's
            value.register_hook(_scale_hook(grad_scale, site["fn"].event_dim, nesting))
        trace.add_node(name, type="sample", is_observed=False, value=value, infer=site["infer"])
    return trace


def _scale_hook(holder: dict[str, Any], event_dim: int, nesting: int) -> Callable:
    def hook(grad: Tensor) -> Tensor:
        factor = holder.get("factor")
        if factor is None:
            return grad
        k, b = factor.shape
        shape = (k,) + (1,) * (nesting - 1) + (b,) + (1,) * event_dim  # [K, *inner, B, *event]
        return grad * factor.reshape(shape)

    return hook


def log_weights(
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict,
    *,
    num_particles: int,
    max_plate_nesting: int,
    detach_latents: bool = False,
    stop_guide: bool = False,
    grad_scale_latents: bool = False,
) -> LogWeights:
    """Draw ``num_particles`` particles and return their :class:`LogWeights`.

    Args:
        detach_latents: the model and log q see z with its path to the guide cut (RWS).
        stop_guide: make :meth:`LogWeights.log_q_stop` available (STL, DReG).
        grad_scale_latents: make :meth:`LogWeights.scale_latent_grads` available (DReG).
    """
    nesting = max_plate_nesting
    if nesting < 1:
        raise ModelStructureError(
            "the model has no plate: pyrovae's estimators need the data points in a "
            "pyro.plate(..., dim=-1) that encloses every sample site"
        )
    plate = particle_plate(num_particles, nesting)
    guide_trace = poutine.trace(plate(guide)).get_trace(*args, **kwargs)
    latents = _latent_sites(guide_trace)
    grad_scale: dict[str, Any] | None = {} if grad_scale_latents else None
    replay_trace = (
        _values_for_model(latents, detach_latents, grad_scale, nesting)
        if detach_latents or grad_scale is not None
        else guide_trace
    )
    model_trace = poutine.trace(poutine.replay(plate(model), trace=replay_trace)).get_trace(*args, **kwargs)

    scale: Any = None
    first = next(iter(latents.values()), None)
    like = (
        first["value"]
        if first is not None
        else next(s["value"] for s in model_trace.nodes.values() if s["type"] == "sample")
    )
    zero = like.new_zeros(())
    log_lik: Tensor = zero
    log_prior: Tensor = zero
    site_log_p: dict[str, Tensor] = {}
    for name, site in model_trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        _check_in_data_plate(site, "model")
        scale = _check_scale(site, scale)
        if site["is_observed"]:
            if name in latents:
                raise ModelStructureError(f"site {name!r} is sampled by the guide but observed in the model")
            log_lik = log_lik + _site_log_prob(site, nesting)
        else:
            if name not in latents:
                raise ModelStructureError(
                    f"the model samples {name!r} but the guide does not: every latent site of "
                    "the model needs a guide site of the same name"
                )
            site_log_p[name] = _site_log_prob(site, nesting)
            log_prior = log_prior + site_log_p[name]
    missing = set(latents) - set(site_log_p)
    if missing:
        raise ModelStructureError(
            f"the guide samples {', '.join(map(repr, sorted(missing)))} which the model does "
            "not: every guide latent needs a model site of the same name"
        )

    log_q: Tensor = zero
    log_q_score: Tensor | None = None
    site_log_q: dict[str, Tensor] = {}
    for name, site in latents.items():
        scale = _check_scale(site, scale)
        if detach_latents:
            site = {**site, "value": site["value"].detach()}
        site_log_q[name] = _site_log_prob(site, nesting)
        log_q = log_q + site_log_q[name]
        if not site["fn"].has_rsample and not detach_latents:
            log_q_score = site_log_q[name] + (0 if log_q_score is None else log_q_score)

    batch = _batch_size(model_trace, guide_trace)
    shape = (num_particles, batch)
    log_lik, log_prior, log_q = (t.expand(shape) for t in (log_lik, log_prior, log_q))

    log_q_stop_fn = None
    if stop_guide:
        log_q_stop_fn = _log_q_stop_fn(guide, args, kwargs, plate, latents, log_q, nesting)

    def model_at_detached() -> tuple[Tensor, Tensor]:
        detached = _values_for_model(latents, True, None, nesting)
        tr = poutine.trace(poutine.replay(plate(model), trace=detached)).get_trace(*args, **kwargs)
        lik, prior = torch.zeros_like(log_q), torch.zeros_like(log_q)
        for site in tr.nodes.values():
            if site["type"] == "sample" and not site_is_subsample(site):
                if site["is_observed"]:
                    lik = lik + _site_log_prob(site, nesting)
                else:
                    prior = prior + _site_log_prob(site, nesting)
        return lik, prior

    return LogWeights(
        log_lik, log_prior, log_q, 1.0 if scale is None else scale,
        log_q_score=None if log_q_score is None else log_q_score.expand(shape),
        site_log_q=site_log_q, site_log_p=site_log_p,
        guide_trace=guide_trace, model_trace=model_trace,
        log_q_stop_fn=log_q_stop_fn, grad_scale=grad_scale, nesting=nesting,
        latents={name: site["value"] for name, site in latents.items()},
        model_at_detached_fn=model_at_detached,
    )  # fmt: skip


def _batch_size(*traces: Trace) -> int:
    for trace in traces:
        for site in trace.nodes.values():
            if site["type"] == "sample" and not site_is_subsample(site):
                for f in site["cond_indep_stack"]:
                    if f.dim == -1:
                        return int(f.size)
    raise ModelStructureError("no sample site inside a plate at dim=-1")


def _log_q_stop_fn(
    guide: Callable,
    args: tuple,
    kwargs: dict,
    plate: pyro.plate,
    latents: dict[str, dict],
    log_q: Tensor,
    nesting: int,
) -> Callable[[], Tensor]:
    """log q_stop(z) = log q(z) - log q(stop z) + stop(log q(stop z)).

    log q(stop z), evaluated with every latent detached, carries exactly the direct gradient
    d log q / dphi at fixed z; subtracting it leaves the path terms. With one latent site its
    distribution does not depend on z and is reused; with several, the guide is replayed at the
    detached values so that later sites see stopped parents.
    """

    def compute() -> Tensor:
        for site in latents.values():
            if not site["fn"].has_rsample:
                raise ModelStructureError(
                    f"guide site {site['name']!r} cannot be reparameterized: the path "
                    "derivative that STL and DReG use does not exist for it"
                )
        if len(latents) == 1:
            sites = [{**s, "value": s["value"].detach()} for s in latents.values()]
        else:
            detached = Trace()
            for name, site in latents.items():
                detached.add_node(
                    name, type="sample", is_observed=False, value=site["value"].detach(),
                    infer=site["infer"],
                )  # fmt: skip
            replayed = poutine.trace(poutine.replay(plate(guide), trace=detached)).get_trace(*args, **kwargs)
            sites = [replayed.nodes[name] for name in latents]
        direct = torch.zeros_like(log_q)
        for site in sites:
            direct = direct + _site_log_prob(site, nesting)
        return log_q - direct + direct.detach()

    return compute


def logmeanexp(x: Tensor, dim: int = 0) -> Tensor:
    """log (1/K) sum_k exp(x_k) along ``dim``."""
    return torch.logsumexp(x, dim=dim) - math.log(x.shape[dim])
