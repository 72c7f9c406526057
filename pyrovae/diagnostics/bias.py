"""Gradient-bias test: an estimator's mean gradient against an unbiased reference, paired draws."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError
from ..estimators import make as make_estimator
from ..estimators.traced import SubsamplePin

PYRO_TRACE_ELBOS = ("Trace_ELBO", "TraceMeanField_ELBO", "TraceGraph_ELBO")
# A difference whose root mean square is at most ROUNDING machine epsilons of the reference
# gradient's is rounding: two computations of the same gradient (DReG's decoder gradient is IWAE's,
# summed in another order) differ by ~sqrt(terms) eps, and a z-score of that noise means nothing.
ROUNDING = 1000


@dataclass(frozen=True)
class Bias:
    """The paired bias test of one parameter group.

    Per scalar parameter, z = mean(g - r) / (sd(g - r) / sqrt(R)) over R paired draws of the
    estimator's gradient g and the reference's r. ``fraction_over``: the share of scalars with
    |z| > ``threshold`` (an unbiased estimator shows about ``expected_fraction``, 0.27% at 3);
    ``max_abs_z``, ``mean_abs_z``; scalars whose difference is zero up to rounding (``num_zero``:
    its root mean square at most ``ROUNDING`` eps of the reference's, the two gradients computed
    alike in different orders) are left out, and a difference constant and nonzero over the draws
    counts as infinitely biased.
    """

    fraction_over: float
    max_abs_z: float
    mean_abs_z: float
    num_scalars: int
    num_zero: int
    num_draws: int
    reference: str
    threshold: float = 3.0

    @property
    def expected_fraction(self) -> float:
        """The share of |z| > threshold an unbiased estimator shows: 2 (1 - Phi(threshold))."""
        return math.erfc(self.threshold / math.sqrt(2))

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "expected_fraction": self.expected_fraction}


def reference_for(estimator: Any) -> tuple[str, Callable[..., Tensor]]:
    """What the estimator claims to estimate and a ``differentiable_loss`` unbiased for its gradient:
    reparameterized (plus score terms) ELBO or IWAE(K) with the same K, or the estimator's own
    bound differentiated along its path (``bound_objective``) for a bound of its own."""
    target = getattr(estimator, "estimates", None)
    if target is None and type(estimator).__name__ in PYRO_TRACE_ELBOS:
        target = "elbo"
    k = getattr(estimator, "num_particles", 1)
    kl_weight = getattr(estimator, "kl_weight", 1.0)
    if target in ("elbo", "iwae"):
        ref: Any = make_estimator(target, num_particles=k, kl_weight=kl_weight)  # pyrovae's: has differentiable_loss
        return f"{target} K={k}", ref.differentiable_loss
    if target == "bound" and callable(getattr(estimator, "bound_objective", None)):
        return "its bound's path derivative", estimator.bound_objective
    raise ConfigError(
        f"no reference gradient for {type(estimator).__name__}: it declares estimates = {target!r}; valid: "
        "'elbo', 'iwae', 'bound' (with bound_objective), or pass reference= (a differentiable_loss)"
    )


def flat_gradient(loss: Tensor, params: list[Tensor]) -> Tensor:
    grads = torch.autograd.grad(loss, params, allow_unused=True) if loss.requires_grad else [None] * len(params)
    flat = [(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads, strict=True)]
    return torch.cat(flat)


def paired_differences(
    estimator: Any, reference: Callable[..., Tensor], model: Callable, guide: Callable, params: list[Tensor],
    args: tuple, kwargs: dict, num_draws: int, seed: int,
) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """Sums of d = g - r, d^2 and r^2 over ``num_draws`` pairs, each pair drawn from one seed (the
    same particles where the two draw alike), torch's own random state left as it was."""
    total = torch.zeros(sum(p.numel() for p in params), dtype=torch.float64, device=params[0].device)
    squares, ref_squares = torch.zeros_like(total), torch.zeros_like(total)
    steps = getattr(estimator, "num_steps", None)
    devices = [params[0].device] if params[0].device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), SubsamplePin():
        for r in range(num_draws):
            torch.manual_seed(seed + r)
            g = flat_gradient(estimator.differentiable_loss(model, guide, *args, **kwargs), params)
            torch.manual_seed(seed + r)
            ref = flat_gradient(reference(model, guide, *args, **kwargs), params)
            d = (g - ref).double()
            total += d
            squares += d * d
            ref_squares += ref.double().square()
    if steps is not None:
        estimator.num_steps = steps  # a measurement is not a training step (warm-up schedules)
    return total, squares, ref_squares


def gradient_bias(
    estimator: Any,
    model: Callable,
    guide: Callable,
    *args: Any,
    groups: Mapping[str, Sequence[Tensor]],
    reference: Callable[..., Tensor] | None = None,
    num_draws: int = 1000,
    threshold: float = 3.0,
    seed: int = 0,
    **kwargs: Any,
) -> dict[str, Bias]:
    """Is the estimator's gradient unbiased for the gradient it claims? At fixed parameters and
    batch, ``num_draws`` paired draws of its gradient and of a reference unbiased estimator's
    (:func:`reference_for`, or ``reference``: a ``differentiable_loss``), per parameter group
    (e.g. ``{"encoder": [...], "decoder": [...]}``) a coordinate-wise z-test of the mean difference.

    DReG against IWAE and STL against the ELBO show no bias; STL on the IWAE bound, RWS's wake-phi,
    DReG(alpha < 1) and TVO's covariance gradient do, in the guide. The test as in Tucker et al.'s
    dreg_estimators code (google-research). References: Tucker, Lawson, Gu & Maddison 2019.
    """
    if num_draws < 2:
        raise ConfigError(f"gradient_bias needs num_draws >= 2 (a variance), got {num_draws}")
    name, fn = ("given reference", reference) if reference is not None else reference_for(estimator)
    names = list(groups)
    params = [p for n in names for p in groups[n]]
    total, squares, ref_squares = paired_differences(estimator, fn, model, guide, params, args, kwargs, num_draws, seed)
    eps = torch.finfo(params[0].dtype).eps
    out, start = {}, 0
    for n in names:
        size = sum(p.numel() for p in groups[n])
        sl = slice(start, start + size)
        rounding = ROUNDING * eps * ref_squares[sl].div(num_draws).sqrt()
        out[n] = summarize(total[sl], squares[sl], num_draws, name, threshold, rounding)
        start += size
    return out


def summarize(
    total: Tensor, squares: Tensor, n: int, reference: str, threshold: float, rounding: Tensor | None = None
) -> Bias:
    """z per scalar from the sums of d and d^2, and the group's summary; a scalar whose difference
    has a root mean square at most ``rounding`` (per scalar) is zero."""
    mean = total / n
    var = ((squares - n * mean * mean) / (n - 1)).clamp(min=0.0)
    rms = squares.div(n).sqrt()
    scale = rms.max().item() if rms.numel() else 0.0
    zero = rms <= 1e-12 * max(scale, 1e-300)
    if rounding is not None:
        zero = zero | (rms <= rounding)
    se = (var / n).sqrt()
    z = torch.where(se > 1e-12 * rms, mean.abs() / se, torch.full_like(mean, math.inf))[~zero]
    if z.numel() == 0:
        return Bias(0.0, 0.0, 0.0, total.numel(), int(zero.sum()), n, reference, threshold)
    finite = z[torch.isfinite(z)]
    mean_abs = finite.mean().item() if finite.numel() else math.inf
    return Bias((z > threshold).double().mean().item(), z.max().item(), mean_abs, total.numel(), int(zero.sum()), n,
                reference, threshold)  # fmt: skip
