"""Log densities at any latent values: the initial distribution and p(x, z), for annealing.

Annealed importance sampling moves particles through intermediate densities
f_beta(z) = q0(z | x)^(1 - beta) p(x, z)^beta, so it needs log q0 and log p(x, z) (and their
gradients in z) at latent values that neither the guide nor the model drew. :func:`densities`
gives them for any model/guide pair the estimators accept, as one flat vector a data point:

    u [C, B, D]  (C chains, B data points, D unconstrained latent coordinates)
    at(u) -> (log q0 + log|det J|, log p(x, z) + log|det J|), each [C, B], z = T(u)

where T maps R^D onto each site's support (``torch.distributions.biject_to``), so that HMC can move
freely; the Jacobian term enters both densities, so their difference, the annealing weight, is
that of z. q0 is the guide (``init="guide"``) or the model's prior (``init="prior"``).

Two producers: :class:`DirectDensities` for a model and guide with one latent site that compute
their own densities (pyrovae's VAE; no tracing), :class:`TracedDensities` for any other pair (the
guide and the model replayed at the given values, every pass on the same data points).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import cast

import torch
from pyro import poutine
from pyro.poutine.runtime import InferDict
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import site_is_subsample
from torch import Tensor
from torch.distributions import biject_to
from torch.distributions.transforms import IndependentTransform, Transform, identity_transform

from ..errors import ConfigError, ModelStructureError
from ..estimators.direct import DirectGuide, DirectLogWeights, DirectModel
from ..estimators.fast_path import fast_path
from ..estimators.structure import counted_model_sites, find_data_plate, require_density, site_distribution, site_value
from ..estimators.traced import SubsamplePin, TracedLogWeights, guess_max_plate_nesting, particle_plate, site_log_prob

INITS = ("guide", "prior")


@dataclass(frozen=True)
class _Site:
    """How one latent site's value ``[C, *batch, *event]`` maps to its slice of the flat u."""

    name: str
    transform: Transform | None  # None: the support is all of R^n
    z_shape: tuple[int, ...]  # the site's value: [C, *batch, *event]
    u_shape: tuple[int, ...]  # u's slice with the data dim moved next to the chains: [C, B, ...]
    bdim: int  # where the data dim sits in the site's value
    offset: int
    size: int


def _is_identity(t: Transform) -> bool:
    while isinstance(t, IndependentTransform):
        t = t.base_transform
    return t is identity_transform


def _per_point(lp: Tensor, chains: int, batch: int) -> Tensor:
    """A log term ``[C, *inner, B]`` (inner plates, possibly broadcast) summed to ``[C, B]``."""
    return lp.expand(lp.shape[:-1] + (batch,)).reshape(chains, -1, batch).sum(1) if lp.dim() > 2 else lp


