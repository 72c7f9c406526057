"""Continuous Bernoulli likelihood for grey levels in [0, 1]."""

from __future__ import annotations

import pyro.distributions as dist
from torch import Tensor

from .base import Likelihood, register, value_range


@register("continuous_bernoulli")
class ContinuousBernoulliLikelihood(Likelihood):
    """x_d ~ CB(lambda_d = sigmoid(l_d)): the Bernoulli density made proper on [0, 1].

    log p(x | lambda) = x log lambda + (1 - x) log(1 - lambda) + log C(lambda).

    References: Loaiza-Ganem & Cunningham 2019, "The continuous Bernoulli: fixing a pervasive
    error in variational autoencoders".
    """

    data_kind = "unit"

    def forward(self, params: Tensor) -> dist.TorchDistribution:
        (logits,) = self.split(params)
        return dist.ContinuousBernoulli(logits=logits, validate_args=False).to_event(1)

    def mean(self, params: Tensor) -> Tensor:
        # The CB mean is pulled towards 1/2; the decoder's lambda is the sharper picture.
        (logits,) = self.split(params)
        return logits.sigmoid()

    def support_error(self, x: Tensor) -> str | None:
        if ((x < 0) | (x > 1)).any():
            return f"needs data in [0, 1], got values in {value_range(x)}"
        return None
