"""IWAE with doubly reparameterized gradients, and DReG(alpha) between RWS and IWAE."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ..errors import ConfigError
from .base import Estimator, path_surrogate, register
from .weights import LogWeights, logmeanexp


@register("dreg")
class DReG(Estimator):
    """The IWAE(K) bound with the doubly reparameterized gradient, DReG(alpha) for ``alpha < 1``.

    theta: sum_k w~_k grad_theta log p(x, z_k), as IWAE. phi: sum_k v_k (d lw'_k / dz_k)
    (dz_k / dphi), lw'_k = log p(x, z_k) - log q_stop(z_k | x), with
    v_k = (1 - alpha) w~_k + (2 alpha - 1) w~_k^2 (with a KL weight beta, IWAE-DReG's w~^2 is
    w~ - beta w~ (1 - w~), the path form of beta w~ d log q / dphi): ``alpha = 1`` (the default) is IWAE-DReG,
    v = w~^2, unbiased for the IWAE gradient, whose guide gradient does not vanish in
    signal-to-noise as K grows (IWAE's falls like K^-1/2), with zero variance for phi at the exact
    posterior; ``alpha = 0`` is RWS-DReG, v = w~ - w~^2 (the doubly reparameterized wake-phi
    gradient, as ``rws`` with ``wake_phi="dreg"``); between them the guide's gradient interpolates
    (biased for the IWAE gradient unless ``alpha = 1``).

    Parameters q shares with the model (a VampPrior's encoder, a top-down prior the guide reuses):
    the score term d log q / d(parameter) at fixed z is removed for EVERY parameter q depends on,
    wherever it lives, and their direct appearance in p keeps the IWAE weight w~, so the gradient
    stays unbiased for IWAE's in every parameter (tested). p's own score term in those parameters
    is kept: on a VampPrior the encoder biases' gradient variance is then higher than IWAE's;
    ``gdreg`` (Bauer & Mnih's generalized DReG) turns it into a path term too.

    Implemented, for guides with any number of latent sites, as
    S = sum_k stop(w~_k) log p(x, z_k) - sum_k stop(v_k) log q_stop(z_k), with the gradient that
    reaches z_k through the model multiplied by v_k / w~_k = (1 - alpha) + (2 alpha - 1) w~_k on the
    model's own view of z_k, so it applies once per path and never compounds along a chain.

    References: Tucker, Lawson, Gu & Maddison 2019, "Doubly Reparameterized Gradient Estimators
    for Monte Carlo Objectives" (DReG(alpha): their eq. 8's interpolation).
    """

    needs_grad_scale = True

    def __init__(self, num_particles: int = 1, alpha: float = 1.0, **kwargs: Any) -> None:
        super().__init__(num_particles=num_particles, **kwargs)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"dreg: alpha must be a number in [0, 1] (0 RWS-DReG, 1 IWAE-DReG), got {alpha!r}")
        self.alpha = float(alpha)

    def __repr__(self) -> str:
        return f"DReG(num_particles={self.num_particles}, alpha={self.alpha:g})"

    @property
    def carries_site_scales(self) -> bool:
        return self.num_particles == 1 and self.alpha == 1.0  # IWAE(1) is the ELBO, DReG(1) its path derivative

    @property
    def estimates(self) -> str:
        return "iwae"

    @property
    def unbiased_gradient(self) -> bool:
        return self.alpha == 1.0 and super().unbiased_gradient  # alpha < 1 moves the guide elsewhere

    def point_bound(self, w: LogWeights, kl_weight: float = 1.0) -> Tensor:
        return logmeanexp(w.log_w(kl_weight), 0)

    def point_surrogate(self, w: LogWeights, kl_weight: float) -> Tensor:
        wt = w.log_w(kl_weight).softmax(0).detach()  # [K, B]
        # v / w~ on the path derivative of lw' = log p(x | z) + beta (log p(z) - log q): IWAE's
        # guide score term is beta w~ d log q / dphi, whose path form is beta w~ (1 - w~) dlw'/dz,
        # so IWAE-DReG weighs the path by w~ - beta w~ (1 - w~) (w~^2 at beta = 1); RWS-DReG by w~ - w~^2
        beta = kl_weight
        c = self.alpha * (1.0 - beta + beta * wt) + (1.0 - self.alpha) * (1.0 - wt)
        return path_surrogate(w, wt, wt * c, kl_weight, c=c, stop_q=True)
