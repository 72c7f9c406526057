"""Bernoulli likelihood for binary data, parameterized by logits."""

from __future__ import annotations

import pyro.distributions as dist
from torch import Tensor

from .base import Likelihood, register, value_range


@register("bernoulli")
class BernoulliLikelihood(Likelihood):
    """x_d ~ Bernoulli(sigmoid(l_d)) with decoder logits l; data in {0, 1}.

    log p(x | l) = sum_d x_d l_d - softplus(l_d).
    """

    data_kind = "binary"

    def forward(self, params: Tensor) -> dist.TorchDistribution:
        (logits,) = self.split(params)
        return dist.Bernoulli(logits=logits, validate_args=False).to_event(1)

    def support_error(self, x: Tensor) -> str | None:
        if ((x != 0) & (x != 1)).any():
            return (
                f"needs binary data (0 or 1), got values in {value_range(x)}; binarize the "
                "data (binarization 'dynamic' or 'fixed') or use 'continuous_bernoulli'"
            )
        return None
