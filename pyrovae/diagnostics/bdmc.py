"""Bidirectional Monte Carlo (BDMC): log p(x) bracketed from both sides on simulated data.

On data simulated from the model, (z*, x) ~ p(z) p(x | z), z* is an exact draw of p(z | x). AIS
run forward, from q0 to p(z | x), gives a stochastic lower bound on log p(x); run backward along
the same path from z*, its weights estimate 1 / p(x) without bias, so

    upper(x) = -log (1/C) sum_c w_c^rev  >=  log p(x)  (in expectation)  >=  lower(x).

The bracket's width bounds the error of the forward AIS estimate on such data, and of any other
estimate that lies inside it: the importance-sampled log p(x) at the same cost is given beside it.
The backward run uses the step sizes the forward run adapted, transition by transition, so its
kernels do not depend on its own chains.

References: Grosse, Ghahramani & Adams 2015, "Sandwiching the marginal likelihood using
bidirectional Monte Carlo"; Wu, Burda, Salakhutdinov & Grosse 2017, "On the Quantitative Analysis
of Decoder-Based Generative Models".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..errors import ConfigError
from ..estimators.simulated import SimulatedData, simulate_data
from ..estimators.structure import site_value
from ..estimators.traced import SubsamplePin
from ..estimators.weights import logmeanexp
from ..evaluation.ais import anneal, beta_schedule, check_options
from ..evaluation.densities import Densities, densities
from ..evaluation.log_likelihood import log_likelihood


@dataclass
class BDMCResult:
    """Per simulated data point ``[B]``: ``lower`` (forward AIS), ``upper`` (reverse AIS),
    ``gap`` = upper - lower, ``importance`` (IS with ``is_samples`` draws of the guide: the same
    number of model evaluations as the forward run); ``x`` the simulated data, ``seconds`` the time
    of each part (``forward``, ``reverse``, ``importance``), ``acceptance`` the forward run's."""

    x: Tensor
    lower: Tensor
    upper: Tensor
    importance: Tensor
    is_samples: int
    acceptance: Tensor
    seconds: dict[str, float]

    @property
    def gap(self) -> Tensor:
        return self.upper - self.lower

    def summary(self) -> dict[str, float]:
        """Means over the points: lower, upper, gap, importance, and IS minus the lower bound."""
        return {
            "lower": self.lower.mean().item(),
            "upper": self.upper.mean().item(),
            "gap": self.gap.mean().item(),
            "importance": self.importance.mean().item(),
            "importance_minus_lower": (self.importance - self.lower).mean().item(),
        }


def bdmc(
    model: Callable,
    guide: Callable,
    num_points: int,
    *args: Any,
    num_steps: int = 1000,
    num_chains: int = 16,
    hmc_steps: int = 10,
    step_size: float = 0.05,
    target_accept: float = 0.65,
    schedule: str = "sigmoid",
    init: str = "guide",
    is_samples: int | None = None,
    is_chunk_size: int = 1000,
    max_plate_nesting: int | None = None,
    progress: bool = False,
    **kwargs: Any,
) -> BDMCResult:
    """Simulate ``num_points`` data points from ``model`` and bracket each one's log p(x) by forward
    and reverse AIS (see the module docstring), with the IS estimate of the same cost beside it.

    ``args`` and ``kwargs`` are what the model is called with for a batch of ``num_points`` data
    points (e.g. ``torch.zeros(num_points, 784)`` for pyrovae's VAE): the data's values are not used,
    the simulated data take their place. The AIS options are those of
    :func:`pyrovae.evaluation.ais.ais`; ``is_samples`` is K of the IS estimate, by default
    ``num_chains * (1 + (num_steps - 1) * hmc_steps)``, the forward run's number of evaluations of
    p(x, z), drawn ``is_chunk_size`` at a time.

    References: Grosse et al. 2015; Wu et al. 2017.
    """
    check_options(num_steps, num_chains, hmc_steps, step_size, target_accept, init, schedule)
    cost = num_chains * (1 + (num_steps - 1) * hmc_steps)  # the forward run's evaluations of p(x, z)
    k = _check_arguments(num_points, args, cost if is_samples is None else is_samples)
    seconds: dict[str, float] = {}
    pin = SubsamplePin()
    bar = tqdm(total=2 * num_steps, disable=not progress, unit="step", desc="BDMC", dynamic_ncols=True)
    with torch.no_grad(), bar:
        sim = simulate_data(model, args, kwargs, pin, "bdmc")
        betas = beta_schedule(num_steps, schedule)
        with timed(seconds, "forward"):
            fwd = densities(
                model,
                guide,
                sim.args,
                kwargs,
                num_chains=num_chains,
                init=init,
                max_plate_nesting=max_plate_nesting,
                pin=pin,
            )
            log_w, acceptance, _, used = anneal(
                fwd,
                fwd.initial,
                betas,
                hmc_steps=hmc_steps,
                step_size=step_size,
                target_accept=target_accept,
                record=True,
                progress=bar.update,
            )
        with timed(seconds, "reverse"):
            log_w_reverse = _reverse(fwd, sim, betas, used, hmc_steps, bar.update)
    with torch.no_grad(), timed(seconds, "importance"):
        importance = log_likelihood(
            model,
            guide,
            *sim.args,
            num_samples=k,
            chunk_size=min(is_chunk_size, k),
            max_plate_nesting=max_plate_nesting,
            subsample_pin=pin,
            **kwargs,
        )
    lower, upper = logmeanexp(log_w, 0), -logmeanexp(log_w_reverse, 0)
    return BDMCResult(sim.x, lower, upper, importance, k, acceptance, seconds)


def _check_arguments(num_points: int, args: tuple, k: Any) -> int:
    """The number of simulated points, the model's arguments for them, K of the IS estimate."""
    if not isinstance(num_points, int) or isinstance(num_points, bool) or num_points < 1:
        raise ConfigError(f"bdmc num_points must be an integer >= 1, got {num_points!r}")
    first = args[0] if args else None
    if not isinstance(first, Tensor) or first.dim() == 0 or first.shape[0] != num_points:
        got = tuple(first.shape) if isinstance(first, Tensor) else type(first).__name__
        raise ConfigError(
            f"bdmc needs the model's arguments for a batch of num_points={num_points} data points, "
            f"the data first (got {got}); e.g. torch.zeros({num_points}, x_dim)"
        )
    if not isinstance(k, int) or k < 1:
        raise ConfigError(f"bdmc is_samples must be an integer >= 1, got {k!r}")
    return k


def _reverse(
    fwd: Densities,
    sim: SimulatedData,
    betas: Tensor,
    used: Tensor | None,
    hmc_steps: int,
    progress: Callable[[int], Any],
) -> Tensor:
    """The reverse run: from the exact posterior sample that simulated each point, back along the
    forward run's schedule and step sizes (strict AIS: no adaptation), so it is exact in reverse."""
    exact = {name: site_value(site) for name, site in sim.latents.nodes.items()}
    missing = {s.name for s in fwd.sites} - set(exact)
    if missing:
        raise ConfigError(f"bdmc: the model's simulation did not draw {sorted(missing)}")
    assert used is not None
    log_w, _, _, _ = anneal(
        fwd,
        fwd.flatten(exact),
        betas.flip(0),
        hmc_steps=hmc_steps,
        step_size=used.flip(0),
        adapt=False,
        progress=progress,
    )
    return log_w


@contextmanager
def timed(seconds: dict[str, float], key: str) -> Iterator[None]:
    """``seconds[key]``: the wall time of the block."""
    start = time.perf_counter()
    yield
    seconds[key] = time.perf_counter() - start
