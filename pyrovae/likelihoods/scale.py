"""The scale of a location-scale likelihood: fixed, learned, or predicted by the decoder."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError

SCALE_MODES = ("global", "per_dim", "decoder")


def _inv_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


class Scale(nn.Module):
    """s > 0 for a Gaussian or Laplace likelihood.

    ``scale`` is a positive number (fixed s), ``"global"`` (one learned s), ``"per_dim"`` (one
    learned s per data dimension) or ``"decoder"`` (s predicted per data point from a second
    block of decoder outputs). Learned and predicted scales are ``min_scale + softplus(raw)``,
    started at ``init_scale``; the floor keeps densities bounded on constant pixels.
    """

    fixed: Tensor  # the fixed scale's buffer (register_buffer)

    def __init__(self, x_dim: int, scale: float | str, init_scale: float = 1.0, min_scale: float = 1e-3) -> None:
        super().__init__()
        if isinstance(scale, str):
            if scale not in SCALE_MODES:
                raise ConfigError(f"scale must be a positive number or one of {', '.join(SCALE_MODES)}; got {scale!r}")
            self.mode = scale
        else:
            if not float(scale) > 0:
                raise ConfigError(f"a fixed scale must be positive, got {scale!r}")
            self.mode = "fixed"
        if not (init_scale > min_scale >= 0):
            raise ConfigError(f"need init_scale > min_scale >= 0, got init_scale={init_scale}, min_scale={min_scale}")
        self.min_scale = float(min_scale)
        raw0 = _inv_softplus(init_scale - min_scale)
        if self.mode == "fixed":
            self.register_buffer("fixed", torch.tensor(float(scale)))
        elif self.mode == "global":
            self.raw = nn.Parameter(torch.tensor(raw0))
        elif self.mode == "per_dim":
            self.raw = nn.Parameter(torch.full((x_dim,), raw0))
        self._raw0 = raw0

    @property
    def predicted(self) -> bool:
        return self.mode == "decoder"

    def forward(self, raw: Tensor | None = None) -> Tensor:
        """The scale; ``raw`` is the decoder's scale block when the mode is ``"decoder"``."""
        if self.mode == "fixed":
            return self.fixed
        if self.mode == "decoder":
            assert raw is not None
            # Offset so that a zero decoder output starts at init_scale.
            return self.min_scale + F.softplus(raw + self._raw0)
        return self.min_scale + F.softplus(self.raw)