class Densities(ABC):
    """log q0 and log p(x, z) at flat unconstrained latents ``u [C, B, D]`` (module docstring)."""

    def __init__(self, latents: dict[str, Tensor], supports: Mapping[str, object], event_dims: dict[str, int]) -> None:
        sites, offset = [], 0
        chains = batch = 0
        u0 = []
        for name, z in latents.items():
            if getattr(supports[name], "is_discrete", False):
                raise ModelStructureError(
                    f"latent site {name!r} is discrete: annealed importance sampling moves latents by "
                    "Hamiltonian Monte Carlo and needs continuous ones (use method='is')"
                )
            t = biject_to(supports[name])
            t = None if _is_identity(t) else t
            u = z if t is None else t.inv(z)
            bdim = z.dim() - event_dims[name] - 1
            moved = u.movedim(bdim, 1)  # [C, B, ...]
            chains, batch = moved.shape[:2]
            size = moved[0, 0].numel()
            sites.append(_Site(name, t, tuple(z.shape), tuple(moved.shape), bdim, offset, size))
            u0.append(moved.reshape(chains, batch, size))
            offset += size
        self.sites, self.chains, self.batch = sites, chains, batch
        self.initial = torch.cat(u0, dim=-1).detach()  # [C, B, D]

    def flatten(self, latents: dict[str, Tensor]) -> Tensor:
        """The flat ``u`` ``[C, B, D]`` of latent values by site, each broadcast to the C chains
        (a value without the chain dimension, e.g. one exact posterior draw, starts every chain)."""
        pieces = []
        for s in self.sites:
            z = latents[s.name].to(self.initial).expand(s.z_shape)
            u = z if s.transform is None else s.transform.inv(z)
            pieces.append(u.movedim(s.bdim, 1).reshape(self.chains, self.batch, s.size))
        return torch.cat(pieces, dim=-1)

    def latents(self, u: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """The latents at flat ``u`` ``[C, B, D]``, by site, and log|det dz/du| ``[C, B]``."""
        values, ldj = {}, u.new_zeros(u.shape[:2])
        for s in self.sites:
            piece = u[..., s.offset : s.offset + s.size].reshape(s.u_shape).movedim(1, s.bdim)
            if s.transform is None:
                values[s.name] = piece
            else:
                z = s.transform(piece)
                values[s.name] = z
                ldj = ldj + _per_point(s.transform.log_abs_det_jacobian(piece, z), self.chains, self.batch)
        return values, ldj

    def at(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """(log q0(z) + log|J|, log p(x, z) + log|J|) at z = T(u), each ``[C, B]``."""
        values, ldj = self.latents(u)
        log_q0, log_joint = self._log_densities(values)
        return log_q0 + ldj, log_joint + ldj

    @abstractmethod
    def _log_densities(self, latents: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """(log q0, log p(x, z)) at the latents by site, each ``[C, B]``, unscaled."""


class DirectDensities(Densities):
    """A model and guide with one latent site ``z`` that compute their own densities
    (:class:`~pyrovae.estimators.direct.DirectModel`, ``DirectGuide``): q0 is ``guide.distribution(x)``
    or ``model.prior(B)``, p(x, z) is ``model.log_prob_terms(x, z)``, nothing traced."""

    def __init__(self, model: DirectModel, guide: DirectGuide, x: Tensor, num_chains: int, init: str) -> None:
        self.model, self.x, self.init = model, x, init
        with torch.no_grad():  # the initial distribution's parameters, once: no graph to the nets
            self.q0 = guide.distribution(x) if init == "guide" else model.prior(x.shape[0])
            z = self.q0.sample((num_chains,))  # [C, B, z_dim]
        super().__init__({"z": z}, {"z": self.q0.support}, {"z": self.q0.event_dim})

    def _log_densities(self, latents: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        z = latents["z"]
        log_lik, log_prior = self.model.log_prob_terms(self.x, z)
        log_joint = log_lik + log_prior
        return (self.q0.log_prob(z) if self.init == "guide" else log_prior), log_joint


def _value_trace(values: dict[str, Tensor], infer: dict[str, InferDict | None]) -> Trace:
    trace = Trace()
    for name, value in values.items():
        trace.add_node(name, type="sample", is_observed=False, value=value, infer=infer.get(name, {}))
    return trace


class TracedDensities(Densities):
    """Any model/guide pair, by replaying it at the given latent values in a plate of C chains.

    With ``init="guide"`` the chains start from one vectorized draw of the guide (the same checks
    as the estimators': every guide latent is a model site, all in the data plate at dim -1), and
    log q0 is the guide replayed at the values; with ``init="prior"`` they start from the model's
    own draw of its latents and log q0 is their log prior. Every pass runs under one
    :class:`~pyrovae.estimators.SubsamplePin`, so a plate that draws its own subsample scores the
    same data points throughout.
    """

    def __init__(
        self,
        model: Callable,
        guide: Callable,
        args: tuple,
        kwargs: dict,
        num_chains: int,
        init: str,
        max_plate_nesting: int,
        pin: SubsamplePin | None = None,
    ) -> None:
        self.model, self.guide, self.args, self.kwargs, self.init = model, guide, args, kwargs, init
        self.nesting = max_plate_nesting
        self.plate = particle_plate(num_chains, max_plate_nesting)
        self.pin = pin if pin is not None else SubsamplePin()
        with torch.no_grad():
            if init == "guide":
                w = TracedLogWeights(
                    model,
                    guide,
                    args,
                    kwargs,
                    num_particles=num_chains,
                    max_plate_nesting=max_plate_nesting,
                    pin=self.pin,
                )
                w.require_one_scale("annealing")
                sites = {name: w.guide_trace.nodes[name] for name in w.latents}
                require_density(
                    {**sites, **{n: w.guide_trace.nodes[n] for n in w.auxiliary()}},
                    "annealing from the guide",
                    "anneal from the prior (init='prior')",
                )
            else:
                with self.pin:
                    trace = poutine.trace(self.plate(model)).get_trace(*args, **kwargs)
                model_sites = counted_model_sites(trace)
                find_data_plate(model_sites, {})
                sites = {name: site for name, site in model_sites.items() if not site["is_observed"]}
        if not sites:
            raise ModelStructureError("the model has no latent site to anneal")
        self.infer = {name: site["infer"] for name, site in sites.items()}
        latents = {name: site_value(site).detach() for name, site in sites.items()}
        supports = {name: site_distribution(site).support for name, site in sites.items()}
        event_dims = {name: site_distribution(site).event_dim for name, site in sites.items()}
        super().__init__(latents, supports, event_dims)

    def _replay(self, fn: Callable, latents: dict[str, Tensor]) -> Trace:
        with self.pin:
            return poutine.trace(poutine.replay(self.plate(fn), trace=_value_trace(latents, self.infer))).get_trace(
                *self.args, **self.kwargs
            )

    def _log_densities(self, latents: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        shape = (self.chains, self.batch)
        log_prior = log_lik = torch.zeros(shape, dtype=self.initial.dtype, device=self.initial.device)
        for name, site in self._replay(self.model, latents).nodes.items():
            if site["type"] != "sample" or site_is_subsample(site):
                continue
            lp = site_log_prob(site, self.nesting)
            if site["is_observed"]:
                log_lik = log_lik + lp
            elif name in latents:
                log_prior = log_prior + lp
            else:
                raise ModelStructureError(
                    f"the model samples {name!r}, which the initial distribution does not: every latent "
                    "site of the model needs a guide site of the same name"
                )
        if self.init == "prior":
            return log_prior.expand(shape), (log_prior + log_lik).expand(shape)
        guide_trace = self._replay(self.guide, latents)
        log_q = torch.zeros(shape, dtype=self.initial.dtype, device=self.initial.device)
        for name in latents:
            log_q = log_q + site_log_prob(guide_trace.nodes[name], self.nesting)
        return log_q.expand(shape), (log_prior + log_lik).expand(shape)


def densities(
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict,
    *,
    num_chains: int,
    init: str = "guide",
    max_plate_nesting: int | None = None,
    pin: SubsamplePin | None = None,
) -> Densities:
    """The densities of ``model`` and ``guide`` at ``args``, with ``num_chains`` initial draws of q0
    (``init``: "guide" or "prior"): the direct producer where the pair offers it, tracing elsewhere."""
    if init not in INITS:
        raise ConfigError(f"unknown initial distribution {init!r}; valid: {', '.join(INITS)}")
    if fast_path(model, guide, args, kwargs) is DirectLogWeights:  # its plate takes no pin
        # fast_path found the DirectModel and DirectGuide methods on the pair
        return DirectDensities(cast(DirectModel, model), cast(DirectGuide, guide), args[0], num_chains, init)
    if max_plate_nesting is None:
        max_plate_nesting = guess_max_plate_nesting(model, guide, args, kwargs)
    return TracedDensities(model, guide, args, kwargs, num_chains, init, max_plate_nesting, pin)
