"""PIWAE: the model trained on IWAE(M*K), the guide on MIWAE(M, K)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import Estimator, path_surrogate, register
from .miwae import check_groups, grouped
from .weights import LogWeights, logmeanexp


@register("piwae")
class PIWAE(Estimator):
    """Partially importance weighted: theta ascends IWAE(M*K), phi ascends MIWAE(M, K).

    ``loss`` reports IWAE(M*K), the bound the model is trained on. One surrogate carries both:
    S = sum_j stop(w~_j) log p(x, z_j) - sum_j stop(v_j) log q(z_j | x), where w~ are the
    weights over all M*K particles and v_j = w~_j within its group / M (MIWAE's weights); the
    gradient reaching z_j through the model is multiplied by v_j / w~_j, so phi gets exactly
    MIWAE's reparameterized gradient and theta exactly IWAE(M*K)'s.

    References: Rainforth et al. 2018, "Tighter Variational Bounds are Not Necessarily Better".
    """

    needs_grad_scale = True

    def __init__(self, num_particles: int = 1, num_groups: int = 1, **kwargs) -> None:
        super().__init__(num_particles=num_particles, **kwargs)
        self.num_groups = check_groups(num_groups)

    @property
    def num_draws(self) -> int:
        return self.num_groups * self.num_particles

    def _bound(self, w: LogWeights, kl_weight: float = 1.0) -> Tensor:
        return logmeanexp(w.log_w(kl_weight), 0)

    def _surrogate(self, w: LogWeights, kl_weight: float) -> Tensor:
        lw = w.log_w(kl_weight).detach()  # [M*K, B]
        m = self.num_groups
        lse_all = torch.logsumexp(lw, 0)  # [B]
        lse_group = torch.logsumexp(grouped(lw, m), 1)  # [M, B]
        a = (lw - lse_all).exp()  # IWAE(M*K) weights
        v = (grouped(lw, m) - lse_group.unsqueeze(1)).exp().reshape(lw.shape) / m  # MIWAE weights
        # v / a = exp(lse_all - lse_group - log M): no exp(lw) in it, so no 0/0
        ratio = (lse_all - lse_group - math.log(m)).exp()  # [M, B]
        c = ratio.unsqueeze(1).expand(m, self.num_particles, -1).reshape(lw.shape)
        return path_surrogate(w, a, v, kl_weight, c=c, stop_q=False)
