"""Discretized logistic likelihood for 8-bit data."""

from __future__ import annotations

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.distributions import constraints
from torch import Tensor

from ..errors import ConfigError
from .base import register, value_range
from .location_scale import LocationScaleLikelihood


def _log1mexp(a: Tensor) -> Tensor:
    """log(1 - exp(-a)) for a > 0, accurate for small and large a (Maechler 2012).

    Each branch sees only inputs in its own range, so the branch torch.where discards cannot
    put an infinite gradient (times zero: NaN) into the backward pass.
    """
    ln2 = 0.6931471805599453
    tiny = torch.finfo(a.dtype).tiny
    small = torch.log(-torch.expm1(-a.clamp(min=tiny, max=ln2)))
    large = torch.log1p(-torch.exp(-a.clamp(min=ln2)))
    return torch.where(a < ln2, small, large)


class DiscretizedLogistic(dist.TorchDistribution):
    """A logistic(loc, scale) on [0, 1] binned onto the levels k = 0 .. num_bins - 1.

    Level k has centre k / (num_bins - 1) and half-width h = 0.5 / (num_bins - 1); the two end
    levels take the tails, so the masses sum to one:
    P(k) = sigmoid((c_k + h - loc) / scale) - sigmoid((c_k - h - loc) / scale).
    The difference is computed as log sigmoid(a) + log sigmoid(-b) + log(1 - e^(b - a)), which
    stays finite however small the mass.

    References: Salimans et al. 2017, "PixelCNN++"; Kingma et al. 2016, "Improved variational
    inference with inverse autoregressive flow".
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    has_rsample = False

    def __init__(self, loc: Tensor, scale: Tensor, num_bins: int = 256, validate_args: bool | None = None) -> None:
        self.loc, self.scale = torch.broadcast_tensors(loc, scale)
        self.num_bins = int(num_bins)
        super().__init__(self.loc.shape, torch.Size(), validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self) -> constraints.Constraint:
        return constraints.integer_interval(0, self.num_bins - 1)

    def expand(self, batch_shape, _instance=None):  # noqa: ANN001 - torch's signature
        new = self._get_checked_instance(DiscretizedLogistic, _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc = self.loc.expand(batch_shape)
        new.scale = self.scale.expand(batch_shape)
        new.num_bins = self.num_bins
        super(DiscretizedLogistic, new).__init__(batch_shape, torch.Size(), validate_args=False)
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        last = self.num_bins - 1
        h = 0.5 / last
        centre = value / last
        a = (centre + h - self.loc) / self.scale  # upper edge
        b = (centre - h - self.loc) / self.scale  # lower edge
        inner = F.logsigmoid(a) + F.logsigmoid(-b) + _log1mexp(a - b)
        lp = torch.where(value <= 0, F.logsigmoid(a), inner)
        return torch.where(value >= last, F.logsigmoid(-b), lp)

    def sample(self, sample_shape: torch.Size | list[int] | tuple[int, ...] = ()) -> Tensor:
        shape = self._extended_shape(torch.Size(sample_shape))
        with torch.no_grad():
            u = torch.rand(shape, dtype=self.loc.dtype, device=self.loc.device)
            u = u.clamp(1e-6, 1 - 1e-6)
            y = self.loc.expand(shape) + self.scale.expand(shape) * (u.log() - (-u).log1p())
            return (y * (self.num_bins - 1)).round().clamp(0, self.num_bins - 1)

    @property
    def mean(self) -> Tensor:
        # Exact: sum_k k P(k), one pass over the levels.
        levels = torch.arange(self.num_bins, dtype=self.loc.dtype, device=self.loc.device)
        shape = (self.num_bins,) + (1,) * self.loc.dim()
        probs = self.log_prob(levels.reshape(shape)).exp()
        return (probs * levels.reshape(shape)).sum(0)


@register("discretized_logistic")
class DiscretizedLogisticLikelihood(LocationScaleLikelihood):
    """x_d ~ DiscretizedLogistic(m_d, s_d) on 8-bit levels 0..255.

    The decoder gives the location m (on the [0, 1] scale) and, by default, the scale
    (``scale="decoder"``); ``scale`` also takes a number or "global" / "per_dim" as for
    ``gaussian``. Options: ``scale``, ``init_scale``, ``min_scale``, ``num_bins``.
    """

    family = DiscretizedLogistic
    data_kind = "counts"
    default_scale = "decoder"
    default_init_scale = 0.1

    def __init__(
        self,
        x_dim: int,
        scale: float | str | None = None,
        init_scale: float | None = None,
        min_scale: float = 1e-3,
        num_bins: int = 256,
    ) -> None:
        super().__init__(x_dim, scale, init_scale, min_scale)
        if num_bins < 2:
            raise ConfigError(f"num_bins must be >= 2 (the levels 0..num_bins - 1), got {num_bins}")
        self.num_bins = int(num_bins)

    def forward(self, params: Tensor) -> dist.TorchDistribution:
        loc, scale = self.loc_scale(params)
        return DiscretizedLogistic(loc, scale, self.num_bins, validate_args=False).to_event(1)

    def support_error(self, x: Tensor) -> str | None:
        if (x < 0).any() or (x > self.num_bins - 1).any() or (x != x.round()).any():
            return f"needs integer levels 0..{self.num_bins - 1} (8-bit pixels), got values in {value_range(x)}"
        return None
