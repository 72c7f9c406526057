"""Generalized DReG: doubly reparameterized IWAE gradients in parameters the prior shares with the guide."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ..errors import ConfigError
from .base import register
from .dreg import DReG
from .transport import transport
from .weights import LatentAtLeaf, Leaves, LogWeights, partial_grads


@register("gdreg")
class GDReG(DReG):
    """The IWAE(K) bound with Bauer & Mnih's generalized doubly reparameterized gradient.

    DReG turns the guide's score term sum_k w~_k d log q(z_k) / dphi into a path term. Where the
    PRIOR also depends on a parameter (a VampPrior's encoder and pseudo-inputs, a mixture prior's
    components, a top-down prior that shares a network with the guide), IWAE's gradient keeps
    a second score-like term, beta sum_k w~_k d log p(z_k | parents) / dtheta at fixed z, whose
    variance is large where it cancelled the guide's score term before (on a VampPrior the
    encoder's biases move q and every prior component together). GDReG turns it into a path term
    too, through the prior's transport field v (``transport.py``; Bauer & Mnih 2021, eq. 9), site
    by site, with f_k = beta w~_k:

        E[f_k d log p / dtheta] = E[(f_k (grad_z log q - grad_z log p) + grad_z f_k) . v(z_k)],
        grad_z f_k = beta w~_k (1 - w~_k) grad_z lw'_k,

    all derivatives PARTIAL in the site's value with the other latents held fixed (the draw is
    re-evaluated at leaf copies of its latents: one more pass of model and guide). The rest is
    DReG (alpha = 1). Unbiased for the IWAE gradient in every parameter (tested against IWAE's
    by z-tests); parameters without a known field (a mixture's weights, any other family) keep
    IWAE's term, which is unbiased too. Needs one scale for every site (an importance-weighted bound).

    References: Bauer & Mnih 2021, "Generalized Doubly Reparameterized Gradient Estimators"
    (ICML); Tucker, Lawson, Gu & Maddison 2019, "Doubly Reparameterized Gradient Estimators for
    Monte Carlo Objectives".
    """

    def __init__(self, num_particles: int = 1, **kwargs: Any) -> None:
        if "alpha" in kwargs:
            raise ConfigError(
                "gdreg: no alpha option (it generalizes IWAE-DReG, alpha = 1); use 'dreg' for DReG(alpha)"
            )
        super().__init__(num_particles=num_particles, **kwargs)

    def __repr__(self) -> str:
        return f"GDReG(num_particles={self.num_particles})"

    @property
    def carries_site_scales(self) -> bool:
        return False

    def point_surrogate(self, w: LogWeights, kl_weight: float) -> Tensor:
        w.require_one_scale("gdreg")
        wt = w.log_w(kl_weight).softmax(0).detach()  # [K, B]
        return super().point_surrogate(w, kl_weight) + prior_path(w.at_leaves(), wt, kl_weight)


def prior_path(leaves: Leaves, wt: Tensor, beta: float) -> Tensor:
    """Per data point ``[B]``, value 0: for each latent site whose prior has a transport field,
    removes beta sum_k w~_k log p(z_k | parents) at fixed z in the transported parameters and adds
    the path term stop(g_k) . v(z_k) in its place (see :class:`GDReG`)."""
    total = wt.new_zeros(wt.shape[-1:])
    fields = {name: transport(site.prior, site.value) for name, site in leaves.sites.items()}
    moving = [name for name, moved in fields.items() if moved is not None]
    if not moving:  # a prior without parameters (N(0, I)): DReG as it is, no derivative at the leaves
        return total
    model = leaves.log_lik.sum() + beta * leaves.log_prior.sum()
    grads_model = partial_grads(model, [leaves.sites[name].value for name in moving])
    for name, grad_model in zip(moving, grads_model, strict=True):
        site, moved = leaves.sites[name], fields[name]
        assert moved is not None
        direct = moved.direct.log_prob(site.value)  # [K, *inner, B]
        grad_p = partial_grads(direct.sum(), [site.value])[0]
        grad_q = leaves.grad_log_q[name]
        grad_lw = grad_model - beta * grad_q
        event_dim = site.value.dim() - direct.dim()
        w_ = _per_element(wt, site.value, event_dim)
        g = beta * (w_ * (grad_q - grad_p) + w_ * (1.0 - w_) * grad_lw)
        path = g.detach() * moved.view  # [K, *inner, B, *event]
        term = _to_points(site, path.sum(tuple(range(-event_dim, 0))) if event_dim else path)
        term = term - beta * wt * _to_points(site, direct)
        total = total + (term - term.detach()).sum(0)
    return total


def _per_element(wt: Tensor, value: Tensor, event_dim: int) -> Tensor:
    """w~ ``[K, B]`` shaped to broadcast against a latent ``[K, *inner, B, *event]``."""
    k, b = wt.shape
    inner = value.dim() - event_dim - 2
    return wt.reshape((k,) + (1,) * inner + (b,) + (1,) * event_dim)


def _to_points(site: LatentAtLeaf, batch: Tensor) -> Tensor:
    """A per-element term of the site's batch shape ``[K, *inner, B]``, masked as the site is and
    summed over the inner plates: ``[K, B]``."""
    if site.mask is not None:
        batch = batch * site.mask
    return batch.reshape(batch.shape[0], -1, batch.shape[-1]).sum(1) if batch.dim() > 2 else batch
