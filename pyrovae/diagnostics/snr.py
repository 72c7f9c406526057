"""Gradient signal-to-noise ratio of an estimator, per parameter group (Rainforth et al. 2018)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError
from ..estimators.traced import SubsamplePin


@dataclass(frozen=True)
class SNR:
    """The gradient SNR of one parameter group.

    ``mean_snr``: the mean over scalar parameters of |E g| / sd(g) (scalars with zero variance
    and nonzero mean are counted in ``num_infinite`` and left out of the mean, as are scalars
    whose gradient is identically zero, counted in ``num_zero``). ``interval``: a basic
    bootstrap interval of ``mean_snr`` at ``level`` (blocks of draws resampled).
    ``total_variance``: the sum of the scalars' variances.
    """

    mean_snr: float
    interval: tuple[float, float]
    total_variance: float
    num_scalars: int
    num_zero: int
    num_infinite: int
    num_draws: int
    level: float = 0.9

    @property
    def noise_floor(self) -> float:
        """What a scalar with no signal shows: E|mean| / sd = sqrt(2 / (pi R)) for R draws. A
        mean SNR near it says "no signal", not "this SNR"."""
        return math.sqrt(2 / (math.pi * self.num_draws))

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "interval": list(self.interval), "noise_floor": self.noise_floor}


def _mean_snr(s1: Tensor, s2: Tensor, n: int, zero_tol: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """From per-scalar sums of g and g^2 over n draws: (mean SNR, total var, #zero, #inf).

    A scalar whose root-mean-square gradient is at most ``zero_tol`` is identically zero; one
    whose variance vanishes next to its mean has SNR inf (a constant gradient). When every scalar
    left is infinite the mean SNR is inf; when none is left it is nan.
    """
    mean = s1 / n
    var = ((s2 - n * mean * mean) / (n - 1)).clamp(min=0.0)
    rms = s2.div(n).sqrt()
    zero = rms <= zero_tol
    infinite = ~zero & (var <= (1e-12 * rms) ** 2)
    ok = ~zero & ~infinite
    snr = mean.abs()[ok] / var[ok].sqrt()
    if snr.numel():
        mean_snr = snr.mean()
    else:
        mean_snr = torch.tensor(float("inf") if infinite.any() else float("nan"), dtype=s1.dtype)
    return mean_snr, var.sum(), zero.sum(), infinite.sum()


def snr_from_draws(
    sums: Tensor,
    squares: Tensor,
    draws_per_block: int,
    *,
    bootstrap: int = 200,
    level: float = 0.9,
    seed: int = 0,
    zero_tol: float = 0.0,
) -> SNR:
    """SNR from block sums: ``sums``, ``squares`` ``[G, n]`` hold sum g and sum g^2 over each of G
    blocks of ``draws_per_block`` independent draws. The bootstrap resamples whole blocks (the
    blocks are independent), so the draws themselves never need to be kept."""
    g = sums.shape[0]
    n = g * draws_per_block
    m, total_var, zero, inf = _mean_snr(sums.sum(0), squares.sum(0), n, zero_tol)
    gen = torch.Generator(device=sums.device).manual_seed(seed)
    boots = []
    for _ in range(bootstrap if g > 1 else 0):
        idx = torch.randint(0, g, (g,), generator=gen, device=sums.device)
        counts = torch.bincount(idx, minlength=g).to(sums.dtype)  # how often each block is drawn
        boots.append(_mean_snr(counts @ sums, counts @ squares, n, zero_tol)[0])
    b = torch.stack(boots) if boots else torch.zeros(0)
    b = b[torch.isfinite(b)]
    if not torch.isfinite(m):
        lo = hi = m.item()
    elif b.numel():
        q_lo, q_hi = torch.quantile(
            b, torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=b.dtype, device=b.device)
        ).tolist()
        # the basic (reverse-percentile) interval: |mean| / sd is biased upwards when the signal
        # is small, and the bootstrap copies that bias; reflecting around the estimate undoes it
        lo, hi = 2 * m.item() - q_hi, 2 * m.item() - q_lo
    else:
        lo = hi = float("nan")
    return SNR(m.item(), (lo, hi), total_var.item(), sums.shape[1], int(zero), int(inf), n, level)


def gradient_snr(
    estimator: Any,
    model: Callable,
    guide: Callable,
    *args: Any,
    groups: Mapping[str, Sequence[Tensor]],
    num_draws: int = 1000,
    num_blocks: int = 40,
    bootstrap: int = 200,
    level: float = 0.9,
    **kwargs: Any,
) -> dict[str, SNR]:
    """Draw the estimator's gradient ``num_draws`` times at fixed parameters and data and return
    the SNR of each parameter group (e.g. ``{"encoder": [...], "decoder": [...]}``).

    Works with any ``pyro.infer.ELBO`` that has ``differentiable_loss``. The draws are folded into
    ``num_blocks`` running sums (float64), so memory is O(blocks x parameters), not O(draws).
    For IWAE the encoder's SNR falls like K^(-1/2); DReG's does not fall. The batch is held
    fixed: a plate that draws its own subsample (``subsample_size``) draws it once, for all draws.

    References: Rainforth et al. 2018, "Tighter Variational Bounds are Not Necessarily Better";
    Tucker et al. 2019, "Doubly Reparameterized Gradient Estimators for Monte Carlo Objectives".
    """
    if num_draws < 2 or num_blocks < 1 or num_draws % num_blocks:
        raise ConfigError(f"need num_draws >= 2 divisible by num_blocks, got {num_draws} and {num_blocks}")
    names = list(groups)
    params = [p for name in names for p in groups[name]]
    sizes = [sum(p.numel() for p in groups[name]) for name in names]
    device = params[0].device
    sums = torch.zeros(num_blocks, sum(sizes), dtype=torch.float64, device=device)
    squares = torch.zeros_like(sums)
    per_block = num_draws // num_blocks
    with SubsamplePin():  # the batch stays fixed: a plate that draws its subsample draws it once
        for r in range(num_draws):
            loss = estimator.differentiable_loss(model, guide, *args, **kwargs)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            flat = torch.cat(
                [(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads, strict=True)]
            ).double()
            b = r // per_block
            sums[b] += flat
            squares[b] += flat * flat
    # "identically zero" is relative to the largest gradient of any group: at the exact posterior
    # STL's and DReG's guide gradients are rounding noise next to the model's
    zero_tol = 1e-10 * squares.sum(0).div(num_draws).sqrt().max().item()
    out, start = {}, 0
    for name, size in zip(names, sizes, strict=True):
        sl = slice(start, start + size)
        out[name] = snr_from_draws(
            sums[:, sl], squares[:, sl], per_block, bootstrap=bootstrap, level=level, zero_tol=zero_tol
        )
        start += size
    return out


def loglog_slope(ks: Sequence[float], values: Sequence[float], floor: float = 0.0) -> float:
    """Least-squares slope of log(value) against log(K), over the values above ``floor``."""
    pairs = [(k, v) for k, v in zip(ks, values, strict=True) if v > floor]
    if len(pairs) < 2:
        return float("nan")
    ks, values = zip(*pairs, strict=True)
    x = torch.tensor([math.log(k) for k in ks], dtype=torch.float64)
    y = torch.tensor([math.log(v) for v in values], dtype=torch.float64)
    x = x - x.mean()
    return float((x * (y - y.mean())).sum() / (x * x).sum())
