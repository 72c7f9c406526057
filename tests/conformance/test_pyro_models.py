"""Every estimator configuration on model/guide pairs adapted from Pyro's own tests and examples
(``pyro_cases.py``), on every plate form each takes (a full batch, ``subsample=idx``,
``subsample_size=B``): a pair inside the contract gives Pyro's ``Trace_ELBO`` and
``TraceMeanField_ELBO`` numbers on the same draw (value and gradient) and, where the model is
conjugate and the guide its posterior, the exact log p(x); a pair outside it is refused with one
``ModelStructureError`` line, by every estimator."""

import math

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from torch import nn

from pyrovae import ModelStructureError, estimators

from .cases import CASES as CONFIGS
from .cases import SLEEPS
from .cases import make as make_config
from .pyro_cases import CASES, ENUM, GLOBAL, GUIDE_ONLY, MODEL_ONLY, NO_PLATE, SHAPE, SUB_INNER, TWO_AT_1

INSIDE = [pytest.param(c, form, id=f"{c.name}[{form}]") for c in CASES if c.inside for form in c.forms]
REFUSED = [pytest.param(c, form, id=f"{c.name}[{form}]") for c in CASES if not c.inside for form in c.forms]
EXACT = [p for p in INSIDE if p.values[0].guide_is_posterior]
# each refusal names its problem
WORDS = {
    GLOBAL: "not inside a plate at dim=-1",
    TWO_AT_1: "but the data plate is",
    SUB_INNER: "is subsampled",
    SHAPE: "disagree at site",
    GUIDE_ONLY: "which the model does not",
    MODEL_ONLY: "but the guide does not",
    ENUM: "is enumerated",
    NO_PLATE: "inside a plate",
}


def build(case, form):
    pyro.clear_param_store()
    return case.build(form)


def parameters(model, guide) -> list[torch.Tensor]:
    seen, out = set(), []
    for m in (model, guide):
        for p in m.parameters() if isinstance(m, nn.Module) else ():
            if id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


def expected_refusal(case, est) -> str | None:
    """What the estimator refuses in this pair inside the contract, or None."""
    if case.site_scaled and not est.carries_site_scales:
        return "needs one scale for the whole model"
    if not case.reparam and not est.supports_score_function:
        return "cannot be reparameterized"
    return None


