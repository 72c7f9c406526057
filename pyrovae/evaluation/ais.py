"""Annealed importance sampling (AIS) of log p(x), with Hamiltonian Monte Carlo transitions.

For each data point, C chains start from the initial distribution q0 (the guide, or the prior)
and move through the geometric path f_t(z) = q0(z | x)^(1 - beta_t) p(x, z)^beta_t,
0 = beta_0 < beta_1 < ... < beta_T = 1. Each chain carries the log weight

    log w = sum_{t=1..T} (beta_t - beta_{t-1}) [log p(x, z_{t-1}) - log q0(z_{t-1} | x)],

where z_t is z_{t-1} moved by an HMC transition that leaves f_t invariant (t = 1..T-1), and
log p(x) ~ log (1/C) sum_c w_c, a stochastic lower bound (Jensen) whose bias vanishes as T grows.
With T = 1 it is importance sampling with C draws of q0; with q0 the exact posterior every
weight is log p(x) at any T. Run backwards from an exact posterior sample (BDMC,
:func:`pyrovae.diagnostics.bdmc`), the same machinery gives a stochastic upper bound.

HMC: ``hmc_steps`` leapfrog steps of size epsilon_b, one step size per data point shared by its
chains, identity mass, a Metropolis correction; epsilon_b is multiplied by 1.02 after a transition
whose acceptance probability (averaged over the point's chains) is above ``target_accept`` and by
0.98 otherwise (Wu et al. 2017), within [1e-4, 1]. That adaptation makes a later kernel depend on
the chains' own history, as in Wu et al.; the effect on the weights is small (the tests find no
bias at their resolution), and ``adapt=False`` (a fixed step size) gives AIS in the strict sense,
whose estimate is a lower bound in expectation exactly. Chains and data points are one vectorized
tensor ``[C, B, D]`` on the model's device, with no host sync inside the loop.

References: Neal 2001, "Annealed Importance Sampling"; Wu, Burda, Salakhutdinov & Grosse 2017,
"On the Quantitative Analysis of Decoder-Based Generative Models"; Grosse, Ghahramani & Adams
2015, "Sandwiching the marginal likelihood using bidirectional Monte Carlo".
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..errors import ConfigError
from .densities import INITS, Densities, densities

SCHEDULES = ("sigmoid", "linear")
SIGMOID_DELTA = 4.0  # the sigmoidal schedule's steepness (Grosse et al. 2013; Wu et al. 2017)
STEP_SIZE_RANGE = (1e-4, 1.0)
ADAPT_UP, ADAPT_DOWN = 1.02, 0.98


def beta_schedule(num_steps: int, kind: str = "sigmoid", dtype: torch.dtype = torch.float64) -> Tensor:
    """beta_0 = 0 < ... < beta_T = 1, ``[T + 1]``: ``"linear"``, or ``"sigmoid"``: a logistic
    sigma(delta (2t / T - 1)) rescaled to run from 0 to 1 (delta = 4), with more steps near both
    ends, where the densities change fastest."""
    if kind not in SCHEDULES:
        raise ConfigError(f"unknown AIS schedule {kind!r}; valid: {', '.join(SCHEDULES)}")
    t = torch.linspace(0.0, 1.0, num_steps + 1, dtype=torch.float64)
    if kind == "sigmoid" and num_steps > 1:
        s = torch.sigmoid(SIGMOID_DELTA * (2 * t - 1))
        t = (s - s[0]) / (s[-1] - s[0])
    t[0], t[-1] = 0.0, 1.0
    return t.to(dtype)


@dataclass
class AISResult:
    """What an AIS run gives, per data point.

    ``log_likelihood`` ``[B]``: log (1/C) sum_c w_c. ``log_weights`` ``[C, B]``: each chain's log
    weight, for the importance diagnostics (``pyrovae.diagnostics.importance_ess``, and
    ``pareto_khat`` from C >= 100 chains). ``acceptance`` ``[B]``: the mean HMC acceptance
    probability over transitions and chains. ``step_size`` ``[B]``: the final step size;
    ``step_sizes`` ``[T - 1, B]`` every transition's, when recorded (BDMC replays them backwards).
    ``seconds``: wall time.
    """

    log_likelihood: Tensor
    log_weights: Tensor
    acceptance: Tensor
    step_size: Tensor
    num_steps: int
    num_chains: int
    hmc_steps: int
    seconds: float
    step_sizes: Tensor | None = None


def check_options(
    num_steps: int,
    num_chains: int,
    hmc_steps: int,
    step_size: float,
    target_accept: float,
    init: str,
    schedule: str,
    points_per_chunk: int | None = None,
) -> None:
    """One line naming the first bad AIS option and what it may be."""

    def whole(value: Any, name: str) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"AIS {name} must be an integer >= 1, got {value!r}")

    whole(num_steps, "num_steps")
    whole(num_chains, "num_chains")
    whole(hmc_steps, "hmc_steps")
    if not (
        isinstance(step_size, (int, float))
        and not isinstance(step_size, bool)
        and step_size > 0
        and math.isfinite(step_size)
    ):
        raise ConfigError(f"AIS step_size must be a number > 0, got {step_size!r}")
    if not (isinstance(target_accept, (int, float)) and 0 < target_accept < 1):
        raise ConfigError(f"AIS target_accept must be in (0, 1), got {target_accept!r}")
    if init not in INITS:
        raise ConfigError(f"unknown initial distribution {init!r}; valid: {', '.join(INITS)}")
    if schedule not in SCHEDULES:
        raise ConfigError(f"unknown AIS schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")
    if points_per_chunk is not None:
        whole(points_per_chunk, "points_per_chunk")


class _State:
    """The chains at one point of the path: u ``[C, B, D]``, log q0 and log p(x, z) there
    (``[C, B]``, the Jacobian term included) and their gradients in u."""

    ga: Tensor | None  # the gradients of log q0 and log p, or None inside a trajectory
    gb: Tensor | None
    g: Tensor | None  # the gradient of log f_beta inside a trajectory, else None

    def __init__(self, dens: Densities, u: Tensor, combined: float | None = None) -> None:
        with torch.enable_grad():
            u = u.detach().requires_grad_(True)
            a, b = dens.at(u)
            if combined is None:  # both gradients: this point may start the next transition
                ga = torch.autograd.grad(a.sum(), u, retain_graph=True)[0]
                gb = torch.autograd.grad(b.sum(), u)[0]
                self.ga, self.gb, self.g = ga, gb, None
            else:  # inside a trajectory only grad log f_beta is needed
                self.g = torch.autograd.grad(((1 - combined) * a + combined * b).sum(), u)[0]
                self.ga = self.gb = None
        self.u, self.a, self.b = u.detach(), a.detach(), b.detach()

    def grad(self, beta: float) -> Tensor:
        if self.g is not None:
            return self.g
        assert self.ga is not None and self.gb is not None  # a state has g or both of these
        return self.ga + beta * (self.gb - self.ga)

    def log_f(self, beta: float) -> Tensor:
        return self.a + beta * (self.b - self.a)


def _hmc(dens: Densities, s: _State, beta: float, eps: Tensor, leapfrogs: int) -> tuple[_State, Tensor]:
    """One HMC transition leaving f_beta invariant, per chain; ``eps`` ``[B]``. Returns the new
    state and the acceptance probability ``[C, B]``."""
    e = eps.reshape(1, -1, 1).to(s.u.dtype)  # [1, B, 1]
    p0 = torch.randn_like(s.u)
    p = p0 + 0.5 * e * s.grad(beta)
    u, new = s.u, s
    for step in range(leapfrogs):
        u = u + e * p
        new = _State(dens, u, None if step == leapfrogs - 1 else beta)
        p = p + (0.5 * e if step == leapfrogs - 1 else e) * new.grad(beta)
    log_accept = new.log_f(beta) - s.log_f(beta) - 0.5 * (p * p).sum(-1) + 0.5 * (p0 * p0).sum(-1)
    log_accept = torch.nan_to_num(log_accept, nan=-math.inf)  # a diverged trajectory is rejected
    accept = torch.rand_like(log_accept).log() < log_accept  # [C, B]
    keep = accept.unsqueeze(-1)
    out = _State.__new__(_State)
    out.u = torch.where(keep, new.u, s.u)
    out.a, out.b = torch.where(accept, new.a, s.a), torch.where(accept, new.b, s.b)
    # both ends of a transition have both gradients (only states inside the trajectory lack them)
    assert new.ga is not None and new.gb is not None and s.ga is not None and s.gb is not None
    out.ga, out.gb = torch.where(keep, new.ga, s.ga), torch.where(keep, new.gb, s.gb)
    out.g = None
    return out, log_accept.clamp(max=0.0).exp()


def anneal(
    dens: Densities,
    start: Tensor,
    betas: Tensor,
    *,
    hmc_steps: int,
    step_size: float | Tensor,
    target_accept: float = 0.65,
    adapt: bool = True,
    record: bool = False,
    progress: Callable[[int], None] | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """Carry chains from ``start`` ``[C, B, D]`` along ``betas`` (``[T + 1]``, from the start's
    distribution to the other end): the log weights sum_t (beta_t - beta_{t-1}) (log p - log q0)
    at each state before its transition, transitions at beta_1 .. beta_{T-1}.

    ``step_size``: a number, or one per data point ``[B]``, or one per transition and point
    ``[T - 1, B]`` (fixed, for a reverse run; no adaptation). Returns (log weights ``[C, B]``,
    mean acceptance ``[B]``, final step sizes ``[B]``, step sizes used ``[T - 1, B]`` if ``record``).
    """
    num = betas.shape[0] - 1
    chains, batch = start.shape[:2]
    fixed_eps = step_size if isinstance(step_size, Tensor) and step_size.dim() == 2 else None  # [T - 1, B]
    fixed = fixed_eps is not None
    if fixed_eps is not None:
        eps = fixed_eps[0] if num > 1 else fixed_eps.new_ones(batch)
    elif isinstance(step_size, Tensor):
        eps = step_size.to(start)
    else:
        eps = torch.full((batch,), float(step_size), dtype=start.dtype, device=start.device)
    used: list[Tensor] | None = [] if record else None
    log_w = start.new_zeros(chains, batch)
    acc_sum = start.new_zeros(batch)
    state = _State(dens, start)
    b = betas.tolist()
    for t in range(1, num + 1):
        log_w = log_w + (b[t] - b[t - 1]) * (state.b - state.a)
        if t < num:
            if fixed_eps is not None:
                eps = fixed_eps[t - 1]
            if used is not None:
                used.append(eps)
            state, acc = _hmc(dens, state, b[t], eps, hmc_steps)
            rate = acc.mean(0)  # [B]
            acc_sum = acc_sum + rate
            if adapt and not fixed:
                eps = torch.where(rate > target_accept, eps * ADAPT_UP, eps * ADAPT_DOWN).clamp(*STEP_SIZE_RANGE)
        if progress is not None:
            progress(1)
    acceptance = acc_sum / max(num - 1, 1) if num > 1 else torch.ones_like(acc_sum)
    recorded = torch.stack(used) if used else (start.new_zeros(0, batch) if used is not None else None)
    return log_w, acceptance, eps, recorded


def _chunks(args: tuple, kwargs: dict, size: int | None) -> list[tuple[tuple, dict]]:
    """The data arguments in chunks of ``size`` points: every tensor whose first dimension is the
    number of data points (that of ``args[0]``) is sliced, the rest passed as they are."""
    first = args[0] if args else None
    if size is None or not isinstance(first, Tensor) or first.dim() == 0 or size >= first.shape[0]:
        return [(args, kwargs)]
    n = first.shape[0]

    def cut(v: Any, i: int) -> Any:
        return v[i : i + size] if isinstance(v, Tensor) and v.dim() > 0 and v.shape[0] == n else v

    return [(tuple(cut(a, i) for a in args), {k: cut(v, i) for k, v in kwargs.items()}) for i in range(0, n, size)]


def ais(
    model: Callable,
    guide: Callable,
    *args: Any,
    num_steps: int = 1000,
    num_chains: int = 16,
    hmc_steps: int = 10,
    step_size: float = 0.05,
    target_accept: float = 0.65,
    schedule: str = "sigmoid",
    init: str = "guide",
    adapt: bool = True,
    points_per_chunk: int | None = None,
    max_plate_nesting: int | None = None,
    progress: bool = False,
    **kwargs: Any,
) -> AISResult:
    """Annealed importance sampling of log p(x) for each data point (see the module docstring).

    Any model/guide pair that the estimators accept, with continuous latents: the chains start
    from the guide (``init="guide"``) or from the model's prior (``init="prior"``) and are moved
    by HMC toward p(z | x) along ``num_steps`` intermediate distributions (``schedule``:
    "sigmoid" or "linear"), ``hmc_steps`` leapfrog steps a transition, the step size adapted per
    point toward ``target_accept`` (``adapt=False``: fixed at ``step_size``). ``points_per_chunk`` data
    points go at a time (every tensor argument whose first dimension is the number of data points
    is sliced; all at once by default), so memory is bounded by ``num_chains`` x
    ``points_per_chunk``; ``progress`` shows a bar over the steps.

    A guide whose log density at a new value needs an inverse (a flow guide) is correct as an
    initial distribution but slow: every leapfrog step inverts it; ``init="prior"`` is not.

    References: Neal 2001; Wu et al. 2017, "On the Quantitative Analysis of Decoder-Based
    Generative Models".
    """
    check_options(num_steps, num_chains, hmc_steps, step_size, target_accept, init, schedule, points_per_chunk)
    start = time.perf_counter()
    chunks = _chunks(args, kwargs, points_per_chunk)
    betas = beta_schedule(num_steps, schedule)
    options: dict[str, Any] = {
        "hmc_steps": hmc_steps,
        "step_size": step_size,
        "target_accept": target_accept,
        "adapt": adapt,
    }
    runs, bar = [], None
    with torch.no_grad():
        for chunk_args, chunk_kwargs in chunks:
            dens = densities(
                model,
                guide,
                chunk_args,
                chunk_kwargs,
                num_chains=num_chains,
                init=init,
                max_plate_nesting=max_plate_nesting,
            )
            if bar is None:  # after the first chunk's checks: a refusal is one line, without a bar
                bar = tqdm(
                    total=num_steps * len(chunks), disable=not progress, unit="step", desc="AIS", dynamic_ncols=True
                )
            runs.append(anneal(dens, dens.initial, betas, progress=bar.update, **options))
    assert bar is not None
    bar.close()
    log_w = torch.cat([r[0] for r in runs], dim=1)  # [C, B]
    acceptance, step_sizes = torch.cat([r[1] for r in runs]), torch.cat([r[2] for r in runs])
    return AISResult(
        log_likelihood=log_w.logsumexp(0) - math.log(num_chains),
        log_weights=log_w,
        acceptance=acceptance,
        step_size=step_sizes,
        num_steps=num_steps,
        num_chains=num_chains,
        hmc_steps=hmc_steps,
        seconds=time.perf_counter() - start,
    )
