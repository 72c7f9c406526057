"""Log importance weights per particle and data point: the one piece every estimator shares.

For a model p(x, z) and guide q(z | x) whose data points sit in a ``pyro.plate`` at dim -1
enclosing every sample site, a draw of K particles gives, per particle k and data point i
(shape ``[K, B]``):

    lw_ki = log p(x_i | z_ki) + log p(z_ki) - log q(z_ki | x_i)

from UNSCALED log probabilities, with the mini-batch scale N / B kept apart so that estimators
apply it outside any logsumexp. :class:`LogWeights` is the interface every estimator reads; it has
three producers: :class:`~pyrovae.estimators.traced.TracedLogWeights` (any Pyro model and guide,
by tracing), :class:`~pyrovae.estimators.direct.DirectLogWeights` (a model and guide with one
latent site that compute their own log densities without tracing, as pyrovae's VAE does) and
:class:`~pyrovae.estimators.layered.LayeredLogWeights` (the same for several sites in layers, as
pyrovae's hierarchical family does).
:func:`pyrovae.estimators.draw.draw` picks one.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.distributions import Distribution

from ..errors import ModelStructureError
from .structure import refuse_uneven_scales


class LatentAtLeaf(NamedTuple):
    """One latent site of a draw re-evaluated at a leaf copy of its value (see :class:`Leaves`)."""

    value: Tensor  # the sampled value, detached, requiring grad: [K, *inner, B, *event]
    prior: Distribution  # the model's p(z_s | parents), parents at their leaves
    mask: Tensor | None  # the model site's mask, if any


class Leaves(NamedTuple):
    """A draw's densities at leaf copies of its latents, so that autograd gives PARTIAL
    derivatives in each z_s with the other latents held fixed (in the draw itself a later site is
    a function of earlier ones). ``log_lik`` and ``log_prior`` (summed over sites) ``[K, B]`` (or
    broadcastable) at the leaves; ``grad_log_q[s]`` = d log q(z) / dz_s at the leaves, no graph."""

    sites: dict[str, LatentAtLeaf]
    log_lik: Tensor
    log_prior: Tensor
    grad_log_q: dict[str, Tensor]


def partial_grads(output: Tensor, leaves: list[Tensor]) -> list[Tensor]:
    """d output / d leaf for each leaf, zeros where the output does not depend on it, no graph."""
    if not leaves:
        return []
    if not output.requires_grad:
        return [torch.zeros_like(v) for v in leaves]
    grads = torch.autograd.grad(output, leaves, allow_unused=True, retain_graph=True)
    return [torch.zeros_like(v) if g is None else g for v, g in zip(leaves, grads, strict=True)]


class LogWeights(ABC):
    """The log weights of one draw of K particles for a batch of B data points.

    Attributes (all ``[K, B]``): ``log_lik`` (observed model sites), ``log_prior`` (latent model
    sites), ``log_q`` (latent guide sites), ``log_q_score`` (the guide sites that cannot be
    reparameterized, unscaled: the score of the density they were drawn from; None when every
    site is reparameterized) and ``log_q_unreparam`` (the same sites as they enter ``log_q``, with
    any per-site scale).
    ``scale`` is the mini-batch factor N / B (times any ``poutine.scale`` that every site shares: a
    number, or one value a data point ``[B]``). Where sites are scaled differently (a
    ``poutine.scale`` around part of the model), each term carries its site's scale relative to
    ``scale`` and ``uneven_scales`` says where, for :meth:`require_one_scale`. ``latents`` the
    sampled values by site name. A producer built with ``grad_scale_latents`` hands the model a
    view of each latent that carries a gradient hook (:meth:`scale_latent_grads`).
    """

    def __init__(
        self,
        log_lik: Tensor,
        log_prior: Tensor,
        log_q: Tensor,
        scale: float | Tensor,
        *,
        latents: dict[str, Tensor],
        log_q_score: Tensor | None = None,
        log_q_unreparam: Tensor | None = None,
        grad_scale: dict[str, Any] | None = None,
        uneven_scales: str = "",
    ) -> None:
        self.log_lik, self.log_prior, self.log_q = log_lik, log_prior, log_q
        self.scale = scale
        self.latents = latents
        self.log_q_score = log_q_score
        self.log_q_unreparam = log_q_score if log_q_unreparam is None else log_q_unreparam
        self._grad_scale = grad_scale
        self.uneven_scales = uneven_scales

    @property
    def num_particles(self) -> int:
        return self.log_q.shape[0]

    def log_w(self, kl_weight: float | Tensor = 1.0) -> Tensor:
        """lw = log p(x | z) + kl_weight * (log p(z) - log q(z | x)); ``[K, B]``."""
        if isinstance(kl_weight, (int, float)) and kl_weight == 1.0:
            return self.log_lik + self.log_prior - self.log_q
        return self.log_lik + kl_weight * (self.log_prior - self.log_q)

    def score_term(self, kl_weight: float | Tensor = 1.0) -> Tensor:
        """``[K, B]``: sum over the sites that cannot be reparameterized of stop(learning signal) *
        log q, the signal each particle's log weight (at ``kl_weight``). A producer with plates
        inside the data plate restricts each site's signal to the terms of its own plates."""
        assert self.log_q_score is not None, "every guide site is reparameterized"
        return self.log_w(kl_weight).detach() * self.log_q_score

    @abstractmethod
    def log_q_stop(self) -> Tensor:
        """log q(z | x) with the guide's parameters stopped and the path through z kept.

        Its value is ``log_q``; its gradient is d log q / dz * dz / dphi only (the score term
        d log q / dphi at fixed z is dropped), as sticking-the-landing and DReG need.
        """

    @abstractmethod
    def model_at_detached(self) -> tuple[Tensor, Tensor]:
        """(log p(x | stop z), log p(stop z)), ``[K, B]`` each: the model run again on the same
        particles (and the same data points) with their path to the guide cut, so a term built
        from them reaches the model's parameters only."""

    @abstractmethod
    def kl(self) -> Tensor:
        """KL(q(z | x) || p(z)) per particle and point, ``[K, B]``: closed form per site where
        torch knows it, the Monte Carlo term log q - log p elsewhere."""

    @abstractmethod
    def non_reparameterized(self) -> list[str]:
        """The guide's latent sites that cannot be reparameterized."""

    def at_leaves(self) -> Leaves:
        """The draw's densities at leaf copies of its latents (generalized DReG needs partial
        derivatives); producers that can replay their model and guide at given values override it."""
        raise ModelStructureError(
            f"{type(self).__name__} cannot re-evaluate its model and guide at given latents, which 'gdreg' needs"
        )

    def scale_latent_grads(self, factor: Tensor) -> None:
        """Multiply the gradient that reaches the latents through the MODEL by ``factor [K, B]``.

        Only the model's view of each z carries the hook, so with several dependent latent
        sites the factor applies once per path, never compounded along the guide's chain.
        """
        if self._grad_scale is None:
            raise ModelStructureError("these log weights were built without latent grad scaling")
        self._grad_scale["factor"] = factor.detach()

    def require_one_scale(self, user: str) -> None:
        """Refuse per-site scales in one line: ``user`` needs an importance-weighted bound."""
        refuse_uneven_scales(self.uneven_scales, user)

    def require_reparam(self, estimator: str) -> None:
        bad = self.non_reparameterized()
        if bad:
            raise ModelStructureError(
                f"estimator {estimator!r} needs reparameterized guide sites; "
                f"{', '.join(map(repr, bad))} cannot be reparameterized (use 'elbo', 'iwae' or "
                "'vimco', which add score-function terms, or 'rws')"
            )


def scale_hook(holder: dict[str, Any], event_dim: int, nesting: int) -> Callable[[Tensor], Tensor]:
    """A gradient hook for a latent ``[K, *inner, B, *event]`` that multiplies the gradient by
    ``holder["factor"]`` ``[K, B]`` once it is set (see :meth:`LogWeights.scale_latent_grads`)."""

    def hook(grad: Tensor) -> Tensor:
        factor = holder.get("factor")
        if factor is None:
            return grad
        k, b = factor.shape
        shape = (k,) + (1,) * (nesting - 1) + (b,) + (1,) * event_dim  # [K, *inner, B, *event]
        return grad * factor.reshape(shape)

    return hook


def hooked_view(value: Tensor, holder: dict[str, Any] | None, event_dim: int, nesting: int) -> Tensor:
    """The model's own view of a latent, carrying the grad-scale hook when ``holder`` is given."""
    if holder is None or not value.requires_grad:
        return value
    view = value.view_as(value)
    view.register_hook(scale_hook(holder, event_dim, nesting))
    return view


def logmeanexp(x: Tensor, dim: int = 0) -> Tensor:
    """log (1/K) sum_k exp(x_k) along ``dim``."""
    return x.logsumexp(dim=dim) - math.log(x.shape[dim])
