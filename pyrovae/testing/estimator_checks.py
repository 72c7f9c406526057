"""The estimator contract as checks: ``check_estimator(name_or_class, **options)``.

Every check builds a fresh estimator and runs it on the linear-Gaussian model of
:mod:`.linear_gaussian` (exact log p(x), exact posterior, closed-form ELBO) as a user would, in
each plate form, or on pyrovae's VAE families. What an estimator declares decides what it is held
to: ``reports_bound`` (its value is a lower bound on log p(x); default True), ``estimates``
("elbo", "iwae" or "bound": what its gradient is unbiased for) and ``unbiased_gradient``
(default True). pyrovae's :class:`~pyrovae.estimators.Estimator` declares all three.
"""

from __future__ import annotations

import functools
import math
import pickle
from collections.abc import Callable
from typing import Any

import pyro.infer
import torch

from .. import estimators
from ..registry import option_names
from .linear_gaussian import LinearGaussian
from .problem import IDX, call, close, flat_grad, scale_of, worst_z
from .report import Check, CheckFailed, NotApplicable, Report, run_checks
from .vae_families import finite_gradients_on_families
from .worker import run_in_worker

DEFAULT_PARTICLES = 4  # K where the options give none: IWAE-like bounds differ from the ELBO
DRAWS = 200  # draws of the statistical checks
Z_LIMIT = 5.0  # |z| beyond which a statistical check fails (a false alarm about once in 10^6 a coordinate)
PYRO_ELBOS = ("Trace_ELBO", "TraceMeanField_ELBO", "TraceGraph_ELBO", "TraceEnum_ELBO")


class Subject:
    """What is checked: a name (built-in, entry point, import path, ``pyro.<ELBO>``) or a class,
    with its options; ``make()`` builds a fresh instance."""

    def __init__(self, estimator: str | type, options: dict[str, Any], draws: int = DRAWS) -> None:
        self.estimator, self.options, self.draws = estimator, dict(options), draws
        cls = estimator if isinstance(estimator, type) else None
        if isinstance(estimator, str) and not estimator.startswith(estimators.PYRO_PREFIX):
            cls = estimators.REGISTRY.get(estimator)
        if cls is not None and "num_particles" not in self.options and "num_particles" in option_names(cls):
            self.options["num_particles"] = DEFAULT_PARTICLES
        self.label = estimator if isinstance(estimator, str) else f"{estimator.__module__}:{estimator.__qualname__}"
        self.label += "".join(f" {k}={v}" for k, v in sorted(self.options.items()))

    def make(self) -> Any:  # a pyro.infer.ELBO, with whatever else its class declares
        if isinstance(self.estimator, str):
            return estimators.make(self.estimator, **self.options)
        return self.estimator(**self.options)


def estimator_checks(estimator: str | type, *, draws: int = DRAWS, **options: Any) -> list[Check]:
    """The contract checks of an estimator, each a callable :class:`Check`; for pytest::

    @pytest.mark.parametrize("check", estimator_checks("my_module:MyBound"), ids=str)
    def test_my_bound(check):
        check()
    """
    s = Subject(estimator, options, draws)
    found: list[tuple[str, Callable[[Subject], str]]] = [
        ("is_a_pyro_elbo", is_a_pyro_elbo),
        ("loss_is_the_bound", loss_is_the_bound),
        ("plate_forms_agree", plate_forms_agree),
        ("subsample_size", subsample_size),
        ("exact_at_the_posterior", exact_at_the_posterior),
        ("lower_bound", lower_bound),
        ("gradient_unbiased", gradient_unbiased),
        ("finite_gradients_on_vae_families", lambda s: finite_gradients_on_families(s.make)),
        ("pickles", pickles),
        ("runs_in_a_worker", runs_in_a_worker),
    ]
    return [Check(name, functools.partial(fn, s), s.label) for name, fn in found]


def check_estimator(estimator: str | type, *, skip: tuple[str, ...] = (), draws: int = DRAWS, **options: Any) -> Report:
    """Run every contract check on ``estimator`` (built with ``options``) and return the report;
    ``report.passed``, ``print(report)``, ``report.raise_for_failures()``. ``skip``: check ids to
    leave out (``"runs_in_a_worker"`` starts a process, a few seconds); ``draws``: draws of each
    statistical check (more: a smaller bias found)."""
    return run_checks(Subject(estimator, options).label, estimator_checks(estimator, draws=draws, **options), skip)


