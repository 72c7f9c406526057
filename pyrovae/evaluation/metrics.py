"""Test-set metrics of any model/guide pair: bounds, KL, reconstruction, active units, log p(x)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..distributed import ONE_PROCESS, Ranks
from ..errors import ConfigError
from ..estimators.draw import draw
from ..estimators.fast_path import fast_path
from ..estimators.traced import SubsamplePin, guess_max_plate_nesting
from ..estimators.weights import logmeanexp
from .log_likelihood import fixed_parameters, log_likelihood

ACTIVE_UNIT_THRESHOLD = 0.01


def bits_per_dim(nats: float, dims: int) -> float:
    """A log-likelihood (or bound) of ``dims``-dimensional discrete data in nats, as the negated
    bits per dimension that papers on 8-bit images report: -nats / (dims ln 2)."""
    return -nats / (dims * math.log(2))


def active_units(posterior_means: Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
    """Units u with Cov_x(E_q[z_u | x]) > threshold over the data set (Burda et al. 2016).

    ``posterior_means`` is ``[N, z_dim]``: E_q[z | x_n] for each data point, N >= 2 (a variance
    over one point is undefined).
    References: Burda, Grosse & Salakhutdinov 2016, "Importance Weighted Autoencoders" (sec. 5.2).
    """
    if posterior_means.shape[0] < 2:
        raise ConfigError(f"active units need the posterior means of >= 2 data points, got {posterior_means.shape[0]}")
    return int((posterior_means.var(dim=0) > threshold).sum().item())


def _posterior_mean(guide: Callable, x: Tensor, latents: dict[str, Tensor], nesting: int) -> Tensor | None:
    """E_q[z | x], ``[B, latent size]``, for active units: the guide's ``posterior_mean(x)`` where
    it has one (pyrovae's hierarchy and flow guides: every site's units, concatenated), else its
    ``distribution(x).mean`` (a Gaussian's, exact), else the mean of the particles (any guide with
    only the data plate; at 100 particles a unit with posterior scale near 1 has Monte Carlo
    variance near the 0.01 threshold itself, so such guides should offer ``posterior_mean``)."""
    if hasattr(guide, "posterior_mean"):
        return torch.cat([m.reshape(m.shape[0], -1) for m in guide.posterior_mean(x).values()], dim=-1)
    if hasattr(guide, "distribution"):
        return guide.distribution(x).mean
    if nesting != 1 or not latents:
        return None
    values = list(latents.values())  # each [K, B, *event]
    return torch.cat([v.mean(0).reshape(v.shape[1], -1) for v in values], dim=-1)  # [B, -1]


def evaluate_model(
    model: Callable,
    guide: Callable,
    batches: Iterable[Tensor],
    *,
    num_particles: int = 1,
    num_samples: int = 5000,
    chunk_size: int = 250,
    elbo_particles: int = 100,
    per_point: bool = False,
    progress: int | None = None,
    ranks: Ranks = ONE_PROCESS,
    **kwargs: Any,
) -> dict[str, Any]:
    """Average per-data-point metrics over ``batches`` (each passed as the first argument).

    - ``elbo``: E_q[log p(x | z)] - KL(q || p), the reconstruction term from ``elbo_particles``
      draws and the KL in closed form where torch knows it (Monte Carlo elsewhere).
    - ``reconstruction``, ``kl``: those two terms.
    - ``iwae_bound``: IWAE(K) at K = ``num_particles`` (the training K).
    - ``log_likelihood``: the importance-sampled log p(x) at K = ``num_samples`` (0 skips it).
    - ``active_units`` (Burda et al. 2016; from two data points on) and ``seconds``.
    ``progress``: the number of data points in ``batches``, to show a progress bar over them
    (None: no bar). All in nats per data point. ``per_point=True`` adds ``points``: each data point's
    ``elbo``, ``iwae_bound`` and ``log_likelihood`` as lists. Under data parallelism (``ranks``)
    each rank passes its shard of the points and every rank gets the result over all of them.
    """
    start = time.perf_counter()
    points: dict[str, list[Tensor]] = {}
    means: list[Tensor | None] = []
    nesting: int | None = None
    bar = tqdm(total=progress, disable=progress is None, unit="point", desc="evaluation", dynamic_ncols=True)
    with torch.no_grad(), bar, fixed_parameters(model):  # a VampPrior encodes its pseudo-inputs once
        for x in batches:
            if nesting is None:
                fast = fast_path(model, guide, (x,), kwargs) is not None
                nesting = 1 if fast else guess_max_plate_nesting(model, guide, (x,), kwargs)
            measured, mean = measure_batch(
                model, guide, x, kwargs, nesting, num_particles, num_samples, chunk_size, elbo_particles
            )
            for key, value in measured.items():
                points.setdefault(key, []).append(value)
            means.append(mean)
            bar.update(x.shape[0])
    values = {k: ranks.gather(torch.cat(v)) for k, v in points.items()}  # every rank's points, in rank order
    n = next(iter(values.values())).shape[0] if values else 0
    out: dict[str, Any] = {k: v.sum().item() / n for k, v in values.items()}
    out["iwae_particles"] = num_particles
    if num_samples:
        out["log_likelihood_samples"] = num_samples
    out["elbo_particles"] = elbo_particles
    if means and all(m is not None for m in means):
        means_all = ranks.gather(torch.cat(means))  # type: ignore[arg-type]
        if means_all.shape[0] >= 2:
            out["active_units"] = active_units(means_all)
    out["num_points"] = n
    if per_point:
        out["points"] = {k: values[k].cpu().tolist() for k in ("elbo", "iwae_bound", "log_likelihood") if k in values}
    out["seconds"] = time.perf_counter() - start
    return out


def measure_batch(
    model: Callable,
    guide: Callable,
    x: Tensor,
    kwargs: dict[str, Any],
    nesting: int,
    num_particles: int,
    num_samples: int,
    chunk_size: int,
    elbo_particles: int,
) -> tuple[dict[str, Tensor], Tensor | None]:
    """One batch's per-point measures, all on the same data points (one pin), and E_q[z | x]."""
    pin = SubsamplePin()
    w = draw(
        model,
        guide,
        (x,),
        kwargs,
        num_particles=elbo_particles,
        max_plate_nesting=nesting,
        pin=pin,
        one_scale="evaluation",
    )
    recon, kl = w.log_lik.mean(0), w.kl().mean(0)
    out = {"reconstruction": recon, "kl": kl, "elbo": recon - kl}
    mean = _posterior_mean(guide, x, w.latents, nesting)
    w = draw(model, guide, (x,), kwargs, num_particles=num_particles, max_plate_nesting=nesting, pin=pin)
    out["iwae_bound"] = logmeanexp(w.log_w(), 0)
    if num_samples:
        out["log_likelihood"] = log_likelihood(
            model,
            guide,
            x,
            num_samples=num_samples,
            chunk_size=chunk_size,
            max_plate_nesting=nesting,
            subsample_pin=pin,
            **kwargs,
        )
    return out, mean
