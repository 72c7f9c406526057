"""A training step: the forward and backward of one batch, on the fast path or traced by Pyro, eager
or through torch.compile, and the one line that says which."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro
import torch

from .. import estimators
from ..vae import VAE

COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")
# Inductor's options of each torch.compile mode (torch._inductor.list_mode_options), with its random
# numbers drawn as eager PyTorch draws them, so compiled and eager steps see the same noise
INDUCTOR_OPTIONS = {
    "default": {},
    "reduce-overhead": {"triton.cudagraphs": True},
    "max-autotune": {"max_autotune": True, "triton.cudagraphs": True, "coordinate_descent_tuning": True},
}
Step = Callable[[torch.Tensor], torch.Tensor]


def takes_fast_path(estimator: pyro.infer.ELBO, vae: VAE) -> bool:
    """Whether training steps compute the VAE's log weights directly, without tracing."""
    if not isinstance(estimator, estimators.Estimator) or not estimator.fast_path:
        return False
    return estimators.fast_path(vae.model, vae.guide) is not None


def compile_refusal(estimator: pyro.infer.ELBO, vae: VAE) -> str | None:
    """Why the loss of ``estimator`` is not compiled (None: it can be)."""
    if not takes_fast_path(estimator, vae):
        return "it is traced by Pyro"
    assert isinstance(estimator, estimators.Estimator)
    if not vae.family.is_default:
        return "compiling is tested for pyrovae's one-Gaussian-latent VAE only; other families run eager"
    if estimator.needs_grad_scale:
        return "its gradient hooks do not survive torch.compile"
    if getattr(estimator, "sleep_phi", False):
        return "its sleep phase traces the model"
    if estimator.kl_warmup > 0:
        return "its KL warm-up changes beta every step"
    return None


def step_path(estimator: pyro.infer.ELBO, vae: VAE, compile_mode: str = "off") -> str:
    """One line: how a training step computes its loss."""
    if takes_fast_path(estimator, vae):
        sleep = " (its sleep phase traces the model)" if getattr(estimator, "sleep_phi", False) else ""
        line = f"training step: fast path, the VAE's log weights without tracing{sleep}"
    else:
        if not isinstance(estimator, estimators.Estimator):
            why = "Pyro's own estimator"
        elif not estimator.fast_path:
            why = "fast_path=false"
        else:
            why = "the model or guide does not compute its log weights directly"
        line = f"training step: generic path, the model and guide traced by Pyro every step ({why})"
    if compile_mode != "off":
        refusal = compile_refusal(estimator, vae)
        line += f"; torch.compile {compile_mode}" if refusal is None else f"; not compiled: {refusal}"
    return line


def make_step(estimator: pyro.infer.ELBO, vae: VAE, n: int, compile_mode: str = "off") -> Step:
    """x -> forward and backward of one step, returning the batch's negated bound (scaled by N / B).

    With ``compile_mode`` other than "off", pyrovae's fast-path loss goes through torch.compile
    (``"reduce-overhead"`` captures CUDA graphs on a GPU, so the step's Python cost is paid
    once); Inductor draws its random numbers as eager PyTorch does (``fallback_random``), so
    compiled and eager steps see the same noise. Estimators whose gradient relies on tensor hooks
    (``dreg``, ``rws`` with DReG wake-phi) stay eager.
    """
    if compile_mode == "off" or compile_refusal(estimator, vae) is not None:
        return lambda x: eager_step(estimator, vae, x, n)
    assert isinstance(estimator, estimators.Estimator)
    kl_weight = estimator.kl_weight  # constant: no warm-up here

    def loss(x: torch.Tensor) -> torch.Tensor:
        return estimator.objective(vae.model, vae.guide, (x,), {"num_data": n}, kl_weight)

    options: dict[str, Any] = {**INDUCTOR_OPTIONS[compile_mode], "fallback_random": True}
    compiled = torch.compile(loss, options=options, dynamic=False)

    def step(x: torch.Tensor) -> torch.Tensor:
        estimator.num_steps += 1  # the step counter stays outside the compiled code
        value = compiled(x)
        value.backward()
        return value.detach()

    return step


def eager_step(estimator: pyro.infer.ELBO, vae: VAE, x: torch.Tensor, n: int) -> torch.Tensor:
    """Forward and backward of one step: the batch's negated bound, scaled by N / B."""
    if hasattr(estimator, "differentiable_loss"):
        loss = estimator.differentiable_loss(vae.model, vae.guide, x, num_data=n)
        loss.backward()
        return loss.detach()
    # Pyro's estimators without differentiable_loss (RenyiELBO, ...) run backward themselves,
    # and only when they see param sites: register the VAE's parameters for them.
    with pyro.settings.context(module_local_params=False):
        # pyro's ELBO base class declares no loss_and_grads; every Pyro estimator defines it
        return torch.tensor(estimator.loss_and_grads(vae.model, vae.guide, x, num_data=n))  # type: ignore[attr-defined]
