"""Calling an estimator on the linear-Gaussian problem as a user would, in each plate form, on a
chosen draw; and the small statistics the checks share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro
import torch
from torch import Tensor

from .linear_gaussian import LinearGaussian

IDX = torch.tensor([4, 1, 3])  # the mini-batch of subsample=idx: 3 of the 6 points, out of order
BATCH = len(IDX)


def args_of(problem: LinearGaussian, form: str) -> tuple:
    """The model/guide arguments of a plate form: the mini-batch's points as a full batch, the data
    with ``subsample=idx``, or the data with ``subsample_size``; ``"all"``: every point, full."""
    x = problem.x
    return {"all": (x,), "full": (x[IDX],), "idx": (x, IDX), "size": (x, None, BATCH)}[form]


def call(fn: Callable, problem: LinearGaussian, form: str, seed: int) -> tuple[Any, Tensor]:
    """``fn(model, guide, *args)`` on the draw of ``seed``: its value and the points it scored."""
    problem.clear()
    pyro.set_rng_seed(seed)
    value = fn(problem.model, problem.guide, *args_of(problem, form))
    seen = problem.model.seen + problem.guide.seen
    points = IDX if form == "full" else seen[0] if seen else IDX
    return value, points


def scale_of(problem: LinearGaussian, form: str) -> float:
    """N / B of the form's plate."""
    return problem.x.shape[0] / BATCH if form in ("idx", "size") else 1.0


def flat_grad(output: Tensor, params: list[torch.nn.Parameter]) -> Tensor:
    """d output / d params as one float64 vector (zeros where a parameter does not reach it)."""
    grads = torch.autograd.grad(output, params, allow_unused=True)
    flat = [(torch.zeros_like(p) if g is None else g).reshape(-1).double() for p, g in zip(params, grads, strict=True)]
    return torch.cat(flat)


def close(a: float, b: float, rtol: float = 1e-7) -> bool:
    return abs(a - b) <= rtol * (1.0 + abs(a) + abs(b))


def worst_z(mean_a: Tensor, mean_b: Tensor, se: Tensor) -> tuple[float, int]:
    """The largest |z| of a coordinate-wise difference of means, and its coordinate (coordinates with
    no spread compare with a small absolute slack)."""
    slack = 1e-7 * (1.0 + mean_b.abs().max().item())
    z = ((mean_a - mean_b).abs() - slack).clamp(min=0) / (se + 1e-300)
    i = int(z.argmax())
    return float(z[i]), i
