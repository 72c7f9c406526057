"""IWAE with doubly reparameterized gradients."""

from __future__ import annotations

from torch import Tensor

from .base import Estimator, path_surrogate, register
from .weights import LogWeights, logmeanexp


@register("dreg")
class DReG(Estimator):
    """The IWAE(K) bound with the doubly reparameterized gradient.

    theta: sum_k w~_k grad_theta log p(x, z_k), as IWAE. phi: sum_k w~_k^2 (d lw'_k / dz_k)
    (dz_k / dphi), lw'_k = log p(x, z_k) - log q_stop(z_k | x). Unbiased for the IWAE gradient,
    and its guide gradient does not vanish in signal-to-noise as K grows (IWAE's falls like
    K^-1/2); zero variance for phi at the exact posterior.

    Implemented, for guides with any number of latent sites, as
    S = sum_k stop(w~_k) log p(x, z_k) - sum_k stop(w~_k^2) log q_stop(z_k), with the gradient
    that reaches z_k through the model multiplied by w~_k on the model's own view of z_k, so it
    applies once per path and never compounds along a chain of latents.

    References: Tucker, Lawson, Gu & Maddison 2019, "Doubly Reparameterized Gradient Estimators
    for Monte Carlo Objectives".
    """

    needs_grad_scale = True

    @property
    def carries_site_scales(self) -> bool:
        return self.num_particles == 1  # IWAE(1) is the ELBO, DReG(1) its path derivative

    @property
    def estimates(self) -> str:
        return "iwae"

    def point_bound(self, w: LogWeights, kl_weight: float = 1.0) -> Tensor:
        return logmeanexp(w.log_w(kl_weight), 0)

    def point_surrogate(self, w: LogWeights, kl_weight: float) -> Tensor:
        wt = w.log_w(kl_weight).softmax(0).detach()  # [K, B]
        return path_surrogate(w, wt, wt * wt, kl_weight, c=wt, stop_q=True)
