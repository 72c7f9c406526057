"""A learned mixture-of-Gaussians prior: p(z) = sum_c pi_c N(z; mu_c, diag sigma_c^2)."""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import nn

from ..likelihoods import Likelihood
from .gaussian import VAEModel
from .gaussian_mixture import DiagonalGaussianMixture


class MixturePriorModel(VAEModel):
    """p(x, z) = p(z) p(x | decoder(z)) with a learned mixture of C diagonal Gaussians

        p(z) = sum_c softmax(logits)_c N(z; loc_c, diag exp(log_scale_c)^2),

    log p(z) = logsumexp_c [log softmax(logits)_c + log N(z; loc_c, ...)], ``[K, B]`` at
    ``[K, B, z_dim]``, as a matrix product (:class:`DiagonalGaussianMixture`). Only ``prior()``
    changes, so the fast path, ``log_prob_terms`` and the traced path all use it. No KL from a
    Gaussian to a mixture is known in closed form: the library's "analytic_elbo" takes the Monte
    Carlo term log q - log p there, i.e. it equals "elbo" (a run's config refuses the pair in one
    line, since the name would promise a closed form).

    Parameters: ``logits [C]`` (start 0: equal weights), ``locs [C, z_dim]`` (start N(0, I), spread
    over the standard prior's bulk), ``log_scales [C, z_dim]`` (start 0: unit scales).

    Args:
        decoder, likelihood, z_dim, name: as for :class:`~pyrovae.vae.VAEModel`.
        num_components: C.

    References: Tomczak & Welling 2018, "VAE with a VampPrior" (AISTATS), sec. 3.1 (the
    mixture-of-Gaussians prior it compares with); Dilokthanakul et al. 2016, "Deep Unsupervised
    Clustering with Gaussian Mixture Variational Autoencoders".
    """

    def __init__(
        self, decoder: nn.Module, likelihood: Likelihood, z_dim: int, name: str, num_components: int = 10
    ) -> None:
        super().__init__(decoder, likelihood, z_dim, name)
        if not isinstance(num_components, int) or isinstance(num_components, bool) or num_components < 1:
            raise ValueError(f"num_components must be an integer >= 1, got {num_components!r}")
        like = self.prior_loc
        self.logits = nn.Parameter(like.new_zeros(num_components))  # [C]
        self.locs = nn.Parameter(torch.randn(num_components, z_dim).to(like))  # [C, z_dim]
        self.log_scales = nn.Parameter(like.new_zeros(num_components, z_dim))  # [C, z_dim]

    def prior(self, batch_size: int) -> dist.TorchDistribution:
        prior = DiagonalGaussianMixture(self.logits, self.locs, self.log_scales.exp())  # event [z_dim]
        return prior.expand([batch_size])  # batch [B], event [z_dim]
