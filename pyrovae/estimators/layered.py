"""The fast path for several latent sites: log weights of a layered model and guide, untraced.

A model and guide with latent sites in a fixed order, each site's distribution a function of the
sites before it, may offer those distributions directly (:class:`LayeredModel`,
:class:`LayeredGuide`; pyrovae's ``HierarchicalModel`` and ``HierarchicalGuide`` do):

    guide: for name in guide.sites: z[name] ~ guide.site_distribution(name, x, z)
    model: log p(x, z) = sum_{name in model.sites} log model.site_distribution(name, z, B).log_prob(z[name])
                         + log model.observation(z).log_prob(x)

Their ``forward`` methods sample from these same methods, so this path draws the same random
numbers in the same order as tracing them and computes the same tensors: the producer
:class:`LayeredLogWeights` mirrors :class:`~pyrovae.estimators.traced.TracedLogWeights` site by
site (detached latents for RWS, the model's hooked view of each latent for DReG, log q at stopped
parents, score-function terms for sites that cannot be reparameterized, the closed-form KL where
the traced path takes it). :func:`pyrovae.estimators.fast_path.fast_path` decides when it applies.
"""

from __future__ import annotations

from typing import Any, Protocol, cast

from pyro.distributions import TorchDistribution
from torch import Tensor, nn
from torch.distributions import kl_divergence

from ..errors import ModelStructureError
from ..plates import data_scale, register_module
from .weights import LatentAtLeaf, Leaves, LogWeights, hooked_view, partial_grads


class LayeredModel(Protocol):
    """A Pyro model whose latent sites ``sites`` (in sampling order) and observed site ``x`` all sit
    in the data plate, each distribution given the values of the sites before it."""

    pyro_name: str
    sites: tuple[str, ...]

    def site_distribution(self, name: str, latents: dict[str, Tensor], batch_size: int) -> TorchDistribution:
        """The prior factor of site ``name`` given the earlier sites' values in ``latents``."""
        ...

    def observation(self, latents: dict[str, Tensor]) -> TorchDistribution:
        """p(x | latents)."""
        ...


class LayeredGuide(Protocol):
    """A Pyro guide whose latent sites ``sites`` (in sampling order) each have a distribution given
    the data and the values of the sites before it; the first one has batch ``[B]``."""

    pyro_name: str
    sites: tuple[str, ...]

    def site_distribution(self, name: str, x: Tensor, latents: dict[str, Tensor]) -> TorchDistribution: ...


MODEL_METHODS = ("site_distribution", "observation")
GUIDE_METHODS = ("site_distribution",)


