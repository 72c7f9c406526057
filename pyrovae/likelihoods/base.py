"""The likelihood contract: decoder output -> a ``pyro.distributions`` object over a flat vector."""

from __future__ import annotations

from typing import ClassVar

import torch
from pyro.distributions import TorchDistribution
from torch import Tensor, nn

from ..errors import DataError
from ..registry import Registry


class Likelihood(nn.Module):
    """p(x | z) for a data vector of ``x_dim`` entries, from the decoder's output.

    The decoder emits ``num_params * x_dim`` numbers per data point, in ``num_params`` blocks of
    ``x_dim`` (block-major); ``forward`` turns them into a distribution with batch shape equal to
    the leading dims of the decoder output and event shape ``[x_dim]``. A likelihood is not a
    loss: the estimators read ``log_prob`` from the distribution it returns.

    ``data_kind`` says which representation of images the data loaders produce for it:
    ``"binary"`` ({0, 1}), ``"unit"`` (grey levels in [0, 1]) or ``"counts"`` (integers 0..255).
    """

    name: ClassVar[str]
    num_params: int = 1  # may be set per instance (a decoder-predicted scale adds a block)
    data_kind: ClassVar[str] = "unit"

    def __init__(self, x_dim: int) -> None:
        super().__init__()
        if x_dim < 1:
            raise ValueError(f"x_dim must be positive, got {x_dim}")
        self.x_dim = int(x_dim)

    @property
    def input_scale(self) -> float:
        """What the encoder multiplies the data by: 8-bit levels (``"counts"``) go to [0, 1], as
        the networks expect inputs of order one; the likelihood still sees the levels."""
        return 1.0 / 255.0 if self.data_kind == "counts" else 1.0

    def split(self, params: Tensor) -> tuple[Tensor, ...]:
        """Cut decoder output ``[..., num_params * x_dim]`` into ``num_params`` ``[..., x_dim]``."""
        if params.shape[-1] != self.num_params * self.x_dim:
            raise ValueError(
                f"likelihood {self.name!r} expects decoder output of size "
                f"{self.num_params} * {self.x_dim} in its last dim, got {params.shape[-1]}"
            )
        return params.chunk(self.num_params, dim=-1) if self.num_params > 1 else (params,)

    def forward(self, params: Tensor) -> TorchDistribution:  # pragma: no cover - abstract
        raise NotImplementedError

    def mean(self, params: Tensor) -> Tensor:
        """The distribution's mean, for reconstructions and sample grids."""
        return self(params).mean

    def support_error(self, x: Tensor) -> str | None:  # pragma: no cover - abstract
        """A sentence saying why ``x`` lies outside the support, or None when it is inside."""
        raise NotImplementedError

    def check_data(self, x: Tensor) -> None:
        """Raise :class:`DataError` unless every entry of ``x`` lies in the support."""
        if x.shape[-1] != self.x_dim:
            raise DataError(
                f"likelihood {self.name!r} was built for {self.x_dim} dimensions, the data has {x.shape[-1]}"
            )
        if not torch.isfinite(x).all():
            raise DataError(f"likelihood {self.name!r}: the data holds NaN or infinite values")
        problem = self.support_error(x)
        if problem is not None:
            raise DataError(f"likelihood {self.name!r}: {problem}")


def value_range(x: Tensor) -> str:
    return f"[{x.min().item():.4g}, {x.max().item():.4g}]"


REGISTRY: Registry[Likelihood] = Registry("likelihood", implicit=("x_dim",), base=Likelihood)
register = REGISTRY.register
