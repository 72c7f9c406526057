"""The fast path: pyrovae's own VAE's log weights computed directly, without Pyro's tracing.

When the model and guide are a ``VAEModel`` and a ``VAEGuide`` and no Pyro effect handler is
active (SVI's parameter capture aside), the log weights are the encoder, one draw of noise, the
decoder and the likelihood, with no trace: the same tensors the traced path builds, from the same
random numbers, in the same order. Every estimator reads them through the same
:class:`~pyrovae.estimators.weights.LogWeights`, so the estimator semantics are untouched; the
test suite checks both paths give the same losses and gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pyro.distributions as dist
import torch
from pyro.poutine.runtime import _PYRO_STACK
from pyro.poutine.trace_messenger import TraceMessenger
from torch import Tensor
from torch.distributions import kl_divergence

from ..vae import VAEGuide, VAEModel, _check_device, register_module
from .weights import LogWeights, _scale_hook, guess_max_plate_nesting
from .weights import log_weights as traced_log_weights

LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))


def normal_log_prob(value: Tensor, loc: Tensor, scale: Tensor) -> Tensor:
    """log N(value; loc, scale^2) per element, without building a distribution object (at small
    batches a step's time is mostly such Python costs)."""
    return -0.5 * ((value - loc) / scale) ** 2 - scale.log() - LOG_SQRT_2PI


def std_normal_log_prob(value: Tensor) -> Tensor:
    """log N(value; 0, 1) per element: pyrovae's prior."""
    return -0.5 * value * value - LOG_SQRT_2PI


def applies(model: Callable, guide: Callable, args: tuple, kwargs: dict) -> bool:
    """Whether the direct path computes exactly what tracing ``model`` and ``guide`` would."""
    if not (isinstance(model, VAEModel) and isinstance(guide, VAEGuide)):
        return False
    if len(args) != 1 or not isinstance(args[0], Tensor) or set(kwargs) - {"num_data"}:
        return False
    # an active handler (poutine.scale, condition, ...) changes the model; SVI's capture of
    # parameter sites does not, and the modules still register their parameters for it
    return all(isinstance(m, TraceMessenger) and m.param_only for m in _PYRO_STACK)


def log_weights(
    model: Any,
    guide: Any,
    x: Tensor,
    num_data: int | None = None,
    *,
    num_particles: int,
    detach_latents: bool = False,
    stop_guide: bool = False,
    grad_scale_latents: bool = False,
) -> LogWeights:
    """:class:`LogWeights` ``[K, B]`` of pyrovae's VAE at data ``x`` (see the module docstring)."""
    register_module(guide.pyro_name, guide)
    register_module(model.pyro_name, model)
    _check_device(x, model.prior_loc)
    b = x.shape[0]
    if num_data is not None and num_data < b:
        raise ValueError(f"num_data={num_data} is smaller than the batch ({b})")
    scale = 1.0 if num_data is None or num_data == b else num_data / b

    loc, sd = guide.encoder(x)  # [B, z_dim] each
    eps = torch.empty((num_particles, *loc.shape), dtype=loc.dtype, device=loc.device).normal_()
    z = loc + eps * sd  # [K, B, z_dim], as Normal.rsample draws it
    z_model = z.detach() if detach_latents else z
    grad_scale: dict[str, Any] | None = None
    if grad_scale_latents:
        grad_scale = {}
        if z_model.requires_grad:
            z_model = z_model.view_as(z_model)  # the model's own view of z carries the hook
            z_model.register_hook(_scale_hook(grad_scale, event_dim=1, nesting=1))
    log_prior = std_normal_log_prob(z_model).sum(-1)  # [K, B]
    log_lik = model.likelihood(model.decoder(z_model)).log_prob(x)  # [K, B]
    log_q = normal_log_prob(z.detach() if detach_latents else z, loc, sd).sum(-1)  # [K, B]

    def kl() -> Tensor:
        q = dist.Normal(loc, sd, validate_args=False)
        prior = dist.Normal(model.prior_loc, model.prior_scale, validate_args=False)
        return kl_divergence(q, prior).sum(-1).expand_as(log_q)

    def model_at_detached() -> tuple[Tensor, Tensor]:
        zd = z.detach()
        lik = model.likelihood(model.decoder(zd)).log_prob(x)
        return lik, std_normal_log_prob(zd).sum(-1)

    def log_q_stop() -> Tensor:
        direct = normal_log_prob(z.detach(), loc, sd).sum(-1)  # d log q / dphi at fixed z
        return log_q - direct + direct.detach()

    return LogWeights(
        log_lik, log_prior, log_q, scale,
        kl_fn=kl, log_q_stop_fn=log_q_stop if stop_guide else None, grad_scale=grad_scale,
        latents={"z": z}, model_at_detached_fn=model_at_detached,
    )  # fmt: skip


def draw(
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict,
    *,
    num_particles: int,
    max_plate_nesting: int | None = None,
    fast: bool | None = None,
    **flags: Any,
) -> LogWeights:
    """Log weights by the fast path when it applies, else by tracing: the one entry point for
    estimators, the log-likelihood and the diagnostics. ``fast``: None checks :func:`applies`,
    True or False says it was checked already. ``flags``: ``detach_latents``, ``stop_guide``,
    ``grad_scale_latents``."""
    if fast if fast is not None else applies(model, guide, args, kwargs):
        return log_weights(model, guide, *args, **kwargs, num_particles=num_particles, **flags)
    if max_plate_nesting is None:
        max_plate_nesting = guess_max_plate_nesting(model, guide, args, kwargs)
    return traced_log_weights(model, guide, args, kwargs, num_particles=num_particles,
                              max_plate_nesting=max_plate_nesting, **flags)  # fmt: skip
