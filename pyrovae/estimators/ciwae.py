"""CIWAE: a convex combination of the ELBO and IWAE on the same particles."""

from __future__ import annotations

from torch import Tensor

from ..errors import ConfigError
from .base import Estimator, register
from .weights import LogWeights, logmeanexp


@register("ciwae")
class CIWAE(Estimator):
    """CIWAE(beta, K) = beta * ELBO + (1 - beta) * IWAE(K), both from the same K particles.

    beta = 1 is the ELBO, beta = 0 is IWAE(K); every beta in [0, 1] gives a lower bound.
    (``beta`` mixes the bounds; it is not the KL weight, which is ``kl_weight``.)

    References: Rainforth et al. 2018, "Tighter Variational Bounds are Not Necessarily Better".
    """

    def __init__(self, num_particles: int = 1, beta: float = 0.5, **kwargs) -> None:
        super().__init__(num_particles=num_particles, **kwargs)
        if not 0.0 <= float(beta) <= 1.0:
            raise ConfigError(f"ciwae's beta must be in [0, 1], got {beta!r}")
        self.beta = float(beta)

    @property
    def carries_site_scales(self) -> bool:
        return self.beta == 1.0 or self.num_particles == 1  # the ELBO

    def point_bound(self, w: LogWeights, kl_weight: float = 1.0) -> Tensor:
        lw = w.log_w(kl_weight)
        return self.beta * lw.mean(0) + (1.0 - self.beta) * logmeanexp(lw, 0)
