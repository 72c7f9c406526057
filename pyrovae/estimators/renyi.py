"""The Renyi-alpha variational bound, as a reparameterized objective."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import ConfigError
from .base import Estimator, register
from .weights import LogWeights


@register("renyi")
class RenyiBound(Estimator):
    """L_alpha = 1/(1 - alpha) * [logsumexp_k((1 - alpha) lw_k) - log K] per data point.

    alpha = 0 is IWAE(K); alpha = 1 is the ELBO (the limit, computed as the mean of lw); it is a
    lower bound on log p(x) for alpha >= 0 only. alpha < 0 is allowed, but the value can exceed
    log p(x), so it is reported as an objective (``reports_bound`` is False), never as a bound.
    The gradient is the reparameterized gradient of L_alpha; unlike Pyro's ``RenyiELBO`` it has a
    ``differentiable_loss``, and the mini-batch scale stays outside the logsumexp, so the value is
    a bound under subsampling too.

    References: Li & Turner 2016, "Renyi Divergence Variational Inference".
    """

    def __init__(self, num_particles: int = 1, alpha: float = 0.5, **kwargs) -> None:
        super().__init__(num_particles=num_particles, **kwargs)
        if not math.isfinite(alpha):
            raise ConfigError(f"alpha must be a finite number, got {alpha!r}")
        self.alpha = float(alpha)

    @property
    def carries_site_scales(self) -> bool:
        return self.alpha == 1.0 or self.num_particles == 1  # the ELBO

    @property
    def reports_bound(self) -> bool:
        return self.alpha >= 0

    def point_bound(self, w: LogWeights, kl_weight: float = 1.0) -> Tensor:
        lw = w.log_w(kl_weight)
        if self.alpha == 1.0:
            return lw.mean(0)
        r = 1.0 - self.alpha
        return (torch.logsumexp(r * lw, 0) - math.log(lw.shape[0])) / r