def fail(s: Subject, message: str) -> CheckFailed:
    return CheckFailed(f"{s.label}: {message}")


def is_a_pyro_elbo(s: Subject) -> str:
    est = s.make()
    if not isinstance(est, pyro.infer.ELBO):
        raise fail(s, f"is a {type(est).__name__}, not a pyro.infer.ELBO: SVI and pyrovae's training take ELBOs")
    for method in ("loss", "differentiable_loss", "loss_and_grads"):
        if not callable(getattr(est, method, None)):
            raise fail(s, f"has no {method}()")
    return f"a pyro.infer.ELBO ({type(est).__name__})"


def has_bound(est: Any) -> bool:
    return callable(getattr(est, "bound", None))


def loss_is_the_bound(s: Subject) -> str:
    """``loss``, ``differentiable_loss`` and ``bound`` report one value on one draw."""
    problem = LinearGaussian().perturb()
    loss, _ = call(s.make().loss, problem, "idx", seed=11)
    dloss, _ = call(s.make().differentiable_loss, problem, "idx", seed=11)
    if not close(loss, dloss.item()):
        raise fail(s, f"loss {loss:.6g} but differentiable_loss {dloss.item():.6g} on the same draw: loss must "
                   "report the negated bound, never a surrogate, and differentiable_loss have that value (a surrogate "
                   "only in its gradient)")  # fmt: skip
    if not has_bound(s.make()):
        return f"loss = differentiable_loss = {loss:.4f} (no bound() to compare)"
    bound, _ = call(s.make().bound, problem, "idx", seed=11)
    expected = -scale_of(problem, "idx") * bound.sum().item()
    if not close(loss, expected):
        raise fail(s, f"loss {loss:.6g} but -(N/B) sum(bound()) {expected:.6g} on the same draw: loss must be "
                   "the negated scaled bound, never a surrogate")  # fmt: skip
    return f"loss = differentiable_loss = -(N/B) sum(bound) = {loss:.4f} on one draw"


def plate_forms_agree(s: Subject) -> str:
    """``subsample=idx`` scores each point as a full batch of those points does, scaled by N / B."""
    problem = LinearGaussian().perturb()
    scale = scale_of(problem, "idx")
    full, _ = call(s.make().loss, problem, "full", seed=12)
    sub, _ = call(s.make().loss, problem, "idx", seed=12)
    if not close(sub, scale * full):
        raise fail(s, f"under subsample=idx the loss is {sub:.6g}, but N/B = {scale:g} times the loss of the same "
                   f"points as a full batch is {scale * full:.6g} (same draw): the mini-batch scale must multiply "
                   "the per-point bounds, outside every logsumexp")  # fmt: skip
    if has_bound(s.make()):
        b_full, _ = call(s.make().bound, problem, "full", seed=12)
        b_sub, _ = call(s.make().bound, problem, "idx", seed=12)
        if b_sub.shape != b_full.shape or not torch.allclose(b_sub.double(), b_full.double(), rtol=1e-7, atol=1e-7):
            raise fail(s, f"bound() per point differs between a full batch {b_full.tolist()} and subsample=idx "
                       f"{b_sub.tolist()} of the same points (same draw)")  # fmt: skip
    return f"subsample=idx: loss {sub:.4f} = {scale:g} x full-batch loss {full:.4f}, per point alike"


def subsample_size(s: Subject) -> str:
    """Under ``subsample_size`` the loss is unbiased for the loss over all N points."""
    problem = LinearGaussian().perturb()
    sub = torch.tensor([call(s.make().loss, problem, "size", seed=3000 + r)[0] for r in range(s.draws)])
    full = torch.tensor([call(s.make().loss, problem, "all", seed=4000 + r)[0] for r in range(s.draws)])
    z = (sub.mean() - full.mean()).abs().item() / math.sqrt(sub.var().item() / s.draws + full.var().item() / s.draws)
    if not z < Z_LIMIT:
        raise fail(s, f"under subsample_size the mean loss is {sub.mean():.4f}, over all N points as a full batch "
                   f"{full.mean():.4f} (z = {z:.1f}, {s.draws} draws each): the N/B-scaled mini-batch loss must "
                   "be unbiased for the full-data loss")  # fmt: skip
    return f"mean loss {sub.mean():.3f} under subsample_size, {full.mean():.3f} over all N (z = {z:.2f})"


