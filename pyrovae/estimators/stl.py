"""Sticking the landing: the path-derivative gradient of the ELBO."""

from __future__ import annotations

from torch import Tensor

from .base import Estimator, path_surrogate, register
from .weights import LogWeights, logmeanexp


@register("stl")
class StickingTheLanding(Estimator):
    """The ELBO, (1/K) sum_k lw_k, with the path-derivative gradient.

    Surrogate: S = (1/K) sum_k [log p(x, z_k) - log q_stop(z_k | x)], q_stop being q with its
    parameters stopped: the score term d log q / dphi (zero in expectation) is dropped, so at the
    exact posterior the guide's gradient is exactly zero on every draw. The model's gradient is
    the ELBO's.

    ``iwae=True`` reports IWAE(K) and uses sum_k w~_k times the same path derivative; that
    gradient is biased for the IWAE bound (Tucker et al. 2019 show it): a research option,
    use ``dreg`` for an unbiased path-derivative IWAE gradient.

    References: Roeder, Wu & Duvenaud 2017, "Sticking the Landing: Simple, Lower-Variance Gradient
    Estimators for Variational Inference"; Tucker et al. 2019, "Doubly Reparameterized Gradient
    Estimators for Monte Carlo Objectives".
    """

    def __init__(self, num_particles: int = 1, iwae: bool = False, **kwargs) -> None:
        super().__init__(num_particles=num_particles, **kwargs)
        self.iwae = bool(iwae)

    @property
    def carries_site_scales(self) -> bool:
        return not self.iwae  # IWAE's log-mean-exp would mix the scales

    @property
    def estimates(self) -> str:
        return "iwae" if self.iwae else "elbo"

    @property
    def unbiased_gradient(self) -> bool:
        return not self.iwae and super().unbiased_gradient  # STL-IWAE is biased (see above)

    def point_bound(self, w: LogWeights, kl_weight: float = 1.0) -> Tensor:
        lw = w.log_w(kl_weight)
        return logmeanexp(lw, 0) if self.iwae else lw.mean(0)

    def point_surrogate(self, w: LogWeights, kl_weight: float) -> Tensor:
        k = w.num_particles
        if self.iwae:
            a = w.log_w(kl_weight).softmax(0)  # w~_k
        else:
            a = w.log_q.new_full(w.log_q.shape, 1.0 / k)
        return path_surrogate(w, a, a, kl_weight, stop_q=True)
