"""PIWAE: the model trained on IWAE(M*K), the guide on MIWAE(M, K)."""

from __future__ import annotations

from torch import Tensor

from .base import path_surrogate, register
from .miwae import GroupedParticles, grouped
from .weights import LogWeights, logmeanexp


@register("piwae")
class PIWAE(GroupedParticles):
    """Partially importance weighted: theta ascends IWAE(M*K), phi ascends MIWAE(M, K).

    ``loss`` reports IWAE(M*K), the bound the model is trained on. One surrogate carries both:
    S = sum_j stop(v_j) [log p(x, z_j) - log q(z_j | x)] + sum_j stop(w~_j - v_j) log p(x, stop z_j),
    where w~ are the weights over all M*K particles and v_j is z_j's weight within its group / M
    (MIWAE's weights). The first term is MIWAE's reparameterized gradient for both; the second,
    with the path to the guide cut (one more run of the model), moves the model's gradient to
    IWAE(M*K)'s without touching the guide's. (Scaling the model's gradient into z by
    v_j / w~_j instead would need 0 * inf when a whole group's weight underflows.)

    References: Rainforth et al. 2018, "Tighter Variational Bounds are Not Necessarily Better".
    """

    @property
    def unbiased_gradient(self) -> bool:
        return False  # the guide ascends MIWAE(M, K), not the IWAE(M*K) it reports

    def point_bound(self, w: LogWeights, kl_weight: float = 1.0) -> Tensor:
        return logmeanexp(w.log_w(kl_weight), 0)

    def point_surrogate(self, w: LogWeights, kl_weight: float) -> Tensor:
        lw = w.log_w(kl_weight).detach()  # [M*K, B]
        m = self.num_groups
        a = lw.softmax(0)  # IWAE(M*K) weights
        v = grouped(lw, m).softmax(1).reshape(lw.shape) / m  # MIWAE(M, K) weights
        # phi and theta both as MIWAE, then theta moved to IWAE(M*K) by a term at stopped z
        miwae = path_surrogate(w, v, v, kl_weight, stop_q=False)
        lik, prior = w.model_at_detached()
        return miwae + ((a - v) * (lik + kl_weight * prior)).sum(0)
