"""Model/guide pairs adapted from Pyro's own tests and examples, for the conformance suite.

Every case builds a fresh model and guide (``build(form)``) in float64 with a handful of data
points. Pyro's models are moved into one data plate at dim -1 where their test has an obvious
data dimension (``*.local`` and most ``valid_models.*`` cases); the structures Pyro writes with
global latents, several plates at dim -1, subsampled inner plates, enumeration, ... are kept as
they are and marked ``inside=False`` with the category pyrovae's refusal falls in.

Conventions:

* ``args`` is ``(data,)`` for the forms "full" and "size" and ``(data, idx)`` for "idx"; the data
  points are on dim 0 of ``data``. Any other input (labels, masks, sequence lengths) is part of
  the case and captured by the model and guide; ``kwargs`` is empty except in the DMM cases.
* Models and guides are ``nn.Module`` s holding their own parameters; no case uses ``pyro.param``.
  Autoguides create theirs on their first call and keep them in Pyro's param store, which their
  ``build`` clears.
* ``exact_log_px(args, kwargs, points=None)`` gives, per data point, the value every bound takes
  when the guide is the exact posterior: log p(x_i), without the N/B factor of a subsampled plate
  or the case's own ``poutine.scale`` around the whole model (``scale``), which multiply the loss.
  It returns the points of ``idx`` under form "idx" and all N points otherwise: pass ``points``
  (the indices the plate drew) under form "size".

``python -m tests.conformance.pyro_cases`` checks every case with Pyro's own ``Trace_ELBO``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions.testing import fakes
from pyro.distributions.transforms import affine_coupling
from pyro.infer import Trace_ELBO
from pyro.infer.autoguide import (
    AutoDelta,
    AutoDiagonalNormal,
    AutoIAFNormal,
    AutoLowRankMultivariateNormal,
    AutoMultivariateNormal,
    AutoNormal,
    AutoNormalMessenger,
)
from pyro.poutine.messenger import Messenger
from pyro.poutine.plate_messenger import block_plate
from pyro.poutine.util import site_is_subsample
from torch import Tensor, nn

DT = torch.float64
FORMS = ("full", "idx", "size")
FULL = ("full",)
N = 6  # data points of most cases; forms "idx" and "size" score N // 2 of them

# why a case is refused
GLOBAL = "global latent"
TWO_AT_1 = "two plates at dim -1"
SUB_INNER = "subsampled inner plate"
SHAPE = "shape mismatch"
GUIDE_ONLY = "guide latent not in model"
MODEL_ONLY = "model latent not in guide"
ENUM = "enumerated"
NO_PLATE = "no plate"

VM = "tests/infer/test_valid_models.py::"
GRAD = "tests/infer/test_gradient.py::"
INF = "tests/infer/test_inference.py::"
MAPDATA = "tests/infer/test_elbo_mapdata.py::test_elbo_mapdata"
AUTO = "pyro/infer/autoguide/"


@dataclass(frozen=True)
class PyroCase:
    name: str  # short unique id (pytest id)
    source: str  # where in Pyro it comes from
    build: Callable[[str], tuple]  # build(form) -> (model, guide, args, kwargs), fresh objects each call
    forms: tuple[str, ...]  # which of FORMS the case supports
    inside: bool  # inside pyrovae's contract?
    why: str = ""  # for refused cases: the category (GLOBAL, TWO_AT_1, ...)
    reparam: bool = True  # every guide latent reparameterized (else only score-function estimators apply)
    site_scaled: bool = False  # scales differ between sites (only ELBO-type estimators apply)
    exact_log_px: Callable | None = None  # (args, kwargs, points=None) -> [B], see the module docstring
    guide_is_posterior: bool = False  # the guide is the exact posterior: every log weight is log p(x) on every
    # draw (an analytic-KL ELBO, whose reconstruction term is sampled, only in expectation)
    max_plate_nesting: int = 1  # what Pyro's ELBO needs (the data plate counts one)
    scale: float = 1.0  # a poutine.scale around the whole model and guide (it multiplies the loss, not a bound)


CASES: list[PyroCase] = []


def case(name: str, source: str, forms: tuple[str, ...] = FORMS, inside: bool = True, **options) -> Callable:
    """Registers ``build`` as a case."""

    def register(build: Callable) -> Callable:
        CASES.append(PyroCase(name, source, build, forms, inside, **options))
        return build

    return register


# ------------------------------------------------------------------------------------------------
# helpers


def f64(x) -> Tensor:
    return torch.as_tensor(x, dtype=DT)


def data_plate(name: str, size: int, form: str, idx: Tensor | None = None, dim: int | None = -1) -> pyro.plate:
    """The data plate at dim -1 in one of FORMS: the full batch, ``subsample=idx``, or
    ``subsample_size=size // 2`` drawn by the plate. ``dim=None`` for the structures that loop
    over it sequentially."""
    if form == "full":
        return pyro.plate(name, size, dim=dim)
    if form == "idx":
        return pyro.plate(name, size, subsample=idx, dim=dim)
    if form == "size":
        return pyro.plate(name, size, subsample_size=size // 2, dim=dim)
    raise ValueError(f"unknown form {form!r}")


def fixed_idx(n: int) -> Tensor:
    """The indices form "idx" scores: half the points, unsorted."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(n))[: n // 2]


def call_args(data: Tensor, form: str) -> tuple:
    return (data, fixed_idx(len(data))) if form == "idx" else (data,)


def randn(*shape: int, seed: int) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=DT)


def coin(*shape: int, seed: int, p: float = 0.5) -> Tensor:
    return (torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=DT) < p).to(DT)


class Fn(nn.Module):
    """A model or guide ``fn(self, *args, **kwargs)``; tensors given become its parameters,
    modules its submodules."""

    def __init__(self, fn: Callable, **parts) -> None:
        super().__init__()
        self.fn = fn
        for key, value in parts.items():
            if isinstance(value, Tensor):
                self.register_parameter(key, nn.Parameter(value.to(DT)))
            elif isinstance(value, (nn.Module, list)):
                setattr(self, key, nn.ModuleList(value) if isinstance(value, list) else value)
            else:
                raise TypeError(f"{key}: {type(value)}")

    def forward(self, *args, **kwargs):
        return self.fn(self, *args, **kwargs)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Deterministic network initialization that leaves the global RNG alone."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        yield


def linear(i: int, o: int) -> nn.Linear:
    return nn.Linear(i, o, dtype=DT)


