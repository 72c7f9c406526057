"""The likelihood contract as checks: ``check_likelihood(name_or_class, **options)``.

A likelihood maps decoder output to a distribution over a data vector. The checks: it is a
:class:`~pyrovae.likelihoods.Likelihood` whose options are declared (typed, with defaults); its
distributions have the shapes the estimators rely on; each is normalized (summed over a discrete
support, integrated numerically over a continuous one, one dimension at a time); samples agree
with ``log_prob`` (their mean, and for a discrete support every value's frequency); its data check
refuses values outside the support and accepts its own samples; it pickles.
"""

from __future__ import annotations

import functools
import inspect
import math
import pickle
from collections.abc import Callable
from typing import Any

import torch
from torch.distributions import constraints

from .. import likelihoods
from ..errors import DataError
from ..likelihoods import Likelihood
from ..registry import option_types
from .report import Check, CheckFailed, Report, run_checks

SAMPLES = 20000
Z_LIMIT = 5.0
GRID = 200001  # points of the numerical integration of a continuous density
PROBES = (-1.0, -0.5, 0.5, 1.5, 2.5, 256.0)  # values some supports hold and others do not


class Subject:
    def __init__(self, likelihood: str | type, options: dict[str, Any]) -> None:
        self.likelihood, self.options = likelihood, dict(options)
        self.cls = likelihoods.REGISTRY.get(likelihood) if isinstance(likelihood, str) else likelihood
        name = likelihood if isinstance(likelihood, str) else f"{likelihood.__module__}:{likelihood.__qualname__}"
        self.label = name + "".join(f" {k}={v}" for k, v in sorted(self.options.items()))

    def make(self, x_dim: int = 1) -> Likelihood:
        if isinstance(self.likelihood, str):
            return likelihoods.make(self.likelihood, x_dim=x_dim, **self.options)
        return self.likelihood(x_dim=x_dim, **self.options)

    def distributions(self, x_dim: int = 1, n: int = 4) -> tuple[Likelihood, Any]:
        """The likelihood and its distribution at ``n`` random decoder outputs (seeded)."""
        lik = self.make(x_dim).double()
        g = torch.Generator().manual_seed(0)
        params = torch.randn(n, lik.num_params * x_dim, generator=g, dtype=torch.float64)
        return lik, lik(params)


def likelihood_checks(likelihood: str | type, **options: Any) -> list[Check]:
    """The contract checks of a likelihood, each a callable :class:`Check` (see
    :func:`pyrovae.testing.estimator_checks` for a pytest parametrization)."""
    s = Subject(likelihood, options)
    found: list[tuple[str, Callable[[Subject], str]]] = [
        ("is_a_likelihood", is_a_likelihood),
        ("declarative_options", declarative_options),
        ("shapes", shapes),
        ("normalized", normalized),
        ("samples_match_log_prob", samples_match_log_prob),
        ("support", support),
        ("pickles", pickles),
    ]
    return [Check(name, functools.partial(fn, s), s.label) for name, fn in found]


def check_likelihood(likelihood: str | type, *, skip: tuple[str, ...] = (), **options: Any) -> Report:
    """Run every contract check on ``likelihood`` (built with ``options``) and return the report."""
    return run_checks(Subject(likelihood, options).label, likelihood_checks(likelihood, **options), skip)


def fail(s: Subject, message: str) -> CheckFailed:
    return CheckFailed(f"{s.label}: {message}")


def is_a_likelihood(s: Subject) -> str:
    if not (isinstance(s.cls, type) and issubclass(s.cls, Likelihood)):
        raise fail(s, "is not a subclass of pyrovae.likelihoods.Likelihood")
    lik = s.make(3)
    if not (isinstance(lik.num_params, int) and lik.num_params >= 1) or lik.data_kind not in (
        "binary",
        "unit",
        "counts",
    ):
        raise fail(s, f"num_params {lik.num_params!r} (needs an integer >= 1) or data_kind {lik.data_kind!r} "
                   "(binary, unit or counts)")  # fmt: skip
    return f"a Likelihood: {lik.num_params} decoder output(s) a dimension, {lik.data_kind} data"


def declarative_options(s: Subject) -> str:
    """Every option is a typed keyword with a default, so a config value is checked by name."""
    params = {p.name: p for p in inspect.signature(s.cls).parameters.values()}
    hints = option_types(s.cls)
    bad = [
        n for n in hints if n != "x_dim" and (hints[n] is Any or (n in params and params[n].default is params[n].empty))
    ]
    if bad:
        raise fail(s, f"option(s) {', '.join(bad)} need a type annotation and a default, so that a config value is "
                   "checked (and one can be left out)")  # fmt: skip
    return f"options {', '.join(n for n in hints if n != 'x_dim') or '(none)'}: typed, with defaults"


def shapes(s: Subject) -> str:
    lik, d = s.distributions(x_dim=3, n=5)
    if tuple(d.batch_shape) != (5,) or tuple(d.event_shape) != (3,):
        raise fail(s, f"decoder output [5, {lik.num_params} * 3] gives batch shape {tuple(d.batch_shape)} and event "
                   f"shape {tuple(d.event_shape)}, not (5,) and (3,)")  # fmt: skip
    x = d.sample()
    if tuple(d.log_prob(x).shape) != (5,) or tuple(x.shape) != (5, 3):
        raise fail(s, f"samples have shape {tuple(x.shape)} and their log_prob {tuple(d.log_prob(x).shape)}, not "
                   "(5, 3) and (5,)")  # fmt: skip
    return "batch shape [B], event shape [x_dim]; log_prob [B]"


