"""Inference suboptimality: the approximation gap and the amortization gap (Cremer et al. 2018)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from ..errors import ModelStructureError
from ..estimators import make
from ..evaluation.log_likelihood import log_likelihood


@runtime_checkable
class LocalGuide(Protocol):
    """A guide that exposes its per-data-point distribution parameters.

    ``local_parameters(x)`` returns the encoder's output for each data point as unconstrained
    tensors ``[B, ...]``; ``local_guide(params)`` returns a guide with the guide's own signature
    that uses those parameters instead of the encoder. pyrovae's ``VAEGuide`` implements it.
    """

    def local_parameters(self, x: Tensor) -> dict[str, Tensor]: ...

    def local_guide(self, params: dict[str, Tensor]) -> Callable: ...


def amortization_gaps(
    model: Callable,
    guide: Callable,
    x: Tensor,
    *,
    steps: int = 300,
    lr: float = 1e-2,
    num_particles: int = 8,
    elbo_samples: int = 1000,
    num_samples: int = 5000,
    max_plate_nesting: int | None = None,
    **kwargs: Any,
) -> dict[str, Tensor]:
    """Per data point of ``x``: the approximation and amortization gaps of ``guide``.

    q* is the best member of the guide's family for each data point alone: its local parameters
    start at the encoder's output and ascend the ELBO with sticking-the-landing gradients
    (``steps`` Adam steps with a step size decaying linearly to zero, ``num_particles``
    particles; at an exact q the gradients vanish, so q stays put). Then

        approximation gap = log p(x) - ELBO(q*),    amortization gap = ELBO(q*) - ELBO(q),

    with each ELBO from ``elbo_samples`` particles and log p(x) importance-sampled with q* as the
    proposal (``num_samples`` particles). All three are estimates and the two bounds are lower
    bounds, so a gap near zero can come out slightly negative.

    Returns tensors ``[B]``: ``log_likelihood``, ``elbo_amortized``, ``elbo_optimal``,
    ``approximation_gap``, ``amortization_gap``.

    References: Cremer, Li & Duvenaud 2018, "Inference Suboptimality in Variational Autoencoders".
    """
    if not isinstance(guide, LocalGuide):
        raise ModelStructureError(
            "the amortization and approximation gaps need a guide that exposes its per-point "
            "parameters (local_parameters(x) and local_guide(params), as pyrovae's VAEGuide "
            f"does); {type(guide).__name__} does not"
        )
    nest = {"max_plate_nesting": max_plate_nesting} if max_plate_nesting else {}
    elbo = make("elbo", num_particles=elbo_samples, **nest)
    with torch.no_grad():
        elbo_amortized = elbo.bound(model, guide, x, **kwargs)
        start = guide.local_parameters(x)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in start.items()}
    local = guide.local_guide(params)
    stl = make("stl", num_particles=num_particles, **nest)
    opt = torch.optim.Adam(list(params.values()), lr=lr)
    # the step size decays linearly to zero: Adam's normalized steps would otherwise keep
    # jittering by about lr around the optimum, where the gradients are rounding noise
    decay = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: max(0.0, 1.0 - t / max(steps, 1)))
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = stl.differentiable_loss(model, local, x, **kwargs)
        grads = torch.autograd.grad(loss, list(params.values()))  # the model stays as it is
        for p, g in zip(params.values(), grads, strict=True):
            p.grad = g
        opt.step()
        decay.step()
    with torch.no_grad():
        elbo_optimal = elbo.bound(model, local, x, **kwargs)
        ll = log_likelihood(model, local, x, num_samples=num_samples, **nest, **kwargs)
    return {
        "log_likelihood": ll,
        "elbo_amortized": elbo_amortized,
        "elbo_optimal": elbo_optimal,
        "approximation_gap": ll - elbo_optimal,
        "amortization_gap": elbo_optimal - elbo_amortized,
    }
