"""VarGrad: the log-variance loss, an estimator written outside pyrovae (the tutorial's plugin).

For a data point x and K particles z_k ~ q(z | x), held fixed (no reparameterization), with log
weights lw_k = log p(x, z_k) - log q(z_k | x), the log-variance loss is the sample variance

    V = 1/(K - 1) sum_k (lw_k - mean_j lw_j)^2.

Its gradient in the guide's parameters is -1/(K - 1) sum_k (lw_k - mean lw) grad log q(z_k | x)
times 2, so -V/2 has the score-function gradient of the ELBO with the particles' mean as baseline,
and the 1/(K - 1) makes it unbiased. The model's parameters follow the ELBO, (1/K) sum_k
grad log p(x, z_k). The value reported is the ELBO: VarGrad is a gradient estimator for it. No
latent needs a reparameterization, so it trains discrete latents as well.

References: Richter, Boustati, Nuesken, Ruiz & Akyildiz 2020, "VarGrad: A Low-Variance Gradient
Estimator for Variational Inference"; Nuesken & Richter 2021, "Solving high-dimensional
Hamilton-Jacobi-Bellman PDEs using neural networks: perspectives from the theory of controlled
diffusions and measures on path space" (the log-variance divergence).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from pyrovae.errors import ConfigError
from pyrovae.estimators import Estimator, LogWeights


class VarGrad(Estimator):
    """The ELBO, with the log-variance loss's gradient for the guide (K >= 2 particles)."""

    supports_score_function = True  # nothing is reparameterized
    detach_latents = True  # the particles are held fixed: gradients reach q only through log q

    def __init__(self, num_particles: int = 2, **kwargs: Any) -> None:
        if num_particles < 2:
            raise ConfigError(f"VarGrad needs num_particles >= 2 for a variance, got {num_particles}")
        super().__init__(num_particles=num_particles, **kwargs)

    @property
    def estimates(self) -> str:
        return "elbo"  # what the conformance kit holds its gradient to

    def point_bound(self, w: LogWeights, kl_weight: float = 1.0) -> Tensor:
        return w.log_w(kl_weight).mean(0)  # the ELBO, per data point: [B]

    def point_surrogate(self, w: LogWeights, kl_weight: float) -> Tensor:
        log_p = w.log_lik + kl_weight * w.log_prior  # [K, B], at fixed z: the model's gradient
        lw = log_p.detach() - kl_weight * w.log_q  # [K, B]: the guide's only path is log q
        log_variance = (lw - lw.mean(0)).pow(2).sum(0) / (w.num_particles - 1)  # [B]
        return log_p.mean(0) - 0.5 * log_variance