def base_support(d: Any) -> Any:
    return d.support.base_constraint if isinstance(d.support, constraints.independent) else d.support


def support_values(d: Any) -> torch.Tensor | None:
    """The values of a discrete one-dimensional support (None for a continuous one)."""
    base = base_support(d)
    if not getattr(base, "is_discrete", False):
        return None
    if base is constraints.boolean:
        return torch.tensor([0.0, 1.0], dtype=torch.float64)
    top = getattr(base, "upper_bound", None)
    if top is None:  # unbounded above (Poisson): far past the largest mean
        top = int((d.mean + 60 * d.variance.sqrt() + 60).max())
    return torch.arange(int(base.lower_bound), int(top) + 1, dtype=torch.float64)


def grid_of(d: Any) -> torch.Tensor:
    """Integration points over a continuous one-dimensional support."""
    base = base_support(d)
    if isinstance(base, constraints.interval):
        lo, hi = float(base.lower_bound), float(base.upper_bound)
    else:
        sd = d.variance.sqrt().max().item()
        lo, hi = d.mean.min().item() - 60 * sd, d.mean.max().item() + 60 * sd
    return torch.linspace(lo, hi, GRID, dtype=torch.float64)


def density_on(d: Any) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """(points, p at the points [points, B], discrete?) over the support, x_dim = 1."""
    values = support_values(d)
    points = values if values is not None else grid_of(d)
    p = d.log_prob(points.reshape(-1, 1, 1).expand(-1, d.batch_shape[0], 1)).exp()  # [points, B]
    return points, p, values is not None


def masses(points: torch.Tensor, p: torch.Tensor, discrete: bool) -> torch.Tensor:
    return p.sum(0) if discrete else torch.trapezoid(p, points, dim=0)


def normalized(s: Subject) -> str:
    _, d = s.distributions()
    points, p, discrete = density_on(d)
    mass = masses(points, p, discrete)
    if not torch.allclose(mass, torch.ones_like(mass), atol=2e-3):
        how = "summed over its support" if discrete else f"integrated over [{points[0]:.3g}, {points[-1]:.3g}]"
        raise fail(s, f"exp(log_prob) {how} is {mass.tolist()} at four decoder outputs, not 1")
    return f"total mass {mass.min():.5f} .. {mass.max():.5f} ({'sum' if discrete else 'integral'}, 4 decoder outputs)"


def samples_match_log_prob(s: Subject) -> str:
    _, d = s.distributions()
    torch.manual_seed(1)
    x = d.sample((SAMPLES,)).squeeze(-1)  # [S, B]
    points, p, discrete = density_on(d)
    p = p / masses(points, p, discrete)  # normalized: a wrong constant is the check above's finding
    mean = masses(points, p * points.unsqueeze(-1), discrete)  # [B]
    sd = (masses(points, p * points.unsqueeze(-1) ** 2, discrete) - mean**2).clamp(min=0).sqrt()  # log_prob's own
    z = ((x.mean(0) - mean).abs() / (sd / math.sqrt(SAMPLES) + 1e-9)).max().item()
    if not z <= Z_LIMIT:  # NaN too
        raise fail(s, f"sample means {x.mean(0).tolist()} but log_prob's means {mean.tolist()} (z = {z:.1f}, "
                   f"{SAMPLES} samples): sample and log_prob describe different distributions")  # fmt: skip
    if discrete:
        freq = (x.unsqueeze(0) == points.reshape(-1, 1, 1)).double().mean(1)  # [points, B]
        se = (p * (1 - p) / SAMPLES).sqrt() + 1e-4
        zf = ((freq - p).abs() / se).max().item()
        if not zf <= Z_LIMIT + 1:
            raise fail(s, f"sample frequencies differ from exp(log_prob) (largest z = {zf:.1f}, {SAMPLES} samples)")
        z = max(z, zf)
    return f"sample means and {'frequencies' if discrete else 'means'} agree with log_prob (largest z {z:.2f})"


def support(s: Subject) -> str:
    lik, d = s.distributions()
    lik.check_data(d.sample())  # its own samples are data it takes
    outside = [v for v in PROBES if not bool(d.support.check(torch.tensor([[v]], dtype=torch.float64)).all())]
    accepted = []
    for v in outside:
        try:
            lik.check_data(torch.tensor([[v]], dtype=torch.float64))
        except DataError:
            continue
        accepted.append(v)
    if accepted:
        raise fail(s, f"check_data accepts {accepted}, outside its distribution's support {d.support}: the data check "
                   "must refuse what log_prob cannot score")  # fmt: skip
    return f"takes its own samples, refuses {outside or 'nothing it was shown'}"


def pickles(s: Subject) -> str:
    lik = s.make(3)
    try:
        copy = pickle.loads(pickle.dumps(lik))
    except Exception as e:
        raise fail(s, f"does not pickle ({type(e).__name__}: {e})") from e
    params = torch.randn(2, lik.num_params * 3)
    x = lik(params).sample()
    if not torch.allclose(lik(params).log_prob(x), copy(params).log_prob(x)):
        raise fail(s, "scores data differently after pickling")
    return "pickles, and the copy scores data alike"