def one_line_refusal(fn, *words):
    with pytest.raises(ModelStructureError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message and all(w in message for w in words), message


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("case, form", INSIDE)
def test_every_estimator_computes_its_bound_or_refuses_in_one_line(case, form, config):
    model, guide, args, kwargs = build(case, form)
    est = make_config(config, 3)
    refusal = expected_refusal(case, est)
    if refusal is not None:
        one_line_refusal(lambda: est.differentiable_loss(model, guide, *args, **kwargs), refusal)
        return
    pyro.set_rng_seed(1)
    loss = est.loss(model, guide, *args, **kwargs)
    assert math.isfinite(loss)
    pyro.set_rng_seed(1)
    try:
        dl = est.differentiable_loss(model, guide, *args, **kwargs)
    except ModelStructureError as e:  # the sleep phase needs the data as the first argument, ...: one line
        assert config in SLEEPS and "\n" not in str(e), str(e)
        return
    assert dl.item() == pytest.approx(loss, rel=1e-10, abs=1e-10)  # the value is the bound, never a surrogate
    params = parameters(model, guide) or list(pyro.get_param_store().values())
    if dl.requires_grad:
        for p, g in zip(params, torch.autograd.grad(dl, params, allow_unused=True), strict=True):
            assert g is None or torch.isfinite(g).all(), p.shape


def value_and_grads(loss_fn, model, guide, args, kwargs, seed):
    pyro.set_rng_seed(seed)
    loss = loss_fn.differentiable_loss(model, guide, *args, **kwargs)
    params = parameters(model, guide) or list(pyro.get_param_store().values())
    grads = torch.autograd.grad(loss, params, allow_unused=True) if loss.requires_grad else [None] * len(params)
    return loss.item(), [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]


@pytest.mark.parametrize("ours, theirs", [("elbo", Trace_ELBO), ("analytic_elbo", TraceMeanField_ELBO)])
@pytest.mark.parametrize("case, form", INSIDE)
def test_the_elbos_give_pyros_value_and_gradient_on_the_same_draw(case, form, ours, theirs):
    if theirs is TraceMeanField_ELBO and not case.reparam:
        pytest.skip("Pyro's TraceMeanField_ELBO needs reparameterized sites")
    model, guide, args, kwargs = build(case, form)
    if theirs is TraceMeanField_ELBO and not closed_form_everywhere(case, model, guide, args, kwargs):
        pytest.skip(
            "by design: where the guide samples a site before a latent the model drew first, pyrovae "
            "takes the Monte Carlo KL term (the closed form at that later sample can be biased)"
        )
    guide(*args, **kwargs)  # an autoguide's first call draws its set-up from the RNG: not part of the draw
    reference = theirs(num_particles=4, vectorize_particles=True, max_plate_nesting=case.max_plate_nesting)
    a, ga = value_and_grads(estimators.make(ours, num_particles=4), model, guide, args, kwargs, seed=3)
    b, gb = value_and_grads(reference, model, guide, args, kwargs, seed=3)
    assert a == pytest.approx(b, rel=1e-9, abs=1e-9)
    for x, y in zip(ga, gb, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-8, atol=1e-9)


def closed_form_everywhere(case, model, guide, args, kwargs) -> bool:
    """Whether the guide samples, before each latent, every latent the model draws before it (then
    pyrovae's analytic KL takes the closed form at every site, as Pyro's TraceMeanField_ELBO)."""
    w = estimators.draw(
        model, guide, args, kwargs, num_particles=1, max_plate_nesting=case.max_plate_nesting, one_scale=None
    )
    model_order = [n for n in w.model_trace.nodes if n in w.latents]
    guide_order = [n for n in w.guide_trace.nodes if n in w.latents]
    return all(set(model_order[: model_order.index(n)]) <= set(guide_order[: guide_order.index(n)])
               for n in w.latents)  # fmt: skip


def scored_points(case, form, model, guide, args, kwargs, seed):
    """The data points a draw at ``seed`` scores (the plate's own draw under form "size")."""
    if form != "size":
        return None
    pyro.set_rng_seed(seed)
    w = estimators.draw(
        model, guide, args, kwargs, num_particles=1, max_plate_nesting=case.max_plate_nesting, one_scale=None
    )
    return w.pin.indices[w.structure.plate]


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("case, form", EXACT)
def test_every_bound_is_the_exact_log_likelihood_at_the_posterior(case, form, config):
    model, guide, args, kwargs = build(case, form)
    exact = case.exact_log_px(args, kwargs, scored_points(case, form, model, guide, args, kwargs, seed=4))
    est = make_config(config, 3)
    pyro.set_rng_seed(4)
    if config == "analytic_elbo":  # its reconstruction term is sampled: exact in the mean
        w = est.log_weights(model, guide, args, kwargs, num_particles=4000, for_gradient=False)
        terms = w.log_lik - w.kl()  # [K, B]
        assert (terms.mean(0) - exact).abs().max() <= 5 * terms.std(0).max() / 4000**0.5 + 1e-9
        return
    try:
        bound = est.bound(model, guide, *args, **kwargs)
    except ModelStructureError as e:
        assert config in SLEEPS or expected_refusal(case, est), str(e)
        return
    torch.testing.assert_close(bound, exact.to(bound.dtype), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("case, form", REFUSED)
def test_every_structure_outside_the_contract_is_refused_in_one_line(case, form, config):
    model, guide, args, kwargs = build(case, form)
    est = make_config(config, 3)
    one_line_refusal(lambda: est.differentiable_loss(model, guide, *args, **kwargs), WORDS[case.why])
    one_line_refusal(lambda: est.loss(model, guide, *args, **kwargs), WORDS[case.why])


def test_the_suite_draws_on_pyros_own_tests_and_examples():
    """The closing note counts these: cases inside and outside the contract, and where they come from."""
    sources = {c.source.split("::")[0] for c in CASES}
    assert {"tests/infer/test_valid_models.py", "tests/infer/test_gradient.py", "tests/infer/test_inference.py",
            "examples/dmm.py"} <= sources  # fmt: skip
    assert sum(c.inside for c in CASES) >= 40 and sum(not c.inside for c in CASES) >= 15
