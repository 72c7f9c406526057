"""AIS beside importance sampling on the same points: how far IS sits below the annealed estimate."""

from __future__ import annotations

import time
from typing import Any

import pyro
import torch

from ..vae import VAE
from .ais import ais
from .log_likelihood import log_likelihood


def ais_against_is(
    vae: VAE,
    x: torch.Tensor,
    *,
    num_samples: int,
    chunk_size: int,
    batch_size: int,
    progress: bool = False,
    is_points: torch.Tensor | None = None,
    **ais_options: Any,
) -> dict[str, Any]:
    """AIS log p(x) of ``x`` (options of :func:`~pyrovae.evaluation.ais.ais`, ``batch_size`` points at a
    time) beside the IS estimate at K = ``num_samples`` on the same points (given as ``is_points``
    when already computed), in nats per point: ``log_likelihood_ais``, ``log_likelihood_is``,
    ``is_minus_ais`` (how far IS sits below AIS; negative: IS understates log p(x)), the per-point
    values under ``points``, the HMC acceptance and each method's seconds."""
    with pyro.settings.context(module_local_params=True), pyro.validation_enabled(False):
        result = ais(vae.model, vae.guide, x, points_per_chunk=batch_size, progress=progress, **ais_options)
        start = time.perf_counter()
        if is_points is None:
            is_points = torch.cat(
                [
                    log_likelihood(vae.model, vae.guide, chunk, num_samples=num_samples, chunk_size=chunk_size)
                    for chunk in x.split(batch_size)
                ]
            )
        is_seconds = time.perf_counter() - start
    return {
        "num_points": x.shape[0],
        "log_likelihood_ais": result.log_likelihood.mean().item(),
        "log_likelihood_is": is_points.mean().item(),
        "is_minus_ais": (is_points - result.log_likelihood).mean().item(),
        "acceptance": result.acceptance.mean().item(),
        "ais": {
            "num_steps": result.num_steps,
            "num_chains": result.num_chains,
            "hmc_steps": result.hmc_steps,
            **{k: v for k, v in ais_options.items() if k not in ("num_steps", "num_chains", "hmc_steps")},
        },
        "is_samples": num_samples,
        "seconds_ais": result.seconds,
        "seconds_is": is_seconds,
        "points": {"ais": result.log_likelihood.cpu().tolist(), "is": is_points.cpu().tolist()},
    }