class LayeredLogWeights(LogWeights):
    """:class:`LogWeights` ``[K, B]`` of a :class:`LayeredModel` and :class:`LayeredGuide` at data
    ``x``, without tracing. Flags as for the traced path: ``detach_latents`` (RWS),
    ``grad_scale_latents`` (DReG)."""

    def __init__(
        self,
        model: LayeredModel,
        guide: LayeredGuide,
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
        batch = x.shape[0]
        self.model, self.guide, self.x, self.detached = model, guide, x, detach_latents
        latents: dict[str, Tensor] = {}
        self.q: dict[str, TorchDistribution] = {}
        for name in guide.sites:
            q = guide.site_distribution(name, x, latents)
            sample_shape = (num_particles,) if len(q.batch_shape) == 1 else ()  # the first site: batch [B]
            latents[name] = q.rsample(sample_shape) if q.has_rsample else q.sample(sample_shape)  # [K, B, d]
            self.q[name] = q
        grad_scale: dict[str, Any] | None = {} if grad_scale_latents else None
        seen = {
            n: hooked_view(z.detach() if detach_latents else z, grad_scale, self.q[n].event_dim, 1)
            for n, z in latents.items()
        }
        log_lik, self.site_log_p = self._model_terms(seen)
        log_prior = sum(self.site_log_p.values())
        # with the latents detached, each site's density must see its parents detached too
        q_dists = self._stopped(latents) if detach_latents else self.q
        self.site_log_q = {
            n: q_dists[n].log_prob(latents[n].detach() if detach_latents else latents[n]) for n in guide.sites
        }
        log_q = sum(self.site_log_q.values())
        score = [self.site_log_q[n] for n in guide.sites if not self.q[n].has_rsample and not detach_latents]
        shape = (num_particles, batch)
        log_lik, log_prior, log_q = (t.expand(shape) for t in (log_lik, log_prior, log_q))  # type: ignore[union-attr]
        super().__init__(
            log_lik,
            log_prior,
            log_q,
            data_scale(batch, num_data),
            latents=latents,
            log_q_score=sum(score).expand(shape) if score else None,  # type: ignore[union-attr]
            grad_scale=grad_scale,
        )

    def _model_terms(self, latents: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """log p(x | z) and each latent site's log prior factor at ``latents`` (keeps the factors'
        distributions of the first call, the draw's own, in ``self.p`` for the KL)."""
        if set(self.guide.sites) != set(self.model.sites):
            raise ModelStructureError(
                f"the model's latent sites {list(self.model.sites)} differ from the guide's {list(self.guide.sites)}"
            )
        p = self._priors(latents)
        if not hasattr(self, "p"):
            self.p = p
        site_log_p = {n: d.log_prob(latents[n]) for n, d in p.items()}
        return self.model.observation(latents).log_prob(self.x), site_log_p

    def _priors(self, latents: dict[str, Tensor]) -> dict[str, TorchDistribution]:
        return {n: self.model.site_distribution(n, latents, self.x.shape[0]) for n in self.model.sites}

    def at_leaves(self) -> Leaves:
        leaves = {n: z.detach().requires_grad_() for n, z in self.latents.items()}
        priors = self._priors(leaves)
        log_lik = self.model.observation(leaves).log_prob(self.x)
        log_prior = sum(d.log_prob(leaves[n]) for n, d in priors.items())
        first = self.guide.sites[0]
        q = {n: self.q[n] if n == first else self.guide.site_distribution(n, self.x, leaves) for n in self.guide.sites}
        log_q = sum(d.log_prob(leaves[n]).sum() for n, d in q.items())
        grads = partial_grads(log_q, list(leaves.values()))  # type: ignore[arg-type]
        sites = {n: LatentAtLeaf(z, priors[n], None) for n, z in leaves.items()}
        return Leaves(sites, log_lik, log_prior, dict(zip(leaves, grads, strict=True)))  # type: ignore[arg-type]

    def _stopped(self, latents: dict[str, Tensor] | None = None) -> dict[str, TorchDistribution]:
        """Each guide site's distribution at the detached values of the sites before it (the first
        site's does not depend on them and is reused)."""
        stopped = {n: z.detach() for n, z in (self.latents if latents is None else latents).items()}
        first = self.guide.sites[0]
        return {
            n: self.q[n] if n == first else self.guide.site_distribution(n, self.x, stopped) for n in self.guide.sites
        }

    def log_q_stop(self) -> Tensor:
        self.require_reparam_for_path()
        direct = sum(q.log_prob(self.latents[n].detach()) for n, q in self._stopped().items())
        assert isinstance(direct, Tensor)  # a sum over the guide's sites, of which there is one at least
        return self.log_q - direct + direct.detach()

    def require_reparam_for_path(self) -> None:
        bad = self.non_reparameterized()
        if bad:
            raise ModelStructureError(
                f"guide site {bad[0]!r} cannot be reparameterized: the path derivative that STL "
                "and DReG use does not exist for it"
            )

    def model_at_detached(self) -> tuple[Tensor, Tensor]:
        log_lik, site_log_p = self._model_terms({n: z.detach() for n, z in self.latents.items()})
        return log_lik.expand_as(self.log_q), sum(site_log_p.values()).expand_as(self.log_q)  # type: ignore[union-attr]

    def kl(self) -> Tensor:
        """Per site as the traced path: the closed form where the guide samples every latent the
        model draws before this site before it (the top layer of a bottom-up guide), the Monte
        Carlo term log q - log p elsewhere."""
        total = self.log_q.new_zeros(self.log_q.shape)
        guide_order, model_order = list(self.guide.sites), list(self.model.sites)
        for name in guide_order:
            given = set(guide_order[: guide_order.index(name)])
            try:
                if not set(model_order[: model_order.index(name)]) <= given:
                    raise NotImplementedError
                q, p = self.q[name], self.p[name]
                p = p if p.batch_shape == q.batch_shape else p.expand(q.batch_shape)  # as the particle plate does
                total = total + kl_divergence(q, p)
            except NotImplementedError:
                total = total + self.site_log_q[name] - self.site_log_p[name]
        return total

    def non_reparameterized(self) -> list[str]:
        return [n for n, q in self.q.items() if not q.has_rsample]
