"""SUMO as an evaluator: an unbiased estimate of log p(x) per data point, in bounded memory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError
from ..estimators.draw import draw
from ..estimators.sumo import count_generator, draw_count, expected_count, tail
from ..estimators.traced import SubsamplePin


def sumo_log_likelihood(
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict,
    *,
    num_samples: int,
    chunk_size: int,
    fast: Any,
    max_plate_nesting: int | None,
    pin: SubsamplePin,
    cutoff: int = 80,
    decay: float = 0.9,
) -> Tensor:
    """SUMO (Luo et al. 2020) per data point, ``[B]``: IWAE(m) plus the roulette-weighted increments
    IWAE(t) - IWAE(t - 1), t = m + 1 .. m + Kc, with m = ``num_samples`` and Kc drawn once for the
    call (P(Kc >= k) = 1 / k up to ``cutoff``, then (1 / cutoff) decay^(k - cutoff): on average
    m + 5.08 draws at the defaults). Unbiased for log p(x), where IWAE(m) is biased low; its
    variance is larger. The m + Kc particles are drawn ``chunk_size`` at a time into a running
    logsumexp, as :func:`~pyrovae.evaluation.log_likelihood` does."""
    if isinstance(cutoff, bool) or not isinstance(cutoff, int) or cutoff < 1 or not 0.0 < decay < 1.0:
        raise ConfigError(f"sumo: cutoff must be an integer >= 1 and decay in (0, 1), got {cutoff!r}, {decay!r}")
    total = num_samples + draw_count(cutoff, decay, count_generator())
    running: Tensor | None = None
    previous: Tensor | None = None  # IWAE(t - 1)
    estimate: Tensor | None = None
    done = 0
    while done < total:
        k = min(chunk_size, total - done)
        lw = draw(model, guide, args, kwargs, num_particles=k, max_plate_nesting=max_plate_nesting, fast=fast,
                  pin=pin, one_scale="log_likelihood").log_w()  # fmt: skip
        sums = lw.logcumsumexp(0) if running is None else torch.logaddexp(running, lw.logcumsumexp(0))  # [k, B]
        t = torch.arange(done + 1, done + k + 1, device=lw.device, dtype=lw.dtype)[:, None]
        iwae = sums - t.log()  # IWAE(t) for the t of this chunk
        before = torch.cat([iwae[:1] if previous is None else previous[None], iwae[:-1]])  # IWAE(t - 1)
        weight = tail((t - num_samples).clamp_min(1).squeeze(1), cutoff, decay).to(lw)[:, None]
        past_m = (t > num_samples).to(lw)
        increments = (past_m * (iwae - before) / weight).sum(0)
        if done < num_samples <= done + k:
            estimate = iwae[num_samples - done - 1]
        estimate = increments if estimate is None else estimate + increments
        running, previous, done = sums[-1], iwae[-1], done + k
    assert estimate is not None
    return estimate


def expected_draws(num_samples: int, cutoff: int = 80, decay: float = 0.9) -> float:
    """The particles :func:`sumo_log_likelihood` draws a call on average: m + E[Kc]."""
    return num_samples + expected_count(cutoff, decay)
