"""The importance-weighted bound of Burda et al."""

from __future__ import annotations

from torch import Tensor

from .base import Estimator, register
from .weights import LogWeights, logmeanexp


@register("iwae")
class IWAE(Estimator):
    """IWAE(K) = log (1/K) sum_k exp(lw_k) per data point; K = 1 is the ELBO.

    The log-mean-exp runs over each data point's own K particles, never over the batch, and the
    mini-batch scale multiplies the per-point bounds afterwards. Reparameterized sites give the
    gradient sum_k w~_k grad lw_k; a site that cannot be reparameterized adds the score-function
    term stop(IWAE) * sum_k log q(z_k | x).

    References: Burda, Grosse & Salakhutdinov 2016, "Importance Weighted Autoencoders".
    """

    supports_score_function = True

    @property
    def carries_site_scales(self) -> bool:
        return self.num_particles == 1  # IWAE(1) is the ELBO

    @property
    def estimates(self) -> str:
        return "iwae"

    def point_bound(self, w: LogWeights, kl_weight: float = 1.0) -> Tensor:
        return logmeanexp(w.log_w(kl_weight), dim=0)

    def point_surrogate(self, w: LogWeights, kl_weight: float) -> Tensor | None:
        if w.log_q_score is None:
            return None
        bound = self.point_bound(w, kl_weight)
        return bound + bound.detach() * w.log_q_score.sum(0)