def exact_at_the_posterior(s: Subject) -> str:
    """At the exact posterior every log weight is log p(x): the value is exact, in every form (an
    estimator with a closed-form KL term is exact in expectation only: then a z-test over draws)."""
    problem = LinearGaussian()
    for form in ("full", "idx", "size"):
        loss, points = call(s.make().loss, problem, form, seed=13)
        exact = -scale_of(problem, form) * problem.model.log_px(problem.x[points]).sum().item()
        if not close(loss, exact, 1e-8):
            return exact_in_expectation(s, problem)
        if has_bound(s.make()):
            bound, points = call(s.make().bound, problem, form, seed=13)
            exact_points = problem.model.log_px(problem.x[points])
            if not torch.allclose(bound.double(), exact_points, rtol=1e-8, atol=1e-8):
                raise fail(s, f"at the exact posterior bound() ({form} batch) is {bound.tolist()}, log p(x) is "
                           f"{exact_points.tolist()}")  # fmt: skip
    return f"= -(N/B) sum log p(x) exactly in full, subsample=idx and subsample_size form (last {loss:.4f})"


def exact_in_expectation(s: Subject, problem: LinearGaussian) -> str:
    """At the exact posterior, the mean loss over draws (``subsample=idx``) against the exact value."""
    exact = -scale_of(problem, "idx") * problem.model.log_px(problem.x[IDX]).sum().item()
    values = torch.tensor([call(s.make().loss, problem, "idx", seed=8000 + r)[0] for r in range(s.draws)])
    z = abs(values.mean().item() - exact) / max(values.std().item() / math.sqrt(s.draws), 1e-12)
    if not z <= Z_LIMIT:
        raise fail(s, f"at the exact posterior the loss is {values.mean():.6g} on average over {s.draws} draws, but "
                   f"-(N/B) sum log p(x) is {exact:.6g} (z = {z:.1f}): every bound equals log p(x) there, so the "
                   "loss reports something else")  # fmt: skip
    return f"= -(N/B) sum log p(x) {exact:.4f} in expectation (not on every draw: z = {z:.2f}, {s.draws} draws)"


def lower_bound(s: Subject) -> str:
    """A declared lower bound stays below log p(x) in expectation: a z-test over draws."""
    if not getattr(s.make(), "reports_bound", True):
        raise NotApplicable(f"{s.label}: declares reports_bound = False (its value is not a lower bound)")
    problem = LinearGaussian().perturb()
    exact = problem.model.log_px(problem.x).sum().item()
    values = torch.tensor([-call(s.make().loss, problem, "all", seed=5000 + r)[0] for r in range(s.draws)])
    mean, se = values.mean().item(), values.std().item() / math.sqrt(s.draws)
    z = (mean - exact) / max(se, 1e-12)
    if not z <= Z_LIMIT:  # NaN too
        raise fail(s, f"declares a lower bound, but its mean {mean:.4f} lies above the exact log p(x) {exact:.4f} "
                   f"(z = {z:.1f} over {s.draws} draws)")  # fmt: skip
    return f"mean {mean:.4f} <= exact log p(x) {exact:.4f} (z = {z:+.1f} over {s.draws} draws)"


def reference_of(s: Subject, est: Any) -> str | None:
    """What the gradient must be unbiased for: the estimator's declaration, or the ELBO for Pyro's
    own Trace ELBOs."""
    declared = getattr(est, "estimates", None)
    if declared is None and type(est).__name__ in PYRO_ELBOS:
        return "elbo"
    return declared


