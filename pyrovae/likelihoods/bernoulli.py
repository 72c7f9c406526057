"""Bernoulli likelihood for binary data, parameterized by logits."""

from __future__ import annotations

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.distributions import constraints
from torch import Tensor

from .base import Likelihood, register, value_range


class BernoulliVector(dist.TorchDistribution):
    """Independent Bernoulli(sigmoid(logits)) over the last dim, as one event.

    The same distribution as ``Bernoulli(logits=logits).to_event(1)``; its log_prob sums the
    binary cross-entropies before negating, so the negation touches one number per event instead
    of every pixel (a tenth of a large-K VAE step otherwise goes to it).
    """

    arg_constraints = {"logits": constraints.real}
    support = constraints.independent(constraints.boolean, 1)
    has_rsample = False

    def __init__(self, logits: Tensor, validate_args: bool | None = None) -> None:
        self.logits = logits
        super().__init__(logits.shape[:-1], logits.shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):  # noqa: ANN001 - torch's signature
        new = self._get_checked_instance(BernoulliVector, _instance)
        batch_shape = torch.Size(batch_shape)
        new.logits = self.logits.expand(batch_shape + self.event_shape)
        super(BernoulliVector, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        logits, value = torch.broadcast_tensors(self.logits, value)
        return -F.binary_cross_entropy_with_logits(logits, value, reduction="none").sum(-1)

    def sample(self, sample_shape: torch.Size | list[int] | tuple[int, ...] = ()) -> Tensor:
        shape = self._extended_shape(torch.Size(sample_shape))
        with torch.no_grad():
            return torch.bernoulli(torch.sigmoid(self.logits).expand(shape))

    @property
    def mean(self) -> Tensor:
        return torch.sigmoid(self.logits)

    @property
    def variance(self) -> Tensor:
        p = torch.sigmoid(self.logits)
        return p * (1 - p)


@register("bernoulli")
class BernoulliLikelihood(Likelihood):
    """x_d ~ Bernoulli(sigmoid(l_d)) with decoder logits l; data in {0, 1}.

    log p(x | l) = sum_d x_d l_d - softplus(l_d).
    """

    data_kind = "binary"

    def forward(self, params: Tensor) -> dist.TorchDistribution:
        (logits,) = self.split(params)
        return BernoulliVector(logits, validate_args=False)

    def support_error(self, x: Tensor) -> str | None:
        if ((x != 0) & (x != 1)).any():
            return (
                f"needs binary data (0 or 1), got values in {value_range(x)}; binarize the "
                "data (binarization 'dynamic' or 'fixed') or use 'continuous_bernoulli'"
            )
        return None