def mlp(*sizes: int, out: nn.Module | None = None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for k, (i, o) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers += [linear(i, o)] + ([nn.Softplus()] if k < len(sizes) - 2 else [])
    return nn.Sequential(*layers, *([out] if out is not None else []))


def cat(*tensors: Tensor) -> Tensor:
    """Concatenates on the last dim, broadcasting the others (particle dims)."""
    shape = torch.broadcast_shapes(*(t.shape[:-1] for t in tensors))
    return torch.cat([t.expand(shape + t.shape[-1:]) for t in tensors], -1)


def select(per_point: Callable[[Tensor], Tensor]) -> Callable:
    """``exact_log_px`` from a function of the data giving log p(x_i) for all N points."""

    def exact_log_px(args: tuple, kwargs: dict, points: Tensor | None = None) -> Tensor:
        lp = per_point(args[0])
        if points is None and len(args) > 1:
            points = args[1]
        return lp if points is None else lp[points]

    return exact_log_px


def normal_lp(x: Tensor, var) -> Tensor:
    return dist.Normal(torch.zeros_like(x), f64(var).sqrt()).log_prob(x)


# ------------------------------------------------------------------------------------------------
# tests/infer/test_valid_models.py (each adapted model gains an observation of the data point)


@case("valid_models.plate_ok", VM + "test_plate_ok", reparam=False)
def _plate_ok(form):
    def model(self, data, idx=None):
        with data_plate("plate", len(data), form, idx) as ind:
            x = pyro.sample("x", dist.Bernoulli(f64(0.5)))
            pyro.sample("y", dist.Normal(x, 1.0), obs=data[ind])

    def guide(self, data, idx=None):
        with data_plate("plate", len(data), form, idx):
            pyro.sample("x", dist.Bernoulli(logits=self.logit))

    return Fn(model), Fn(guide, logit=f64(0.3)), call_args(randn(N, seed=1), form), {}


@case("valid_models.plate_subsample_primitive_ok", VM + "test_plate_subsample_primitive_ok", reparam=False)
def _plate_subsample_primitive_ok(form):
    def model(self, data, idx=None):
        with data_plate("plate", len(data), form, idx) as ind:
            x = pyro.sample("x", dist.Bernoulli(f64(0.5)))
            pyro.sample("y", dist.Normal(x, 1.0), obs=data[ind])

    def guide(self, data, idx=None):
        with data_plate("plate", len(data), form, idx):
            pyro.sample("x", dist.Bernoulli(logits=pyro.subsample(self.logits, event_dim=0)))

    return Fn(model), Fn(guide, logits=randn(N, seed=2)), call_args(randn(N, seed=1), form), {}


@case("valid_models.plate_no_size_ok", VM + "test_plate_no_size_ok", forms=FULL, reparam=False)
def _plate_no_size_ok(form):
    """``pyro.plate("plate")`` without a size: the plate's frame has size -1."""

    def model(self, data):
        with pyro.plate("plate"):
            x = pyro.sample("x", dist.Bernoulli(f64(0.5)).expand_by([len(data)]))
            pyro.sample("y", dist.Normal(x, 1.0), obs=data)

    def guide(self, data):
        with pyro.plate("plate"):
            pyro.sample("x", dist.Bernoulli(logits=self.logit).expand_by([len(data)]))

    return Fn(model), Fn(guide, logit=f64(0.3)), (randn(N, seed=1),), {}


def _iplate_pair(form: str, iplate_subsample: int | None):
    """A sequential plate of 3 inside the data plate (Pyro's test_iplate_ok puts it alone)."""

    def model(self, data, idx=None):
        with data_plate("plate", len(data), form, idx) as ind:
            for i in pyro.plate("iplate", 3, iplate_subsample):
                x = pyro.sample(f"x_{i}", dist.Bernoulli(f64(0.5)))
                pyro.sample(f"y_{i}", dist.Normal(x, 1.0), obs=data[ind, i])

    def guide(self, data, idx=None):
        with data_plate("plate", len(data), form, idx):
            for i in pyro.plate("iplate", 3, iplate_subsample):
                pyro.sample(f"x_{i}", dist.Bernoulli(logits=self.logits[i]))

    return Fn(model), Fn(guide, logits=randn(3, seed=2)), call_args(randn(N, 3, seed=1), form), {}


@case("valid_models.iplate_ok", VM + "test_iplate_ok", reparam=False)
def _iplate_ok(form):
    return _iplate_pair(form, None)


@case("valid_models.plate_iplate_ok", VM + "test_plate_iplate_ok", inside=False, why=SUB_INNER, reparam=False)
def _plate_iplate_ok(form):
    return _iplate_pair(form, 2)


@case("valid_models.iplate_iplate_swap_ok", VM + "test_iplate_iplate_swap_ok")
def _iplate_iplate_swap_ok(form):
    """Two nested sequential plates inside the data plate; the guide loops in the other order."""

    def model(self, data, idx=None):
        outer, inner = pyro.plate("plate_0", 2), pyro.plate("plate_1", 2)
        with data_plate("data", len(data), form, idx) as ind:
            for i in outer:
                for j in inner:
                    z = pyro.sample(f"z_{i}_{j}", dist.Normal(f64(0.0), 1.0))
                    pyro.sample(f"x_{i}_{j}", dist.Normal(z, 1.0), obs=data[ind, i, j])

    def guide(self, data, idx=None):
        outer, inner = pyro.plate("plate_0", 2), pyro.plate("plate_1", 2)
        with data_plate("data", len(data), form, idx):
            for j in inner:
                for i in outer:
                    pyro.sample(f"z_{i}_{j}", dist.Normal(self.loc[i, j], self.log_scale[i, j].exp()))

    guide_fn = Fn(guide, loc=randn(2, 2, seed=2), log_scale=0.1 * randn(2, 2, seed=3))
    return Fn(model), guide_fn, call_args(randn(N, 2, 2, seed=1), form), {}


@case("valid_models.iplate_plate_ok", VM + "test_iplate_plate_ok", reparam=False)
def _iplate_plate_ok(form):
    """A sequential plate around the data plate, which each iteration enters again."""

    def model(self, data, idx=None):
        inner = data_plate("plate", len(data), form, idx)
        for i in pyro.plate("iplate", 2):
            with inner as ind:
                x = pyro.sample(f"x_{i}", dist.Bernoulli(f64(0.5)))
                pyro.sample(f"y_{i}", dist.Normal(x, 1.0), obs=data[ind, i])

    def guide(self, data, idx=None):
        inner = data_plate("plate", len(data), form, idx)
        for i in pyro.plate("iplate", 2):
            with inner:
                pyro.sample(f"x_{i}", dist.Bernoulli(logits=self.logits[i]))

    return Fn(model), Fn(guide, logits=randn(2, seed=2)), call_args(randn(N, 2, seed=1), form), {}


@case("valid_models.plate_stack_and_plate_ok", VM + "test_plate_stack_and_plate_ok", reparam=False, max_plate_nesting=3)
def _plate_stack_and_plate_ok(form):
    """The data plate at dim -1 around a plate_stack of sizes (2, 3) at dims -3, -2."""

    def model(self, data, idx=None):
        with data_plate("data", len(data), form, idx) as ind:
            with pyro.plate_stack("plate_stack", (2, 3), rightmost_dim=-2):
                x = pyro.sample("x", dist.Bernoulli(f64(0.5)))
            pyro.sample("y", dist.Normal(x.sum((-3, -2), keepdim=True), 1.0), obs=data[ind])

    def guide(self, data, idx=None):
        with data_plate("data", len(data), form, idx):
            with pyro.plate_stack("plate_stack", (2, 3), rightmost_dim=-2):
                pyro.sample("x", dist.Bernoulli(logits=self.logits.unsqueeze(-1)))

    return Fn(model), Fn(guide, logits=randn(2, 3, seed=2)), call_args(randn(N, seed=1), form), {}


def _nested_plate_plate(form: str, inner_subsample: int | None):
    def model(self, data, idx=None):
        with data_plate("plate_outer", len(data), form, idx) as ind:
            x = pyro.sample("x", dist.Bernoulli(f64(0.5)))
            with pyro.plate("plate_inner", 4, inner_subsample, dim=-2):
                y = pyro.sample("y", dist.Bernoulli(f64(0.5)))
            pyro.sample("obs", dist.Normal(x + y.sum(-2, keepdim=True), 1.0), obs=data[ind])

    def guide(self, data, idx=None):
        with data_plate("plate_outer", len(data), form, idx):
            pyro.sample("x", dist.Bernoulli(logits=self.a))
            with pyro.plate("plate_inner", 4, inner_subsample, dim=-2):
                pyro.sample("y", dist.Bernoulli(logits=self.b))

    return Fn(model), Fn(guide, a=f64(0.2), b=f64(-0.3)), call_args(randn(N, seed=1), form), {}


@case("valid_models.nested_plate_plate_ok", VM + "test_nested_plate_plate_ok", reparam=False, max_plate_nesting=2)
def _nested_plate_plate_ok(form):
    return _nested_plate_plate(form, None)


@case(
    "valid_models.nested_plate_plate_ok.subsampled",
    VM + "test_nested_plate_plate_ok",
    inside=False,
    why=SUB_INNER,
    reparam=False,
    max_plate_nesting=2,
)
def _nested_plate_plate_subsampled(form):
    return _nested_plate_plate(form, 2)


@case("valid_models.plate_reuse_ok", VM + "test_plate_reuse_ok", inside=False, why=GLOBAL, max_plate_nesting=2)
def _plate_reuse_ok(form):
    """Pyro's structure: y sits in the plate at dim -2 only, outside the data plate."""

    def model(self, data, idx=None):
        plate_outer = data_plate("plate_outer", len(data), form, idx)
        plate_inner = pyro.plate("plate_inner", 3, dim=-2)
        with plate_outer as ind:
            x = pyro.sample("x", dist.Normal(f64(0.0), 1.0))
        with plate_inner:
            y = pyro.sample("y", dist.Normal(f64(0.0), 1.0).expand([3, 1]))
        with plate_outer, plate_inner:
            pyro.sample("z", dist.Normal(x + y, 1.0), obs=data[ind].expand(3, -1))

    def guide(self, data, idx=None):
        plate_outer = data_plate("plate_outer", len(data), form, idx)
        with plate_outer:
            pyro.sample("x", dist.Normal(self.loc, 1.0))
        with pyro.plate("plate_inner", 3, dim=-2):
            pyro.sample("y", dist.Normal(self.loc, 1.0).expand([3, 1]))

    return Fn(model), Fn(guide, loc=f64(0.1)), call_args(randn(N, seed=1), form), {}


@case("valid_models.nonnested_plate_plate_ok", VM + "test_nonnested_plate_plate_ok", inside=False, why=TWO_AT_1)
def _nonnested_plate_plate_ok(form):
    def model(self, data, idx=None):
        with data_plate("plate_0", len(data), form, idx) as ind:
            x0 = pyro.sample("x0", dist.Normal(f64(0.0), 1.0))
            pyro.sample("obs", dist.Normal(x0, 1.0), obs=data[ind])
        with pyro.plate("plate_1", 4):
            pyro.sample("x1", dist.Normal(f64(0.0), 1.0))

    def guide(self, data, idx=None):
        with data_plate("plate_0", len(data), form, idx):
            pyro.sample("x0", dist.Normal(self.loc, 1.0))
        with pyro.plate("plate_1", 4):
            pyro.sample("x1", dist.Normal(self.loc, 1.0))

    return Fn(model), Fn(guide, loc=f64(0.1)), call_args(randn(N, seed=1), form), {}


@case(
    "valid_models.three_indep_plate_at_different_depths_ok",
    VM + "test_three_indep_plate_at_different_depths_ok",
    reparam=False,
    max_plate_nesting=2,
)
def _three_indep_plates(form):
    """Pyro's tree of plates (sequential plate0, sequential plate1 inside its first iteration, a
    vectorized plate2 at dim -2) inside the data plate."""

    def body(self, sample):
        inner = pyro.plate("plate2", 3, dim=-2)
        xs = []
        for i in pyro.plate("plate0", 2):
            xs.append(sample(f"x_{i}", 0))
            if i == 0:
                for j in pyro.plate("plate1", 2):
                    with inner:
                        sample(f"y_{j}", 1)
            elif i == 1:
                with inner:
                    sample("z", 2)
        return xs

    def model(self, data, idx=None):
        with data_plate("data", len(data), form, idx) as ind:
            xs = body(self, lambda name, k: pyro.sample(name, dist.Bernoulli(f64(0.5))))
            pyro.sample("obs", dist.Normal(xs[0] + xs[1], 1.0), obs=data[ind])

    def guide(self, data, idx=None):
        with data_plate("data", len(data), form, idx):
            body(self, lambda name, k: pyro.sample(name, dist.Bernoulli(logits=self.logits[k])))

    return Fn(model), Fn(guide, logits=randn(3, seed=2)), call_args(randn(N, seed=1), form), {}


@case("valid_models.dim_allocation_ok", VM + "test_dim_allocation_ok", reparam=False, max_plate_nesting=4)
def _dim_allocation_ok(form):
    """The data plate at dim -1 outermost, a plate at dim -3 inside it, then plates that Pyro
    allocates to the rightmost free dims: -2, then -4."""

    def body(sample):
        with pyro.plate("plate_outer", 2, dim=-3):
            x = sample("x", 0)
            with pyro.plate("plate_inner_1", 2):
                y = sample("y", 1)
                with pyro.plate("plate_inner_2", 2):
                    z = sample("z", 2)
        return x.sum((-3, -2), True) + y.sum((-3, -2), True) + z.sum((-4, -3, -2), True)  # plate dims kept

    def model(self, data, idx=None):
        with data_plate("data", len(data), form, idx) as ind:
            total = body(lambda name, k: pyro.sample(name, dist.Bernoulli(f64(0.5))))
            pyro.sample("obs", dist.Normal(total, 1.0), obs=data[ind])

    def guide(self, data, idx=None):
        with data_plate("data", len(data), form, idx):
            body(lambda name, k: pyro.sample(name, dist.Bernoulli(logits=self.logits[k])))

    return Fn(model), Fn(guide, logits=randn(3, seed=2)), call_args(randn(N, seed=1), form), {}


@case("valid_models.vectorized_num_particles", VM + "test_vectorized_num_particles", max_plate_nesting=2)
def _vectorized_num_particles(form):
    """Pyro's structure as it is: the "components" plate at dim -1 encloses every site, so it is
    the data plate; the "data" plate of observations sits at dim -2 inside it."""

    def model(self, data, idx=None):
        with data_plate("components", len(data), form, idx) as ind:
            p = pyro.sample("p", dist.Beta(f64(1.1), f64(1.1)))
            with pyro.plate("data", data.size(1), dim=-2):
                pyro.sample("obs", dist.Bernoulli(p), obs=data[ind].T)

    def guide(self, data, idx=None):
        with data_plate("components", len(data), form, idx) as ind:
            pyro.sample("p", dist.Beta(self.log_a[ind].exp(), self.log_b[ind].exp()))

    guide_fn = Fn(guide, log_a=0.1 * randn(N, seed=2), log_b=0.1 * randn(N, seed=3))
    return Fn(model), guide_fn, call_args(coin(N, 3, seed=1), form), {}


def _normal_latent_guide(self, data, idx, form, name="data"):
    with data_plate(name, len(data), form, idx) as ind:
        return pyro.sample("z", dist.Normal(self.w * data[ind], self.log_scale.exp()))


def _normal_guide_params() -> dict:
    return {"w": f64(0.4), "log_scale": f64(-0.3)}


@case("valid_models.factor_in_model_ok", VM + "test_factor_in_model_ok")
def _factor_in_model_ok(form):
    def model(self, data, idx=None):
        with data_plate("data", len(data), form, idx) as ind:
            z = pyro.sample("z", dist.Normal(f64(0.0), 1.0))
            pyro.factor("f", -0.5 * z**2)
            pyro.sample("x", dist.Normal(z, 1.0), obs=data[ind])

    def guide(self, data, idx=None):
        _normal_latent_guide(self, data, idx, form)

    return Fn(model), Fn(guide, **_normal_guide_params()), call_args(randn(N, seed=1), form), {}


@case("valid_models.factor_in_guide_ok", VM + "test_factor_in_guide_ok")
def _factor_in_guide_ok(form):
    def model(self, data, idx=None):
        with data_plate("data", len(data), form, idx) as ind:
            z = pyro.sample("z", dist.Normal(f64(0.0), 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=data[ind])

    def guide(self, data, idx=None):
        with data_plate("data", len(data), form, idx) as ind:
            z = pyro.sample("z", dist.Normal(self.w * data[ind], self.log_scale.exp()))
            pyro.factor("g", -0.1 * z**2, has_rsample=True)

    return Fn(model), Fn(guide, **_normal_guide_params()), call_args(randn(N, seed=1), form), {}


def _mean_field(form: str, guide_y_first: bool):
    """Two dependent latents x -> y (Pyro's test has no data; here y is observed through o)."""

    def model(self, data, idx=None):
        with data_plate("data", len(data), form, idx) as ind:
            x = pyro.sample("x", dist.Normal(f64(0.0), 1.0))
            y = pyro.sample("y", dist.Normal(x, 1.0))
            pyro.sample("o", dist.Normal(y, 1.0), obs=data[ind])

    def guide(self, data, idx=None):
        with data_plate("data", len(data), form, idx) as ind:
            if guide_y_first:
                y = pyro.sample("y", dist.Normal(self.w * data[ind], 1.0))
                pyro.sample("x", dist.Normal(0.5 * y, 1.0))
            else:
                x = pyro.sample("x", dist.Normal(self.w * data[ind], 1.0))
                pyro.sample("y", dist.Normal(x, 1.0))

    return Fn(model), Fn(guide, w=f64(0.3)), call_args(randn(N, seed=1), form), {}


@case("valid_models.mean_field_ok", VM + "test_mean_field_ok")
def _mean_field_ok(form):
    return _mean_field(form, guide_y_first=False)


@case("valid_models.mean_field_warn", VM + "test_mean_field_warn")
def _mean_field_warn(form):
    return _mean_field(form, guide_y_first=True)


MASK = torch.tensor([True, False, True, True, False, True])


@case("valid_models.mean_field_mask_ok", VM + "test_mean_field_mask_ok")
def _mean_field_mask_ok(form):
    """A per-point mask on the latent, in model and guide."""

    def model(self, data, idx=None):
        with data_plate("data", len(data), form, idx) as ind:
            x = pyro.sample("x", dist.Normal(f64(0.0), 1.0).mask(MASK[ind]))
            pyro.sample("y", dist.Normal(x, 1.0), obs=data[ind])

    def guide(self, data, idx=None):
        with data_plate("data", len(data), form, idx) as ind:
            pyro.sample("x", dist.Normal(self.w * data[ind], self.log_scale.exp()).mask(MASK[ind]))

    return Fn(model), Fn(guide, **_normal_guide_params()), call_args(randn(N, seed=1), form), {}


@case("valid_models.reparam_mask_plate_ok", VM + "test_reparam_mask_plate_ok")
def _reparam_mask_plate_ok(form):
    """A per-point LogNormal latent (Pyro's is global) and a masked Dirichlet observation."""

    def model(self, data, idx=None):
        with data_plate("data", len(data), form, idx) as ind:
            c = pyro.sample("c", dist.LogNormal(f64(0.0), 1.0).expand([3]).to_event(1))
            with poutine.mask(mask=MASK[ind]):
                pyro.sample("obs", dist.Dirichlet(c), obs=data[ind])

    def guide(self, data, idx=None):
        with data_plate("data", len(data), form, idx):
            pyro.sample("c", dist.LogNormal(self.loc, self.log_scale.exp()).to_event(1))

    data = randn(N, 3, seed=1).exp()
    guide_fn = Fn(guide, loc=0.1 * randn(3, seed=2), log_scale=0.1 * randn(3, seed=3))
    return Fn(model), guide_fn, call_args(data / data.sum(-1, keepdim=True), form), {}


@case("valid_models.obs_mask_ok", VM + "test_obs_mask_ok")
def _obs_mask_ok(form):
    """``obs_mask``: the masked-out observations become a latent ``y_unobserved`` the guide samples."""

    def model(self, data, idx=None):
        with data_plate("plate", len(data), form, idx) as ind:
            x = pyro.sample("x", dist.Normal(f64(0.0), 1.0))
            pyro.sample("y", dist.Normal(x, 1.0), obs=data[ind], obs_mask=MASK[ind])

    def guide(self, data, idx=None):
        with data_plate("plate", len(data), form, idx) as ind:
            x = pyro.sample("x", dist.Normal(self.loc, self.log_scale.exp()))
            with poutine.mask(mask=~MASK[ind]):
                pyro.sample("y_unobserved", dist.Normal(x, 1.0))

    guide_fn = Fn(guide, loc=f64(0.2), log_scale=f64(-0.2))
    return Fn(model), guide_fn, call_args(randn(N, seed=1), form), {}


def _obs_scaled_model(form: str, scale: Callable[[Tensor], Tensor | float]):
    def model(self, data, idx=None):
        with data_plate("data", len(data), form, idx) as ind:
            z = pyro.sample("z", dist.Normal(f64(0.0), 1.0))
            with poutine.scale(scale=scale(ind)):
                pyro.sample("x", dist.Normal(z, 1.0), obs=data[ind])

    return model


@case("valid_models.reparam_scale_ok", VM + "test_reparam_scale_ok", site_scaled=True)
def _reparam_scale_ok(form):
    """A float scale on the observation only."""

    def guide(self, data, idx=None):
        _normal_latent_guide(self, data, idx, form)

    model = _obs_scaled_model(form, lambda ind: 0.1)
    return Fn(model), Fn(guide, **_normal_guide_params()), call_args(randn(N, seed=1), form), {}


WEIGHTS = f64([0.1, 0.9, 0.5, 1.5, 2.0, 0.7])


@case("valid_models.reparam_scale_plate_ok", VM + "test_reparam_scale_plate_ok", site_scaled=True)
def _reparam_scale_plate_ok(form):
    """A per-point tensor scale on the observation only."""

    def guide(self, data, idx=None):
        _normal_latent_guide(self, data, idx, form)

    model = _obs_scaled_model(form, lambda ind: WEIGHTS[ind])
    return Fn(model), Fn(guide, **_normal_guide_params()), call_args(randn(N, seed=1), form), {}


@case("valid_models.reparam_scale_plate_ok.whole_model", VM + "test_reparam_scale_plate_ok")
def _reparam_scale_whole(form):
    """The same per-point tensor scale on every site of model and guide."""

    def model(self, data, idx=None):
        with data_plate("data", len(data), form, idx) as ind, poutine.scale(scale=WEIGHTS[ind]):
            z = pyro.sample("z", dist.Normal(f64(0.0), 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=data[ind])

    def guide(self, data, idx=None):
        with data_plate("data", len(data), form, idx) as ind, poutine.scale(scale=WEIGHTS[ind]):
            pyro.sample("z", dist.Normal(self.w * data[ind], self.log_scale.exp()))

    return Fn(model), Fn(guide, **_normal_guide_params()), call_args(randn(N, seed=1), form), {}


@case("valid_models.set_has_rsample_ok", VM + "test_set_has_rsample_ok", reparam=False)
def _set_has_rsample_ok(form):
    """A Normal guide with ``has_rsample_(False)``: score-function gradients only."""

    def model(self, data, idx=None):
        with data_plate("data", len(data), form, idx) as ind:
            z = pyro.sample("z", dist.Normal(f64(0.0), 1.0))
            pyro.sample("x", dist.Normal((z * 100).clamp(min=0, max=1), 1.0), obs=data[ind])

    def guide(self, data, idx=None):
        with data_plate("data", len(data), form, idx):
            pyro.sample("z", dist.Normal(self.loc, 1.0).has_rsample_(False))

    return Fn(model), Fn(guide, loc=f64(0.1)), call_args(randn(N, seed=1), form), {}


def _mismatch_pair(form: str, model_shape: tuple, guide_shape: tuple):
    """Model and guide disagree on the latent's event shape (the observation does not use it)."""

    def model(self, data, idx=None):
        with data_plate("data", len(data), form, idx) as ind:
            pyro.sample("z", dist.Normal(torch.zeros(model_shape, dtype=DT), 1.0).to_event(len(model_shape)))
            pyro.sample("x", dist.Normal(f64(0.0), 1.0), obs=data[ind])

    def guide(self, data, idx=None):
        with data_plate("data", len(data), form, idx):
            pyro.sample("z", dist.Normal(self.loc, 1.0).to_event(len(guide_shape)))

    return Fn(model), Fn(guide, loc=torch.zeros(guide_shape)), call_args(randn(N, seed=1), form), {}


@case(
    "valid_models.model_guide_dim_mismatch_error", VM + "test_model_guide_dim_mismatch_error", inside=False, why=SHAPE
)
def _dim_mismatch(form):
    return _mismatch_pair(form, (2,), (2, 1))


@case(
    "valid_models.model_guide_shape_mismatch_error",
    VM + "test_model_guide_shape_mismatch_error",
    inside=False,
    why=SHAPE,
)
def _shape_mismatch(form):
    return _mismatch_pair(form, (1, 2), (2, 1))


@case("valid_models.nonempty_model_empty_guide_ok", VM + "test_nonempty_model_empty_guide_ok")
def _nonempty_model_empty_guide_ok(form):
    """No latent at all: the model only observes, the guide is empty (the bound is log p(x))."""

    def model(self, data, idx=None):
        with data_plate("data", len(data), form, idx) as ind:
            pyro.sample("x", dist.Normal(self.loc, 1.0).expand([2]).to_event(1), obs=data[ind])

    def guide(self, data, idx=None):
        pass

    return Fn(model, loc=f64(0.3)), Fn(guide), call_args(randn(N, 2, seed=1), form), {}


@case(
    "valid_models.nonempty_model_empty_guide_error",
    VM + "test_nonempty_model_empty_guide_error",
    inside=False,
    why=MODEL_ONLY,
)
def _nonempty_model_empty_guide_error(form):
    def model(self, data, idx=None):
        with data_plate("data", len(data), form, idx) as ind:
            z = pyro.sample("z", dist.Normal(f64(0.0), 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=data[ind])

    def guide(self, data, idx=None):
        pass

    return Fn(model), Fn(guide), call_args(randn(N, seed=1), form), {}


@case(
    "valid_models.plate_enum_discrete_batch_ok",
    VM + "test_plate_enum_discrete_batch_ok",
    inside=False,
    why=ENUM,
    reparam=False,
)
def _plate_enum_discrete_batch_ok(form):
    def model(self, data, idx=None):
        with data_plate("plate", len(data), form, idx) as ind:
            x = pyro.sample("x", dist.Bernoulli(f64(0.5)))
            pyro.sample("y", dist.Normal(x, 1.0), obs=data[ind])

    def guide(self, data, idx=None):
        with data_plate("plate", len(data), form, idx):
            pyro.sample("x", dist.Bernoulli(logits=self.logit), infer={"enumerate": "parallel"})

    return Fn(model), Fn(guide, logit=f64(0.3)), call_args(randn(N, seed=1), form), {}


@case("valid_models.enum_in_model_plate_ok", VM + "test_enum_in_model_plate_ok", inside=False, why=ENUM, reparam=False)
def _enum_in_model_plate_ok(form):
    """Model-side enumeration of c (which the guide leaves out), inside the data plate."""

    def model(self, data, idx=None):
        with data_plate("data", len(data), form, idx) as ind:
            c = pyro.sample("c", dist.Bernoulli(f64(0.3)), infer={"enumerate": "parallel"})
            d = pyro.sample("d", dist.Bernoulli(0.25 + c / 2))
            pyro.sample("g", dist.Normal(d, 1.0), obs=data[ind])

    def guide(self, data, idx=None):
        with data_plate("data", len(data), form, idx):
            pyro.sample("d", dist.Bernoulli(logits=self.logit))

    return Fn(model), Fn(guide, logit=f64(0.3)), call_args(randn(N, seed=1), form), {}


@case("valid_models.block_plate_name_ok", VM + "test_block_plate_name_ok", inside=False, why=GLOBAL)
def _block_plate_name_ok(form):
    """Pyro's structure: ``a`` global, ``c`` under ``block_plate`` (so outside the data plate)."""

    def model(self, data, idx=None):
        a = pyro.sample("a", dist.Normal(f64(0.0), 1.0))
        with data_plate("plate", len(data), form, idx) as ind:
            b = pyro.sample("b", dist.Normal(f64(0.0), 1.0))
            with block_plate("plate"):
                c = pyro.sample("c", dist.Normal(f64(0.0), 1.0))
            pyro.sample("x", dist.Normal(a + b + c, 1.0), obs=data[ind])

    def guide(self, data, idx=None):
        pyro.sample("c", dist.Normal(self.loc, 1.0))
        with data_plate("plate", len(data), form, idx):
            pyro.sample("b", dist.Normal(self.loc, 1.0))
            with block_plate("plate"):
                pyro.sample("a", dist.Normal(self.loc, 1.0))

    return Fn(model), Fn(guide, loc=f64(0.1)), call_args(randn(N, seed=1), form), {}


# ------------------------------------------------------------------------------------------------
# tests/infer/test_gradient.py


def _subsample_gradient(form: str, normal=dist.Normal, scale: float = 1.0, exact: bool = False):
    """z ~ N(0, 1), x | z ~ N(z, 1) per point; the guide's loc is a per-point parameter picked
    with ``pyro.subsample`` (as Pyro's ``pyro.param(..., event_dim=0)``), or, ``exact``, the
    posterior N(x / 2, 1 / 2)."""

    def model(self, data, idx=None):
        with poutine.scale(scale=scale), data_plate("data", len(data), form, idx) as ind:
            z = pyro.sample("z", normal(f64(0.0), f64(1.0)))
            pyro.sample("x", normal(z, f64(1.0)), obs=data[ind])

    def guide(self, data, idx=None):
        with poutine.scale(scale=scale), data_plate("data", len(data), form, idx) as ind:
            loc = 0.5 * data[ind] if exact else pyro.subsample(self.loc, event_dim=0)
            pyro.sample("z", normal(loc, self.log_scale.exp()))

    log_scale = f64(-0.5 * math.log(2.0)) if exact else f64(0.0)
    return Fn(model), Fn(guide, loc=torch.zeros(N), log_scale=log_scale), call_args(randn(N, seed=1), form), {}


@case("gradient.subsample_gradient", GRAD + "test_subsample_gradient")
def _subsample_gradient_reparam(form):
    return _subsample_gradient(form)


@case("gradient.subsample_gradient.nonreparam", GRAD + "test_subsample_gradient", reparam=False)
def _subsample_gradient_nonreparam(form):
    return _subsample_gradient(form, normal=fakes.NonreparameterizedNormal)


@case(
    "gradient.subsample_gradient.exact",
    GRAD + "test_subsample_gradient",
    exact_log_px=select(lambda x: normal_lp(x, 2.0)),
    guide_is_posterior=True,
)
def _subsample_gradient_exact(form):
    return _subsample_gradient(form, exact=True)


@case(
    "gradient.subsample_gradient.scaled",
    GRAD + "test_subsample_gradient",
    exact_log_px=select(lambda x: normal_lp(x, 2.0)),
    guide_is_posterior=True,
    scale=2.0,
)
def _subsample_gradient_scaled(form):
    """``poutine.scale(scale=2.0)`` around the whole model and the whole guide."""
    return _subsample_gradient(form, scale=2.0, exact=True)


@case("gradient.subsample_gradient_sequential", GRAD + "test_subsample_gradient_sequential")
def _subsample_gradient_sequential(form):
    """The guide indexes its per-point parameter with the plate's indices."""

    def model(self, data, idx=None):
        with data_plate("data", len(data), form, idx) as ind:
            z = pyro.sample("z", dist.Normal(f64(0.0), 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=data[ind])

    def guide(self, data, idx=None):
        with data_plate("data", len(data), form, idx) as ind:
            pyro.sample("z", dist.Normal(self.loc[ind], self.log_scale.exp()))

    guide_fn = Fn(guide, loc=randn(N, seed=2), log_scale=f64(0.0))
    return Fn(model), guide_fn, call_args(randn(N, seed=1), form), {}


@case("gradient.plate", GRAD + "test_plate", inside=False, why=GLOBAL, max_plate_nesting=2)
def _gradient_plate(form):
    """Pyro's structure: nuisance sites outside every plate."""

    def model(self, data, idx=None):
        particles = pyro.plate("particles", 2, dim=-2)
        plate = data_plate("data", len(data), form, idx)
        pyro.sample("nuisance_a", dist.Normal(f64(0.0), 1.0))
        with particles, plate as ind:
            z = pyro.sample("z", dist.Normal(f64(0.0), 1.0))
        pyro.sample("nuisance_b", dist.Normal(f64(2.0), 3.0))
        with plate, particles:
            pyro.sample("x", dist.Normal(z, 1.0), obs=data[ind])

    def guide(self, data, idx=None):
        pyro.sample("nuisance_b", dist.Normal(f64(2.0), 3.0))
        with pyro.plate("particles", 2, dim=-2), data_plate("data", len(data), form, idx):
            pyro.sample("z", dist.Normal(self.loc, 1.0))
        pyro.sample("nuisance_a", dist.Normal(f64(0.0), 1.0))

    return Fn(model), Fn(guide, loc=f64(0.1)), call_args(randn(N, seed=1), form), {}


@case("gradient.plate.local", GRAD + "test_plate", max_plate_nesting=2)
def _gradient_plate_local(form):
    """Pyro's test_plate with the nuisance sites moved into the data plate: a user plate of 2
    "particles" at dim -2, sites in another order in the guide."""

    def model(self, data, idx=None):
        plate = data_plate("data", len(data), form, idx)
        particles = pyro.plate("particles", 2, dim=-2)
        with plate as ind:
            pyro.sample("nuisance_a", dist.Normal(f64(0.0), 1.0))
            with particles:
                z = pyro.sample("z", dist.Normal(f64(0.0), 1.0))
            pyro.sample("nuisance_b", dist.Normal(f64(2.0), 3.0))
            with particles:
                pyro.sample("x", dist.Normal(z, 1.0), obs=data[ind])
            pyro.sample("nuisance_c", dist.Normal(f64(4.0), 5.0))

    def guide(self, data, idx=None):
        with data_plate("data", len(data), form, idx):
            pyro.sample("nuisance_c", dist.Normal(f64(4.0), 5.0))
            with pyro.plate("particles", 2, dim=-2):
                pyro.sample("z", dist.Normal(self.loc, self.log_scale.exp()))
            pyro.sample("nuisance_b", dist.Normal(f64(2.0), 3.0))
            pyro.sample("nuisance_a", dist.Normal(f64(0.0), 1.0))

    guide_fn = Fn(guide, loc=f64(0.1), log_scale=f64(0.0))
    return Fn(model), guide_fn, call_args(randn(N, seed=1), form), {}


# ------------------------------------------------------------------------------------------------
# tests/infer/test_inference.py and tests/infer/test_elbo_mapdata.py

LAM0 = f64([0.1, 0.1])  # prior precision
LOC0 = f64([0.0, 0.5])  # prior mean
LAM = f64([6.0, 4.0])  # observation precision
NN_DATA = f64([[-0.1, 0.3], [0.0, 0.4], [0.2, 0.5], [0.1, 0.7], [0.23, 0.25], [-0.04, 0.17]])


def _normal_normal_global(form: str, sequential: bool = False):
    """Pyro's structure: one global ``loc_latent`` shared by all data points."""

    def model(self, data, idx=None):
        loc = pyro.sample("loc_latent", dist.Normal(LOC0, LAM0.rsqrt()).to_event(1))
        plate = data_plate("data", len(data), form, idx, dim=None if sequential else -1)
        if sequential:
            for i in plate:
                pyro.sample(f"obs_{i}", dist.Normal(loc, LAM.rsqrt()).to_event(1), obs=data[i])
        else:
            with plate as ind:
                pyro.sample("obs", dist.Normal(loc, LAM.rsqrt()).to_event(1), obs=data[ind])

    def guide(self, data, idx=None):
        pyro.sample("loc_latent", dist.Normal(self.loc, self.log_scale.exp()).to_event(1))
        plate = data_plate("data", len(data), form, idx, dim=None if sequential else -1)  # Pyro's dummy plate
        if sequential:
            for _ in plate:
                pass
        else:
            with plate:
                pass

    return Fn(model), Fn(guide, loc=LOC0 + 0.1, log_scale=f64([-1.0, -1.0])), call_args(NN_DATA, form), {}


def _normal_normal_local(form: str, name: str):
    """Per-point z ~ N(loc0, lam0^-1/2), x | z ~ N(z, lam^-1/2) (2-d); the guide is the posterior
    N((lam0 loc0 + lam x) / lam_n, lam_n^-1/2) with lam_n = lam0 + lam, amortized linearly."""

    def model(self, data, idx=None):
        with data_plate(name, len(data), form, idx) as ind:
            z = pyro.sample("loc_latent", dist.Normal(LOC0, LAM0.rsqrt()).to_event(1))
            pyro.sample("obs", dist.Normal(z, LAM.rsqrt()).to_event(1), obs=data[ind])

    def guide(self, data, idx=None):
        with data_plate(name, len(data), form, idx) as ind:
            loc = self.w * data[ind] + self.b
            pyro.sample("loc_latent", dist.Normal(loc, self.log_scale.exp()).to_event(1))

    lam_n = LAM0 + LAM
    guide_fn = Fn(guide, w=LAM / lam_n, b=LAM0 * LOC0 / lam_n, log_scale=-0.5 * lam_n.log())
    return Fn(model), guide_fn, call_args(NN_DATA, form), {}


def _normal_normal_log_px(x: Tensor) -> Tensor:
    return dist.Normal(LOC0, (1 / LAM0 + 1 / LAM).sqrt()).log_prob(x).sum(-1)


@case("inference.normal_normal", INF + "NormalNormalTests", inside=False, why=GLOBAL)
def _inference_normal_normal(form):
    return _normal_normal_global(form)


@case(
    "inference.normal_normal.local",
    INF + "NormalNormalTests",
    exact_log_px=select(_normal_normal_log_px),
    guide_is_posterior=True,
)
def _inference_normal_normal_local(form):
    return _normal_normal_local(form, "data")


@case(
    "inference.normal_normal.fit_prior",
    INF + "NormalNormalTests.do_fit_prior_test",
    exact_log_px=select(lambda x: torch.zeros(len(x), dtype=DT)),
    guide_is_posterior=True,
)
def _inference_fit_prior(form):
    """No observation: the guide equals the prior, so every bound is log 1 = 0 (``data`` only
    gives the plate its size)."""

    def model(self, data, idx=None):
        with data_plate("samples", len(data), form, idx):
            pyro.sample("loc_latent", dist.Normal(LOC0, LAM0.rsqrt()).to_event(1))

    def guide(self, data, idx=None):
        with data_plate("samples", len(data), form, idx):
            pyro.sample("loc_latent", dist.Normal(self.loc, self.log_scale.exp()).to_event(1))

    guide_fn = Fn(guide, loc=LOC0, log_scale=-0.5 * LAM0.log())
    return Fn(model), guide_fn, call_args(NN_DATA, form), {}


ALPHA0, BETA0 = 1.5, 2.0
COUNTS = f64([1.0, 2.0, 3.0, 0.0, 5.0, 2.0])


@case(
    "inference.poisson_gamma.local",
    INF + "PoissonGammaTests",
    exact_log_px=select(
        lambda x: (
            torch.lgamma(ALPHA0 + x)
            - math.lgamma(ALPHA0)
            - torch.lgamma(x + 1)
            + ALPHA0 * math.log(BETA0 / (BETA0 + 1))
            - x * math.log(BETA0 + 1)
        )
    ),
    guide_is_posterior=True,
)
def _poisson_gamma_local(form):
    """Per-point rate ~ Gamma(a, b), x ~ Poisson(rate); the guide is Gamma(a + x, b + 1)."""

    def model(self, data, idx=None):
        with data_plate("data", len(data), form, idx) as ind:
            rate = pyro.sample("lambda_latent", dist.Gamma(f64(ALPHA0), f64(BETA0)))
            pyro.sample("obs", dist.Poisson(rate), obs=data[ind])

    def guide(self, data, idx=None):
        with data_plate("data", len(data), form, idx) as ind:
            pyro.sample("lambda_latent", dist.Gamma(self.alpha + data[ind], self.beta + 1))

    return Fn(model), Fn(guide, alpha=f64(ALPHA0), beta=f64(BETA0)), call_args(COUNTS, form), {}


@case(
    "inference.exponential_gamma.local",
    INF + "test_exponential_gamma",
    exact_log_px=select(lambda x: math.log(ALPHA0) + ALPHA0 * math.log(BETA0) - (ALPHA0 + 1) * torch.log(BETA0 + x)),
    guide_is_posterior=True,
)
def _exponential_gamma_local(form):
    """Per-point rate ~ Gamma(a, b), x ~ Exponential(rate); the guide is Gamma(a + 1, b + x)."""

    def model(self, data, idx=None):
        with data_plate("data", len(data), form, idx) as ind:
            rate = pyro.sample("lambda_latent", dist.Gamma(f64(ALPHA0), f64(BETA0)))
            pyro.sample("obs", dist.Exponential(rate), obs=data[ind])

    def guide(self, data, idx=None):
        with data_plate("data", len(data), form, idx) as ind:
            pyro.sample("lambda_latent", dist.Gamma(self.alpha + 1, self.beta + data[ind]))

    return Fn(model), Fn(guide, alpha=f64(ALPHA0), beta=f64(BETA0)), call_args(COUNTS.exp().sqrt(), form), {}


def _bernoulli_beta_local(form: str, beta=dist.Beta):
    """Per-point p ~ Beta(a, b), x ~ Bernoulli(p); the guide is Beta(a + x, b + 1 - x)."""

    def model(self, data, idx=None):
        with data_plate("data", len(data), form, idx) as ind:
            p = pyro.sample("p_latent", beta(f64(ALPHA0), f64(BETA0)))
            pyro.sample("obs", dist.Bernoulli(p), obs=data[ind])

    def guide(self, data, idx=None):
        with data_plate("data", len(data), form, idx) as ind:
            x = data[ind]
            pyro.sample("p_latent", beta(self.a + x, self.b + 1 - x))

    data = f64([0.0, 1.0, 1.0, 1.0, 0.0, 1.0])
    return Fn(model), Fn(guide, a=f64(ALPHA0), b=f64(BETA0)), call_args(data, form), {}


def _bernoulli_beta_log_px(x: Tensor) -> Tensor:
    return x * math.log(ALPHA0 / (ALPHA0 + BETA0)) + (1 - x) * math.log(BETA0 / (ALPHA0 + BETA0))


@case(
    "inference.bernoulli_beta.local",
    INF + "BernoulliBetaTests",
    exact_log_px=select(_bernoulli_beta_log_px),
    guide_is_posterior=True,
)
def _bernoulli_beta_reparam(form):
    return _bernoulli_beta_local(form)


@case(
    "inference.bernoulli_beta.local_nonreparam",
    INF + "BernoulliBetaTests",
    reparam=False,
    exact_log_px=select(_bernoulli_beta_log_px),
    guide_is_posterior=True,
)
def _bernoulli_beta_nonreparam(form):
    return _bernoulli_beta_local(form, beta=fakes.NonreparameterizedBeta)


@case(
    "inference.sequential_plating_sum",
    INF + "test_sequential_plating_sum",
    inside=False,
    why=NO_PLATE,
    reparam=False,
    max_plate_nesting=0,
)
def _sequential_plating_sum(form):
    """Pyro's structure: a global Bernoulli x, the data in a sequential plate."""

    def model(self, data, idx=None):
        x = pyro.sample("x", dist.Bernoulli(f64(0.5)))
        for i in data_plate("data_plate", len(data), form, idx, dim=None):
            pyro.sample(f"data_{i}", dist.Normal(x, 0.1), obs=data[i])

    def guide(self, data, idx=None):
        pyro.sample("x", dist.Bernoulli(logits=self.logit))

    return Fn(model), Fn(guide, logit=f64(0.0)), call_args(randn(N, seed=1), form), {}


@case(
    "inference.non_nested_plating_sum",
    INF + "test_non_nested_plating_sum",
    forms=FULL,
    inside=False,
    why=TWO_AT_1,
    max_plate_nesting=2,
)
def _non_nested_plating_sum(form):
    """Pyro's structure: x in "x_plate" at dim -1, the data in "data_plate_2" (dim -2) x
    "data_plate_1" (dim -1, a second plate there)."""
    weights = randn(2, 3, seed=2)

    def model(self, data):
        with pyro.plate("x_plate", 2):
            x = pyro.sample("x", dist.Normal(f64(1.0), 0.1))
        with pyro.plate("data_plate_1", data.size(-1)), pyro.plate("data_plate_2", data.size(-2)):
            pyro.sample("data", dist.Normal(x @ weights, 0.1), obs=data)

    def guide(self, data):
        with pyro.plate("x_plate", 2):
            pyro.sample("x", dist.Normal(self.loc, 0.1))

    return Fn(model), Fn(guide, loc=f64(0.5)), (randn(N, 3, seed=1),), {}


@case("inference.extra_samples", INF + "SafetyTests.test_extra_samples", inside=False, why=GUIDE_ONLY)
def _extra_samples(form):
    def model(self, data, idx=None):
        with data_plate("data", len(data), form, idx) as ind:
            z = pyro.sample("loc_q", dist.Normal(f64(0.0), 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=data[ind])

    def guide(self, data, idx=None):
        with data_plate("data", len(data), form, idx):
            pyro.sample("loc_q", dist.Normal(f64(0.0), self.p))
            pyro.sample("loc_q_2", dist.Normal(f64(0.0), self.p))

    return Fn(model), Fn(guide, p=f64(1.0)), call_args(randn(N, seed=1), form), {}


@case("elbo_mapdata.plate", MAPDATA + "[plate]", inside=False, why=GLOBAL)
def _mapdata_plate(form):
    return _normal_normal_global(form)


@case("elbo_mapdata.iplate", MAPDATA + "[iplate]", inside=False, why=NO_PLATE, max_plate_nesting=0)
def _mapdata_iplate(form):
    return _normal_normal_global(form, sequential=True)


@case(
    "elbo_mapdata.plate.local", MAPDATA + "[plate]", exact_log_px=select(_normal_normal_log_px), guide_is_posterior=True
)
def _mapdata_local(form):
    return _normal_normal_local(form, "aaa")


# ------------------------------------------------------------------------------------------------
# conjugate pairs whose guide is the exact posterior


S0, S = 1.3, 0.7  # prior and noise scales
CHAIN_A, CHAIN_S2 = 0.8, 0.6  # z2 | z1 ~ N(a z1, s2^2)


@case(
    "conjugate.normal_chain",
    VM + "test_mean_field_warn",
    exact_log_px=select(lambda x: normal_lp(x, CHAIN_A**2 + CHAIN_S2**2 + S**2)),
    guide_is_posterior=True,
)
def _normal_chain(form):
    """z1 ~ N(0, 1), z2 | z1 ~ N(a z1, s2^2), x | z2 ~ N(z2, s^2). The guide samples z2 first,
    from p(z2 | x), then z1 from p(z1 | z2) (which is p(z1 | z2, x)): two dependent sites."""

    def model(self, data, idx=None):
        with data_plate("data", len(data), form, idx) as ind:
            z1 = pyro.sample("z1", dist.Normal(f64(0.0), 1.0))
            z2 = pyro.sample("z2", dist.Normal(CHAIN_A * z1, CHAIN_S2))
            pyro.sample("x", dist.Normal(z2, S), obs=data[ind])

    def guide(self, data, idx=None):
        with data_plate("data", len(data), form, idx) as ind:
            z2 = pyro.sample("z2", dist.Normal(self.w2 * data[ind], self.log_s2.exp()))
            pyro.sample("z1", dist.Normal(self.w1 * z2, self.log_s1.exp()))

    v2 = CHAIN_A**2 + CHAIN_S2**2
    post2 = 1 / (1 / v2 + 1 / S**2)
    post1 = 1 / (1 + CHAIN_A**2 / CHAIN_S2**2)
    params = {
        "w2": f64(post2 / S**2),
        "log_s2": f64(0.5 * math.log(post2)),
        "w1": f64(post1 * CHAIN_A / CHAIN_S2**2),
        "log_s1": f64(0.5 * math.log(post1)),
    }
    return Fn(model), Fn(guide, **params), call_args(randn(N, seed=1), form), {}


LG_W = f64([[1.0, 0.5], [-0.3, 0.8], [0.2, -1.1]])  # x = W z + b + noise, z in R^2, x in R^3
LG_B = f64([0.1, -0.2, 0.3])
LG_SIGMA = 0.5


def _linear_gaussian_log_px(x: Tensor) -> Tensor:
    cov = LG_W @ LG_W.T + LG_SIGMA**2 * torch.eye(3, dtype=DT)
    return dist.MultivariateNormal(LG_B, cov).log_prob(x)


@case(
    "conjugate.linear_gaussian",
    "examples/vae/vae.py (a linear-Gaussian decoder, exact encoder)",
    exact_log_px=select(_linear_gaussian_log_px),
    guide_is_posterior=True,
)
def _linear_gaussian(form):
    """z ~ N(0, I_2), x | z ~ N(W z + b, sigma^2 I_3); the guide is the posterior MVN with
    covariance (I + W^T W / sigma^2)^-1 and mean linear in x."""

    def model(self, data, idx=None):
        with data_plate("data", len(data), form, idx) as ind:
            z = pyro.sample("z", dist.Normal(torch.zeros(2, dtype=DT), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ LG_W.T + LG_B, LG_SIGMA).to_event(1), obs=data[ind])

    def guide(self, data, idx=None):
        with data_plate("data", len(data), form, idx) as ind:
            loc = data[ind] @ self.a.T + self.c
            pyro.sample("z", dist.MultivariateNormal(loc, scale_tril=self.scale_tril))

    cov = torch.linalg.inv(torch.eye(2, dtype=DT) + LG_W.T @ LG_W / LG_SIGMA**2)
    a = cov @ LG_W.T / LG_SIGMA**2
    guide_fn = Fn(guide, a=a, c=-a @ LG_B, scale_tril=torch.linalg.cholesky(cov))
    return Fn(model), guide_fn, call_args(randn(N, 3, seed=1), form), {}


M_INNER = 3


def _inner_plate_log_px(x: Tensor) -> Tensor:
    cov = S0**2 * torch.ones(M_INNER, M_INNER, dtype=DT) + S**2 * torch.eye(M_INNER, dtype=DT)
    return dist.MultivariateNormal(torch.zeros(M_INNER, dtype=DT), cov).log_prob(x)


@case(
    "conjugate.inner_plate",
    GRAD + "test_plate",
    exact_log_px=select(_inner_plate_log_px),
    guide_is_posterior=True,
    max_plate_nesting=2,
)
def _inner_plate(form):
    """z_i ~ N(0, s0^2), x_ij | z_i ~ N(z_i, s^2) for j in a plate of 3 at dim -2."""

    def model(self, data, idx=None):
        with data_plate("data", len(data), form, idx) as ind:
            z = pyro.sample("z", dist.Normal(f64(0.0), S0))
            with pyro.plate("repeats", M_INNER, dim=-2):
                pyro.sample("x", dist.Normal(z, S), obs=data[ind].T)

    def guide(self, data, idx=None):
        with data_plate("data", len(data), form, idx) as ind:
            pyro.sample("z", dist.Normal(self.w * data[ind].sum(-1), self.log_scale.exp()))

    precision = 1 / S0**2 + M_INNER / S**2
    guide_fn = Fn(guide, w=f64(1 / (S**2 * precision)), log_scale=f64(-0.5 * math.log(precision)))
    return Fn(model), guide_fn, call_args(randn(N, M_INNER, seed=1), form), {}


@case(
    "conjugate.masked",
    VM + "test_reparam_mask_ok",
    exact_log_px=select(lambda x: torch.where(MASK, normal_lp(x, S0**2 + S**2), 0.0)),
    guide_is_posterior=True,
)
def _masked(form):
    """z ~ N(0, s0^2), x | z ~ N(z, s^2) with the observation masked out for some points: their
    posterior is the prior (the guide knows the mask) and their bound is 0."""

    def model(self, data, idx=None):
        with data_plate("data", len(data), form, idx) as ind:
            z = pyro.sample("z", dist.Normal(f64(0.0), S0))
            with poutine.mask(mask=MASK[ind]):
                pyro.sample("x", dist.Normal(z, S), obs=data[ind])

    def guide(self, data, idx=None):
        with data_plate("data", len(data), form, idx) as ind:
            m = MASK[ind]
            loc = torch.where(m, self.w * data[ind], 0.0)
            scale = torch.where(m, self.log_scale.exp(), S0)
            pyro.sample("z", dist.Normal(loc, scale))

    var = S0**2 * S**2 / (S0**2 + S**2)
    guide_fn = Fn(guide, w=f64(S0**2 / (S0**2 + S**2)), log_scale=f64(0.5 * math.log(var)))
    return Fn(model), guide_fn, call_args(randn(N, seed=1), form), {}


# ------------------------------------------------------------------------------------------------
# examples/vae/vae.py, examples/vae/ss_vae_M2.py


@case("vae.vae", "examples/vae/vae.py")
def _vae(form):
    """Pyro's VAE with an 8-pixel image, 4 hidden units and a 2-d latent."""
    D, H, Z = 8, 4, 2
    with seeded(10):
        encoder = nn.ModuleDict({"fc1": linear(D, H), "fc21": linear(H, Z), "fc22": linear(H, Z)})
        decoder = nn.ModuleDict({"fc1": linear(Z, H), "fc21": linear(H, D)})

    def model(self, x, idx=None):
        with data_plate("data", len(x), form, idx) as ind:
            z_loc = torch.zeros(len(ind), Z, dtype=DT)
            z = pyro.sample("latent", dist.Normal(z_loc, torch.ones_like(z_loc)).to_event(1))
            hidden = nn.functional.softplus(self.decoder.fc1(z))
            loc_img = torch.sigmoid(self.decoder.fc21(hidden))
            pyro.sample("obs", dist.Bernoulli(loc_img, validate_args=False).to_event(1), obs=x[ind])

    def guide(self, x, idx=None):
        with data_plate("data", len(x), form, idx) as ind:
            hidden = nn.functional.softplus(self.encoder.fc1(x[ind]))
            z_loc, z_scale = self.encoder.fc21(hidden), torch.exp(self.encoder.fc22(hidden))
            pyro.sample("latent", dist.Normal(z_loc, z_scale).to_event(1))

    return Fn(model, decoder=decoder), Fn(guide, encoder=encoder), call_args(coin(N, D, seed=1), form), {}


SS_D, SS_Y, SS_Z, SS_H = 6, 3, 2, 4


def _ssvae_nets() -> dict:
    with seeded(11):
        return {
            "encoder_y": mlp(SS_D, SS_H, SS_Y, out=nn.Softmax(-1)),
            "encoder_z": mlp(SS_D + SS_Y, SS_H, 2 * SS_Z),
            "decoder": mlp(SS_Z + SS_Y, SS_H, SS_D, out=nn.Sigmoid()),
        }


def _ssvae(form: str, labelled: bool, enumerate_: bool = False):
    """Pyro's SS-VAE (M2): the label y is observed for labelled points, otherwise a latent the
    guide samples from the classifier q(y | x) (one-hot Categorical: not reparameterized)."""
    nets = _ssvae_nets()
    xs = coin(N, SS_D, seed=1)
    ys = nn.functional.one_hot(torch.arange(N) % SS_Y, SS_Y).to(DT)
    infer = {"enumerate": "parallel"} if enumerate_ else {}

    def model(self, xs, idx=None):
        with data_plate("data", len(xs), form, idx) as ind:
            zs = pyro.sample("z", dist.Normal(torch.zeros(SS_Z, dtype=DT), 1.0).to_event(1))
            alpha_prior = torch.ones(SS_Y, dtype=DT) / SS_Y
            y = pyro.sample("y", dist.OneHotCategorical(alpha_prior), obs=ys[ind] if labelled else None)
            loc = self.decoder(cat(zs, y))
            pyro.sample("x", dist.Bernoulli(loc, validate_args=False).to_event(1), obs=xs[ind])

    def guide(self, xs, idx=None):
        with data_plate("data", len(xs), form, idx) as ind:
            x = xs[ind]
            y = ys[ind] if labelled else pyro.sample("y", dist.OneHotCategorical(self.encoder_y(x)), infer=infer)
            loc, log_scale = self.encoder_z(cat(x, y)).chunk(2, -1)
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))

    model_fn = Fn(model, decoder=nets["decoder"])
    guide_fn = Fn(guide, encoder_y=nets["encoder_y"], encoder_z=nets["encoder_z"])
    return model_fn, guide_fn, call_args(xs, form), {}


@case("ss_vae_m2.unsupervised", "examples/vae/ss_vae_M2.py::SSVAE.model/guide (ys=None)", reparam=False)
def _ssvae_unsupervised(form):
    return _ssvae(form, labelled=False)


@case("ss_vae_m2.supervised", "examples/vae/ss_vae_M2.py::SSVAE.model/guide (ys given)")
def _ssvae_supervised(form):
    return _ssvae(form, labelled=True)


@case(
    "ss_vae_m2.enumerated",
    "examples/vae/ss_vae_M2.py (--enum-discrete parallel)",
    inside=False,
    why=ENUM,
    reparam=False,
)
def _ssvae_enumerated(form):
    return _ssvae(form, labelled=False, enumerate_=True)


@case("ss_vae_m2.classify", "examples/vae/ss_vae_M2.py::SSVAE.model_classify/guide_classify")
def _ssvae_classify(form):
    """The auxiliary classification loss: an observed label under ``poutine.scale`` (the only
    site, so one scale), no latent, an empty guide."""
    nets = _ssvae_nets()
    ys = nn.functional.one_hot(torch.arange(N) % SS_Y, SS_Y).to(DT)

    def model(self, xs, idx=None):
        with data_plate("data", len(xs), form, idx) as ind:
            alpha = self.encoder_y(xs[ind])
            with poutine.scale(scale=46.0):
                pyro.sample("y_aux", dist.OneHotCategorical(alpha), obs=ys[ind])

    def guide(self, xs, idx=None):
        pass

    return Fn(model, encoder_y=nets["encoder_y"]), Fn(guide), call_args(coin(N, SS_D, seed=1), form), {}


# ------------------------------------------------------------------------------------------------
# examples/dmm.py


class Emitter(nn.Module):
    """p(x_t | z_t)"""

    def __init__(self, input_dim: int, z_dim: int, emission_dim: int) -> None:
        super().__init__()
        self.lin_z_to_hidden = linear(z_dim, emission_dim)
        self.lin_hidden_to_hidden = linear(emission_dim, emission_dim)
        self.lin_hidden_to_input = linear(emission_dim, input_dim)

    def forward(self, z_t: Tensor) -> Tensor:
        h1 = torch.relu(self.lin_z_to_hidden(z_t))
        h2 = torch.relu(self.lin_hidden_to_hidden(h1))
        return torch.sigmoid(self.lin_hidden_to_input(h2))


class GatedTransition(nn.Module):
    """p(z_t | z_{t-1})"""

    def __init__(self, z_dim: int, transition_dim: int) -> None:
        super().__init__()
        self.lin_gate_z_to_hidden = linear(z_dim, transition_dim)
        self.lin_gate_hidden_to_z = linear(transition_dim, z_dim)
        self.lin_proposed_mean_z_to_hidden = linear(z_dim, transition_dim)
        self.lin_proposed_mean_hidden_to_z = linear(transition_dim, z_dim)
        self.lin_sig = linear(z_dim, z_dim)
        self.lin_z_to_loc = linear(z_dim, z_dim)
        with torch.no_grad():
            self.lin_z_to_loc.weight.copy_(torch.eye(z_dim))
            self.lin_z_to_loc.bias.zero_()

    def forward(self, z_t_1: Tensor) -> tuple[Tensor, Tensor]:
        gate = torch.sigmoid(self.lin_gate_hidden_to_z(torch.relu(self.lin_gate_z_to_hidden(z_t_1))))
        proposed_mean = self.lin_proposed_mean_hidden_to_z(torch.relu(self.lin_proposed_mean_z_to_hidden(z_t_1)))
        loc = (1 - gate) * self.lin_z_to_loc(z_t_1) + gate * proposed_mean
        scale = nn.functional.softplus(self.lin_sig(torch.relu(proposed_mean)))
        return loc, scale


class Combiner(nn.Module):
    """q(z_t | z_{t-1}, x_{t:T})"""

    def __init__(self, z_dim: int, rnn_dim: int) -> None:
        super().__init__()
        self.lin_z_to_hidden = linear(z_dim, rnn_dim)
        self.lin_hidden_to_loc = linear(rnn_dim, z_dim)
        self.lin_hidden_to_scale = linear(rnn_dim, z_dim)

    def forward(self, z_t_1: Tensor, h_rnn: Tensor) -> tuple[Tensor, Tensor]:
        h_combined = 0.5 * (torch.tanh(self.lin_z_to_hidden(z_t_1)) + h_rnn)
        return self.lin_hidden_to_loc(h_combined), nn.functional.softplus(self.lin_hidden_to_scale(h_combined))


def reverse_sequences(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverses the first ``lengths[b]`` steps of each sequence ``x[b]`` (as polyphonic_data_loader)."""
    t = torch.arange(x.size(1))
    src = torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
    return x.gather(1, src[..., None].expand(-1, -1, x.size(-1)))


DMM_LENGTHS = torch.tensor([3, 2, 3, 1, 3, 2])


def _dmm(form: str, flow: bool = False):
    """Pyro's DMM with 3 input dims, a 2-d latent and 3 time steps: sequences in the data plate,
    time sequential (``pyro.markov``) inside it, ragged lengths masked, ``annealing_factor``
    scaling the latent sites of model and guide. ``flow``: a normalizing flow on q(z_t | ...),
    shared by the time steps as the example's IAFs are (an affine coupling: the inverse of Pyro's
    ``affine_autoregressive`` builds float32 zeros, so its log_prob fails in float64 wherever
    the sample's cache misses, as it does for all but the last time step)."""
    D, Z, E, TR, H, T = 3, 2, 4, 4, 4, 3
    mask = torch.arange(T) < DMM_LENGTHS[:, None]  # [N, T]
    seqs = coin(N, T, D, seed=1) * mask[..., None]
    with seeded(12):
        nets = {"emitter": Emitter(D, Z, E), "trans": GatedTransition(Z, TR), "combiner": Combiner(Z, H)}
        rnn = nn.RNN(D, H, nonlinearity="relu", batch_first=True, dtype=DT)
        iafs = [affine_coupling(Z, hidden_dims=[3]).to(DT)] if flow else []

    def model(self, seqs, idx=None, annealing_factor=1.0):
        with data_plate("z_minibatch", len(seqs), form, idx) as ind:
            x, m = seqs[ind], mask[ind]
            z_prev = self.z_0.expand(len(ind), Z)
            for t in pyro.markov(range(1, T + 1)):
                z_loc, z_scale = self.trans(z_prev)
                with poutine.scale(scale=annealing_factor):
                    z_t = pyro.sample(f"z_{t}", dist.Normal(z_loc, z_scale).mask(m[:, t - 1 : t]).to_event(1))
                emission_probs_t = self.emitter(z_t)
                obs_t = dist.Bernoulli(emission_probs_t).mask(m[:, t - 1 : t]).to_event(1)
                pyro.sample(f"obs_x_{t}", obs_t, obs=x[:, t - 1, :])
                z_prev = z_t

    def guide(self, seqs, idx=None, annealing_factor=1.0):
        with data_plate("z_minibatch", len(seqs), form, idx) as ind:
            x, m, lengths = seqs[ind], mask[ind], DMM_LENGTHS[ind]
            h_0 = self.h_0.expand(1, len(ind), H).contiguous()
            rnn_output, _ = self.rnn(reverse_sequences(x, lengths), h_0)
            rnn_output = reverse_sequences(rnn_output, lengths)
            z_prev = self.z_q_0.expand(len(ind), Z)
            for t in pyro.markov(range(1, T + 1)):
                z_loc, z_scale = self.combiner(z_prev, rnn_output[:, t - 1, :])
                with poutine.scale(scale=annealing_factor):
                    if flow:
                        z_dist = dist.TransformedDistribution(dist.Normal(z_loc, z_scale), list(self.iafs))
                        z_t = pyro.sample(f"z_{t}", z_dist.mask(m[:, t - 1]))
                    else:
                        z_t = pyro.sample(f"z_{t}", dist.Normal(z_loc, z_scale).mask(m[:, t - 1 : t]).to_event(1))
                z_prev = z_t

    model_fn = Fn(model, emitter=nets["emitter"], trans=nets["trans"], z_0=torch.zeros(Z))
    guide_parts = {"combiner": nets["combiner"], "rnn": rnn, "iafs": iafs, "z_q_0": torch.zeros(Z)}
    guide_fn = Fn(guide, h_0=torch.zeros(1, 1, H), **guide_parts)
    return model_fn, guide_fn, call_args(seqs, form)


@case("dmm.dmm", "examples/dmm.py")
def _dmm_plain(form):
    return (*_dmm(form), {})


@case("dmm.kl_annealing", "examples/dmm.py (--annealing-epochs: annealing_factor < 1)", site_scaled=True)
def _dmm_kl_annealing(form):
    return (*_dmm(form), {"annealing_factor": 0.2})


@case("dmm.flow", "examples/dmm.py (--num-iafs 1, with an affine coupling flow)")
def _dmm_flow(form):
    return (*_dmm(form, flow=True), {})


# ------------------------------------------------------------------------------------------------
# pyro/infer/autoguide on a small model


def _auto_model(form: str, global_latent: bool = False):
    """Per point: z ~ N(0, I_2), s ~ LogNormal(0, 1), x ~ N(z_1 + z_2, s)."""

    def model(self, data, idx=None):
        g = pyro.sample("g", dist.Normal(f64(0.0), 1.0)) if global_latent else 0.0
        with data_plate("data", len(data), form, idx) as ind:
            z = pyro.sample("z", dist.Normal(torch.zeros(2, dtype=DT), 1.0).to_event(1))
            s = pyro.sample("s", dist.LogNormal(f64(0.0), 1.0))
            pyro.sample("x", dist.Normal(z.sum(-1) + g, s), obs=data[ind])

    return Fn(model), call_args(randn(N, seed=1), form)


def _autoguide(form: str, guide_class, global_latent: bool = False, **options):
    """AutoNormal and AutoDelta get the model's data plate through ``create_plates`` (with the
    model's ``idx``); the AutoContinuous guides take no ``create_plates`` and build their own plate,
    which under form "idx" draws a random subsample the model (given ``idx``) does not follow."""
    model, args = _auto_model(form, global_latent)
    # autoguides are PyroModules: their parameters live in Pyro's global param store under fixed
    # names ("AutoNormal.locs.z", ...), so a fresh guide needs a clear store (else it takes over
    # the last instance's values, or fails when the latent's size changed)
    pyro.clear_param_store()
    if guide_class in (AutoNormal, AutoDelta):
        options["create_plates"] = lambda data, idx=None: data_plate("data", len(data), form, idx)
    return model, guide_class(model, **options), args, {}


@case("autoguide.normal", AUTO + "guides.py::AutoNormal")
def _auto_normal(form):
    return _autoguide(form, AutoNormal)


@case("autoguide.delta", AUTO + "guides.py::AutoDelta")
def _auto_delta(form):
    return _autoguide(form, AutoDelta)


@case("autoguide.normal_messenger", AUTO + "effect.py::AutoNormalMessenger")
def _auto_normal_messenger(form):
    """A GuideMessenger: the guide runs the model, so its trace holds the model's observed sites."""
    return _autoguide(form, AutoNormalMessenger)


@case("autoguide.normal.global_latent", AUTO + "guides.py::AutoNormal", inside=False, why=GLOBAL)
def _auto_normal_global(form):
    return _autoguide(form, AutoNormal, global_latent=True)


@case("autoguide.diagonal_normal", AUTO + "guides.py::AutoDiagonalNormal", inside=False, why=GLOBAL)
def _auto_diagonal_normal(form):
    """AutoContinuous: one auxiliary latent ``_AutoDiagonalNormal_latent`` over all points' sites,
    outside every plate, whose log q does not split per point."""
    return _autoguide(form, AutoDiagonalNormal)


@case("autoguide.multivariate_normal", AUTO + "guides.py::AutoMultivariateNormal", inside=False, why=GLOBAL)
def _auto_multivariate_normal(form):
    return _autoguide(form, AutoMultivariateNormal)


@case(
    "autoguide.low_rank_multivariate_normal",
    AUTO + "guides.py::AutoLowRankMultivariateNormal",
    inside=False,
    why=GLOBAL,
)
def _auto_low_rank(form):
    return _autoguide(form, AutoLowRankMultivariateNormal, rank=2)


@case("autoguide.iaf_normal", AUTO + "guides.py::AutoIAFNormal", inside=False, why=GLOBAL)
def _auto_iaf_normal(form):
    return _autoguide(form, AutoIAFNormal)


assert len({c.name for c in CASES}) == len(CASES), "case names must be unique"


# ------------------------------------------------------------------------------------------------
# checks with Pyro itself: python -m tests.conformance.pyro_cases


def _traces(model, guide, args, kwargs):
    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    return model_trace, guide_trace


def _sample_sites(trace) -> list[dict]:
    return [s for s in trace.nodes.values() if s["type"] == "sample" and not site_is_subsample(s)]


def _is_factor(site: dict) -> bool:
    return site["is_observed"] and isinstance(site["fn"], dist.Unit)


def structure(model, guide, args, kwargs) -> str:
    """The contract category of a pair from one plain run of guide and model ('' when inside):
    a reference classification to check each case's ``inside``/``why`` against."""
    model_trace, guide_trace = _traces(model, guide, args, kwargs)
    sites = _sample_sites(model_trace) + _sample_sites(guide_trace)
    frames = [f for s in sites for f in s["cond_indep_stack"]]
    if any(s["infer"].get("enumerate") for s in sites):
        return ENUM
    if not any(f.vectorized for f in frames):
        return NO_PLATE
    if len({f.name for f in frames if f.dim == -1}) > 1:
        return TWO_AT_1
    if any(all(f.dim != -1 for f in s["cond_indep_stack"]) for s in sites):
        return GLOBAL
    if any(f.dim != -1 and f.full_size not in (None, f.size) for f in frames):
        return SUB_INNER
    guide_latents = {
        s["name"]: s for s in _sample_sites(guide_trace) if not s["is_observed"] and not s["infer"].get("is_auxiliary")
    }
    model_latents = {s["name"]: s for s in _sample_sites(model_trace) if not s["is_observed"]}
    if set(guide_latents) - set(model_latents):
        return GUIDE_ONLY
    if set(model_latents) - set(guide_latents):
        return MODEL_ONLY
    for name, g in guide_latents.items():
        m = model_latents[name]["fn"]
        if g["fn"].event_dim != m.event_dim or g["fn"].shape() != m.shape():
            return SHAPE
    return ""


def flags(model, guide, args, kwargs) -> tuple[bool, bool, set]:
    """(reparam, site_scaled, dtypes) of one run: every guide latent has rsample; the scales of
    the sample sites differ; the dtypes of the floating values."""
    model_trace, guide_trace = _traces(model, guide, args, kwargs)
    guide_sites = [s for s in _sample_sites(guide_trace) if not s["is_observed"]]
    reparam = all(s["fn"].has_rsample for s in guide_sites)
    guide_scored = [s for s in _sample_sites(guide_trace) if not s["is_observed"] or _is_factor(s)]
    sites = _sample_sites(model_trace) + guide_scored
    scales = [torch.as_tensor(s["scale"], dtype=DT) for s in sites]
    site_scaled = any(sc.shape != scales[0].shape or not torch.equal(sc, scales[0]) for sc in scales)
    dtypes = {s["value"].dtype for s in sites if s["value"].is_floating_point()}
    return reparam, site_scaled, dtypes


def pyro_loss(c: PyroCase, form: str) -> tuple[float, Tensor | None]:
    """Pyro's Trace_ELBO loss (4 vectorized particles) and the indices the data plate scored."""

    class Indices(Messenger):
        def __init__(self) -> None:
            super().__init__()
            self.seen: dict[str, Tensor] = {}
            self.data_plate: str | None = None

        def _pyro_post_sample(self, msg: dict) -> None:
            if site_is_subsample(msg):
                self.seen.setdefault(msg["name"], msg["value"])
            for f in msg["cond_indep_stack"]:
                if f.dim == -1 and f.name != "num_particles_vectorized":
                    self.data_plate = self.data_plate or f.name

    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    model, guide, args, kwargs = c.build(form)
    elbo = Trace_ELBO(num_particles=4, vectorize_particles=True, max_plate_nesting=c.max_plate_nesting)
    with Indices() as indices:
        loss = elbo.loss(model, guide, *args, **kwargs)
    return loss, indices.seen.get(indices.data_plate)


def _first_line(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0][:70] if str(e) else ''}"


def structure_problems(c: PyroCase, form: str) -> list[str]:
    """Where the case's ``why``, ``reparam``, ``site_scaled`` or dtype disagree with one run."""
    try:
        found = structure(*c.build(form))
        problems = [] if found == c.why else [f"{form}: structure is {found or 'inside'!r}"]
        if c.inside:
            reparam, site_scaled, dtypes = flags(*c.build(form))
            if (reparam, site_scaled) != (c.reparam, c.site_scaled):
                problems.append(f"{form}: reparam={reparam} site_scaled={site_scaled}")
            if dtypes - {DT}:
                problems.append(f"{form}: dtypes {dtypes}")
        return problems
    except Exception as e:  # reported on the case's line
        return [f"{form}: tracing fails ({_first_line(e)})"]


def check(c: PyroCase) -> str:
    """One line: Pyro's loss on each form, the exactness error, and the structure checks."""
    parts, problems = [], []
    for form in c.forms:
        problems += structure_problems(c, form)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                loss, points = pyro_loss(c, form)
        except Exception as e:  # reported on the case's line
            parts.append(f"{form}=ERROR({_first_line(e)})")
            if c.inside:
                problems.append(f"{form}: Pyro fails")
            continue
        message = " ".join(str(caught[0].message).split())[:60] if caught else ""
        note = f" [{len(caught)} warning(s): {message}]" if caught else ""
        parts.append(f"{form}={loss:.4f}{note}")
        if c.exact_log_px is not None:
            model, guide, args, kwargs = c.build(form)
            exact = c.exact_log_px(args, kwargs, points if form == "size" else None)
            expected = -c.scale * (len(args[0]) / len(exact)) * exact.sum().item()
            error = abs(loss - expected)
            parts[-1] += f" (exact err {error:.1e})"
            if error > 1e-8 * (1 + abs(expected)):
                problems.append(f"{form}: loss {loss} != -sum exact_log_px {expected}")
    status = "inside" if c.inside else f"refused ({c.why})"
    verdict = "OK " if not problems else "BAD " + "; ".join(problems)
    return f"{verdict} {c.name:48s} {status:32s} {' '.join(parts)}"


if __name__ == "__main__":
    lines = [check(c) for c in CASES]
    print("\n".join(lines))
    inside, bad = sum(c.inside for c in CASES), sum(not line.startswith("OK") for line in lines)
    print(f"{len(CASES)} cases: {inside} inside, {len(CASES) - inside} refused; {bad} BAD")
