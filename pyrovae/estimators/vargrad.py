"""VarGrad: the log-variance loss for the guide, the ELBO for the model."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ..errors import ConfigError
from .base import Estimator, register
from .weights import LogWeights


@register("vargrad")
class VarGrad(Estimator):
    """The ELBO, with the log-variance loss's gradient for the guide (K >= 2 particles).

    For a data point x and K particles z_k ~ q(z | x) held fixed (no reparameterization), with
    f_k = log q(z_k | x) - log p(x, z_k) = -lw_k, the log-variance loss is the sample variance
    V = 1 / (K - 1) sum_k (f_k - mean f)^2. Its guide gradient is
    2 / (K - 1) sum_k (f_k - mean f) grad log q(z_k | x), in expectation 2x the score-function
    gradient of KL(q || p(z | x)); so -V / 2 carries the score-function ELBO gradient with the
    particles' mean as baseline, unbiased thanks to the 1 / (K - 1). The model's parameters
    follow the ELBO, (1/K) sum_k grad log p(x, z_k). The value reported is the ELBO. No latent
    needs a reparameterization, so it trains discrete latents (Bernoulli) as well.

    References: Richter, Boustati, Nuesken, Ruiz & Akyildiz 2020, "VarGrad: A Low-Variance
    Gradient Estimator for Variational Inference".
    """

    supports_score_function = True  # nothing is reparameterized
    detach_latents = True  # the particles are held fixed: gradients reach q only through log q

    def __init__(self, num_particles: int = 2, **kwargs: Any) -> None:
        if isinstance(num_particles, int) and num_particles < 2:
            raise ConfigError(f"vargrad needs num_particles >= 2 (a sample variance), got {num_particles}")
        super().__init__(num_particles=num_particles, **kwargs)

    @property
    def estimates(self) -> str:
        return "elbo"

    @property
    def carries_site_scales(self) -> bool:
        return False  # the variance mixes the sites' terms

    def point_bound(self, w: LogWeights, kl_weight: float = 1.0) -> Tensor:
        return w.log_w(kl_weight).mean(0)

    def point_surrogate(self, w: LogWeights, kl_weight: float) -> Tensor:
        log_p = w.log_lik + kl_weight * w.log_prior  # [K, B], at fixed z: the model's gradient
        lw = log_p.detach() - kl_weight * w.log_q  # [K, B]: the guide's only path is log q
        log_variance = (lw - lw.mean(0)).pow(2).sum(0) / (w.num_particles - 1)  # [B]
        return log_p.mean(0) - 0.5 * log_variance
