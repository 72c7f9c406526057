"""The fast path: log weights that a model and guide compute themselves, without Pyro's tracing.

A model and guide may offer their log densities directly (:class:`DirectModel`,
:class:`DirectGuide`; pyrovae's ``VAEModel`` and ``VAEGuide`` do): the guide's ``distribution(x)``
is q(z | x) at its one latent site ``z``, and the model's ``log_prob_terms(x, z)`` gives
log p(x | z) and log p(z) from the same ``prior()`` and likelihood its ``forward`` samples from.
The log weights are then one rsample of q, the model's terms and q's log density: the same
tensors the traced path builds, from the same random numbers in the same order, read by every
estimator through the same :class:`~pyrovae.estimators.weights.LogWeights` interface.

Whether a pair takes this path is decided in one place,
:func:`pyrovae.estimators.fast_path.fast_path`.

log q with the guide's parameters stopped (STL, DReG) is log q(z.detach()) in general, which for
a flow means inverting it; a q that knows d log q / dz at its own draw (:class:`ScoresOwnSample`,
as pyrovae's flow guides' q does) gives it from the score instead, with the same value and gradient.
"""

from __future__ import annotations

from typing import Any, Protocol, cast, runtime_checkable

from pyro.distributions import TorchDistribution
from pyro.distributions.util import sum_rightmost
from torch import Tensor, nn
from torch.distributions import kl_divergence

from ..plates import data_scale, register_module
from .weights import LatentAtLeaf, Leaves, LogWeights, hooked_view, partial_grads


class DirectModel(Protocol):
    """A Pyro model p(x, z) = p(z) p(x | z), one latent site ``z`` and one observed site ``x`` in
    the data plate, that computes its own log densities."""

    pyro_name: str

    def prior(self, batch_size: int) -> TorchDistribution:
        """p(z) for ``batch_size`` data points: batch ``[B]``, event ``[z_dim]``."""
        ...

    def log_prob_terms(self, x: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        """(log p(x | z), log p(z)) at latents ``z [K, B, z_dim]``, each ``[K, B]``, unscaled."""
        ...


class DirectGuide(Protocol):
    """A Pyro guide whose one latent site ``z`` is ``distribution(x)``, reparameterized."""

    pyro_name: str

    def distribution(self, x: Tensor) -> TorchDistribution:
        """q(z | x): batch ``[B]``, event ``[z_dim]``."""
        ...


@runtime_checkable
class ScoresOwnSample(Protocol):
    """A q that gives d log q(z) / dz, its parameters stopped, at the value it last rsampled."""

    def score_at_sample(self, value: Tensor) -> Tensor | None:
        """The score ``[*S, *event]`` (no graph) at ``value``, or None if ``value`` is not its last draw."""
        ...


def log_q_stop_by_density(q: TorchDistribution, z: Tensor, log_q: Tensor) -> Tensor:
    """log q_stop(z): value ``log_q`` (= q.log_prob(z)), gradient d log q / dz * dz / dphi only, by
    removing d log q / dphi at fixed z through q.log_prob(z.detach()) (for a flow: an inversion)."""
    direct = q.log_prob(z.detach())  # d log q / dphi at fixed z
    return log_q - direct + direct.detach()


def log_q_stop_by_score(score: Tensor, z: Tensor, log_q: Tensor, event_dim: int) -> Tensor:
    """log q_stop(z) from the score g = d log q / dz at z (parameters stopped): value ``log_q``,
    gradient g * dz / dphi, through the surrogate stop(log q) + g . (z - stop(z))."""
    path = sum_rightmost(score.detach() * z, event_dim)
    return log_q.detach() + (path - path.detach())


MODEL_METHODS = ("prior", "log_prob_terms")
GUIDE_METHODS = ("distribution",)


class DirectLogWeights(LogWeights):
    """:class:`LogWeights` ``[K, B]`` from a :class:`DirectModel` and :class:`DirectGuide` at data
    ``x``, without tracing (see the module docstring). Flags as for the traced path:
    ``detach_latents`` (RWS), ``grad_scale_latents`` (DReG)."""

    def __init__(
        self,
        model: DirectModel,
        guide: DirectGuide,
        x: Tensor,
        num_data: int | None = None,
        *,
        num_particles: int,
        detach_latents: bool = False,
        grad_scale_latents: bool = False,
    ) -> None:
        # as forward does, for SVI's parameter capture (a Protocol cannot say so: the pair are nn.Modules)
        register_module(guide.pyro_name, cast(nn.Module, guide))
        register_module(model.pyro_name, cast(nn.Module, model))
        scale = data_scale(x.shape[0], num_data)
        q = guide.distribution(x)  # batch [B], event [z_dim]
        z = q.rsample((num_particles,))  # [K, B, z_dim]
        z_seen = z.detach() if detach_latents else z
        grad_scale: dict[str, Any] | None = {} if grad_scale_latents else None
        log_lik, log_prior = model.log_prob_terms(x, hooked_view(z_seen, grad_scale, q.event_dim, 1))
        log_q = q.log_prob(z_seen)  # [K, B]
        self.model, self.guide, self.x, self.q = model, guide, x, q
        super().__init__(log_lik, log_prior, log_q, scale, latents={"z": z}, grad_scale=grad_scale)

    def log_q_stop(self) -> Tensor:
        z = self.latents["z"]
        score = self.q.score_at_sample(z) if isinstance(self.q, ScoresOwnSample) else None
        if score is None:
            return log_q_stop_by_density(self.q, z, self.log_q)
        return log_q_stop_by_score(score, z, self.log_q, self.q.event_dim)

    def model_at_detached(self) -> tuple[Tensor, Tensor]:
        return self.model.log_prob_terms(self.x, self.latents["z"].detach())

    def at_leaves(self) -> Leaves:
        z = self.latents["z"]
        leaf = z.detach().requires_grad_()
        log_lik, log_prior = self.model.log_prob_terms(self.x, leaf)
        score = self.q.score_at_sample(z) if isinstance(self.q, ScoresOwnSample) else None
        if score is None:
            score = partial_grads(self.q.log_prob(leaf).sum(), [leaf])[0]
        site = LatentAtLeaf(leaf, self.model.prior(self.x.shape[0]), None)
        return Leaves({"z": site}, log_lik, log_prior, {"z": score.detach()})

    def kl(self) -> Tensor:
        try:
            kl = kl_divergence(self.q, self.model.prior(self.x.shape[0]))  # [B]
        except NotImplementedError:
            return self.log_q - self.log_prior
        return kl.expand_as(self.log_q)

    def non_reparameterized(self) -> list[str]:
        return [] if self.q.has_rsample else ["z"]
