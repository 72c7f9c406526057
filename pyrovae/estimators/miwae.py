"""MIWAE: the mean of M independent IWAE(K) bounds."""

from __future__ import annotations

from torch import Tensor

from ..errors import ConfigError
from .base import Estimator, register
from .weights import LogWeights, logmeanexp


def check_groups(num_groups: int) -> int:
    if not isinstance(num_groups, int) or isinstance(num_groups, bool) or num_groups < 1:
        raise ConfigError(f"num_groups must be an integer >= 1, got {num_groups!r}")
    return num_groups


def grouped(lw: Tensor, num_groups: int) -> Tensor:
    """``[M*K, B]`` -> ``[M, K, B]``: particle j = m * K + k."""
    return lw.reshape(num_groups, -1, lw.shape[-1])


class GroupedParticles(Estimator):
    """Estimators over M groups of K particles: ``num_groups`` (M), ``num_particles`` (K)."""

    def __init__(self, num_particles: int = 1, num_groups: int = 1, **kwargs) -> None:
        super().__init__(num_particles=num_particles, **kwargs)
        self.num_groups = check_groups(num_groups)

    @property
    def num_draws(self) -> int:
        return self.num_groups * self.num_particles


@register("miwae")
class MIWAE(GroupedParticles):
    """MIWAE(M, K) = (1/M) sum_m log (1/K) sum_k exp(lw_mk), M * K particles per data point.

    M = ``num_groups``, K = ``num_particles``. MIWAE(M, 1) is the ELBO with M particles and
    MIWAE(1, K) is IWAE(K); the gradient is the reparameterized one.

    References: Rainforth et al. 2018, "Tighter Variational Bounds are Not Necessarily Better".
    """

    @property
    def carries_site_scales(self) -> bool:
        return self.num_particles == 1  # MIWAE(M, 1) is the ELBO with M particles

    def point_bound(self, w: LogWeights, kl_weight: float = 1.0) -> Tensor:
        return logmeanexp(grouped(w.log_w(kl_weight), self.num_groups), 1).mean(0)
