"""What the conformance suite runs over: generated structures (hypothesis strategies), every
estimator configuration, and helpers that build a pair and call an estimator as a user would."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from hypothesis import strategies as st

from pyrovae import estimators

from .gaussian_dag import PLATES, DAGGuide, DAGModel, Structure


@st.composite
def structures(draw: st.DrawFn, plates: tuple[str, ...] = PLATES, dtypes: tuple = (torch.float64, torch.float32)):
    """One to three Gaussian latent sites in a chain or a tree, x below them, a data plate of each
    form, sometimes a plate at dim -2 inside it (with or without a latent site in it)."""
    n_latent = draw(st.integers(1, 3), label="latent sites")
    dims = tuple(draw(st.integers(1, 3)) for _ in range(n_latent))
    tree = draw(st.booleans(), label="tree (else chain)")
    parents = [()] + [((draw(st.integers(0, j - 1)),) if tree else (j - 1,)) for j in range(1, n_latent)]
    has_children = {p for ps in parents for p in ps}
    leaves = [j for j in range(n_latent) if j not in has_children]
    others = [j for j in range(n_latent) if j in has_children]
    x_parents = tuple(sorted(set(leaves) | set(draw(st.lists(st.sampled_from(others), unique=True))
                                               if others else [])))  # fmt: skip
    inner = draw(st.sampled_from([0, 0, 1, 2, 3]), label="inner plate size")
    inner_latent = draw(st.sampled_from([None, *leaves]), label="latent in the inner plate") if inner else None
    globals_ = [j for j in range(n_latent) if j != inner_latent]
    order = tuple(draw(st.permutations(globals_), label="guide order"))
    plate = draw(st.sampled_from(plates), label="data plate")
    if plate == "full":
        num_data = batch = draw(st.integers(1, 5))
    else:
        num_data = draw(st.integers(3, 9))
        batch = draw(st.integers(1, num_data - 1))
    dtype = draw(st.sampled_from(dtypes))
    return Structure(dims, tuple(parents), x_parents, draw(st.integers(1, 3), label="x size"), inner,
                     inner_latent, order, plate, num_data, batch, dtype)  # fmt: skip


@dataclass
class Pair:
    """A generated model and guide with their data and call arguments."""

    s: Structure
    model: DAGModel
    guide: DAGGuide
    data: Tensor
    args: tuple

    def run(self, fn, seed: int = 0):
        """``fn(model, guide, *args)`` with a fixed seed; returns (its value, the indices of the
        data points it scored), and checks every pass of that call scored the same points."""
        self.model.seen.clear()
        self.guide.seen.clear()
        torch.manual_seed(seed)
        value = fn(self.model, self.guide, *self.args)
        seen = self.model.seen + self.guide.seen
        assert seen, "the call ran neither model nor guide"
        for other in seen[1:]:
            assert torch.equal(other, seen[0]), f"one call scored different data points: {seen[0]} and {other}"
        return value, seen[0]

    def points(self, idx: Tensor) -> Tensor:
        return self.data if self.s.plate == "full" else self.data[idx]

    @property
    def scale(self) -> float:
        return self.s.num_data / self.s.batch

    def parameters(self) -> list[torch.nn.Parameter]:
        return list(self.model.parameters()) + list(self.guide.parameters())


Tensor = torch.Tensor


def build(s: Structure, seed: int, perturb: float = 0.0, idx_seed: int = 0) -> Pair:
    model = DAGModel(s, seed)
    guide = DAGGuide(s).set_exact(model, perturb, seed=seed + 1)
    data = model.sample(s.num_data, seed=seed + 2)
    if s.plate == "idx":
        g = torch.Generator().manual_seed(idx_seed)
        args: tuple = (data, torch.randperm(s.num_data, generator=g)[: s.batch])
    else:
        args = (data,)
    return Pair(s, model, guide, data, args)


# Every registered estimator, with the option variants that change what it computes.
CASES = {
    "elbo": ("elbo", {}),
    "analytic_elbo": ("analytic_elbo", {}),
    "iwae": ("iwae", {}),
    "stl": ("stl", {}),
    "stl[iwae]": ("stl", {"iwae": True}),
    "dreg": ("dreg", {}),
    "rws": ("rws", {}),
    "rws[dreg]": ("rws", {"wake_phi": "dreg"}),
    "rws[sleep]": ("rws", {"wake_phi": "none", "sleep_phi": True}),
    "rws[dreg+sleep]": ("rws", {"wake_phi": "dreg", "sleep_phi": True}),
    "renyi[0.5]": ("renyi", {"alpha": 0.5}),
    "renyi[-1]": ("renyi", {"alpha": -1.0}),
    "miwae[2]": ("miwae", {"num_groups": 2}),
    "piwae[2]": ("piwae", {"num_groups": 2}),
    "ciwae[0.3]": ("ciwae", {"beta": 0.3}),
    "elbo[kl_weight]": ("elbo", {"kl_weight": 0.5}),
    "dreg[kl_weight]": ("dreg", {"kl_weight": 0.5}),
    "vimco": ("vimco", {}),
    "dreg[0.5]": ("dreg", {"alpha": 0.5}),
    "jvi": ("jvi", {}),
    "jvi[2,dreg]": ("jvi", {"order": 2, "gradient": "dreg"}),
    "tvo": ("tvo", {}),
    "tvo[moments,reparam]": ("tvo", {"partition": "moments", "gradient": "reparam"}),
    "sumo": ("sumo", {}),
    "vargrad": ("vargrad", {}),
    "gdreg": ("gdreg", {}),
}
# estimators that need K >= 2 (a leave-one-out baseline, a variance, a jackknife) run with at
# least that K where a test asks for fewer
MIN_K = {"vimco": 2, "vargrad": 2, "jvi": 3}
# estimators whose guide gradient is a path derivative only: exactly zero at the posterior
PATH_DERIVATIVE = {"stl", "stl[iwae]", "dreg", "gdreg", "rws[dreg]", "dreg[0.5]", "jvi[2,dreg]"}
# sleep-phi needs the dreamt data as the model's first argument (or that argument indexed)
SLEEPS = {"rws[sleep]", "rws[dreg+sleep]"}


def make(case: str, k: int, **extra) -> estimators.Estimator:
    name, options = CASES[case]
    return estimators.make(name, num_particles=max(k, MIN_K.get(name, 1)), **options, **extra)


def grad_list(output: Tensor, params: list) -> list[Tensor]:
    """d output / d params, zeros where a parameter does not reach the output."""
    grads = torch.autograd.grad(output, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]


def flat_grad(output: Tensor, params: list) -> Tensor:
    """d output / d params as one float64 vector."""
    return torch.cat([g.reshape(-1).double() for g in grad_list(output, params)])


def tolerance(dtype: torch.dtype, magnitude: float) -> float:
    """Absolute tolerance for a value of ``magnitude`` computed in ``dtype``."""
    rel = 1e-9 if dtype == torch.float64 else 2e-5
    return rel * (1.0 + magnitude) * 50