def gradient_unbiased(s: Subject) -> str:
    """The mean gradient over draws equals the reference gradient of what the estimator declares
    it estimates (coordinate-wise z-tests), unless it declares its gradient biased."""
    est = s.make()
    if not getattr(est, "unbiased_gradient", True):
        raise NotApplicable(f"{s.label}: declares unbiased_gradient = False")
    target = reference_of(s, est)
    if target not in ("elbo", "iwae", "bound") or (target == "bound" and not hasattr(est, "bound_objective")):
        raise fail(s, f"declares estimates = {target!r}; declare 'elbo', 'iwae' or 'bound' (with a bound_objective "
                   "method, as pyrovae's Estimator has), or unbiased_gradient = False")  # fmt: skip
    problem = LinearGaussian().perturb()
    params = problem.parameters()
    draws = torch.stack([flat_grad(call(s.make().differentiable_loss, problem, "all", 6000 + r)[0], params)
                         for r in range(s.draws)])  # fmt: skip
    ref = reference_draws(s, problem, target, params)
    ref_var = ref.var(0) / len(ref) if len(ref) > 1 else torch.zeros_like(ref[0])  # exact: no spread
    z, i = worst_z(draws.mean(0), ref.mean(0), (draws.var(0) / s.draws + ref_var).sqrt())
    if not z <= Z_LIMIT:  # NaN too
        raise fail(s, f"its mean gradient is not the gradient of the {target} it declares: coordinate {i} is "
                   f"{draws.mean(0)[i]:.5g}, the reference {ref.mean(0)[i]:.5g} (z = {z:.1f}, {s.draws} draws); "
                   "fix the surrogate, or declare unbiased_gradient = False")  # fmt: skip
    n, r = draws.shape
    return f"mean gradient = the {target}'s reference gradient (largest |z| {z:.2f} of {r} coordinates, {n} draws)"


def reference_draws(s: Subject, problem: LinearGaussian, target: str, params: list) -> torch.Tensor:
    """Draws of the reference gradient of -(the bound): exact for the ELBO (one row), the path
    derivative of IWAE(K), or of the estimator's own ``bound_objective``."""
    x = problem.x
    if target == "elbo":
        return flat_grad(-problem.elbo(x).sum(), params).unsqueeze(0)
    if target == "iwae":
        k = s.make().num_particles
        return torch.stack([flat_grad(-problem.iwae(x, k).sum(), params) for _ in range(s.draws)])
    return torch.stack([flat_grad(call(s.make().bound_objective, problem, "all", 7000 + r)[0], params)
                        for r in range(s.draws)])  # fmt: skip


def pickles(s: Subject) -> str:
    """An estimator survives pickling, and computes the same loss after it."""
    est = s.make()
    try:
        copy = pickle.loads(pickle.dumps(est))
    except Exception as e:
        raise fail(s, f"does not pickle ({type(e).__name__}: {e}); a grid worker or a checkpointing tool "
                   "pickles estimators: keep lambdas, open files and locks out of its attributes") from e  # fmt: skip
    problem = LinearGaussian().perturb()
    a, _ = call(est.loss, problem, "idx", seed=14)
    b, _ = call(copy.loss, problem, "idx", seed=14)
    if not close(a, b, 1e-12):
        raise fail(s, f"computes {b:.8g} after pickling, {a:.8g} before")
    return "pickles, and the copy computes the same loss"


def runs_in_a_worker(s: Subject) -> str:
    """A spawned process imports the estimator by its name or import path, as a grid worker does,
    and computes the same loss on the same draw."""
    name = s.estimator if isinstance(s.estimator, str) else f"{s.estimator.__module__}:{s.estimator.__qualname__}"
    if "<locals>" in name or name.startswith("__main__:"):
        raise fail(s, f"is defined in {'a function' if '<locals>' in name else '__main__'}, so a grid worker cannot "
                   f"import it as {name}: move it to a module")  # fmt: skip
    problem = LinearGaussian().perturb()
    here, _ = call(s.make().loss, problem, "idx", seed=15)
    there = run_in_worker(name, s.options, seed=15)
    if not close(here, there, 1e-12):
        raise fail(s, f"computes {there:.8g} in a worker process, {here:.8g} here")
    return f"a spawned worker imports {name} and computes the same loss ({there:.4f})"
