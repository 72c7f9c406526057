"""The model structures at the edge of the contract (pyrovae/estimators/structure.py): each pattern a
Pyro user writes gives Pyro's number, the exact value, or one ModelStructureError line.

The reproducers of issue 17 are pinned here, one test each; tests/conformance/test_pyro_models.py
runs every estimator over models adapted from Pyro's own tests and examples.
"""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO
from pyro.infer.autoguide import AutoDelta, AutoDiagonalNormal, AutoNormal, AutoNormalMessenger
from pyro.optim import Adam
from torch import nn

from pyrovae import ModelStructureError, estimators

F64 = torch.float64
NAMES = estimators.names()
ELBOS = ("elbo", "analytic_elbo", "stl")  # the estimators whose bound is linear in the log weights
WEIGHTED = [n for n in NAMES if n not in ELBOS]


def make(name, **options):
    if name == "vimco":
        options.setdefault("num_particles", 2)
    return estimators.make(name, **options)


def pyro_elbo(cls=Trace_ELBO, num_particles=4, nesting=1):
    return cls(num_particles=num_particles, vectorize_particles=True, max_plate_nesting=nesting)


def value_and_grads(loss_fn, model, guide, *args, seed=0):
    params = [p for m in (model, guide) if isinstance(m, nn.Module) for p in m.parameters()]
    pyro.set_rng_seed(seed)
    with pyro.settings.context(module_local_params=True):
        loss = loss_fn.differentiable_loss(model, guide, *args)
    return loss.item(), torch.autograd.grad(loss, params) if params else ()


def assert_same_as_pyro(ours, reference, model, guide, *args):
    """Value and gradient of ``ours`` equal Pyro's ``reference`` on the same draw."""
    a, ga = value_and_grads(ours, model, guide, *args)
    b, gb = value_and_grads(reference, model, guide, *args)
    assert a == pytest.approx(b, rel=1e-10, abs=1e-10)
    for x, y in zip(ga, gb, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-10)


def refused(fn, *words):
    """``fn()`` raises one ModelStructureError line that contains each of ``words``."""
    with pytest.raises(ModelStructureError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message
    return message


# -- 1. poutine.scale on part of the model ---------------------------------------------------------
DATA = torch.tensor([0.3, -1.2], dtype=F64)


class ScaledLikelihood(nn.Module):
    """The issue's reproducer: the likelihood under poutine.scale(s)."""

    def forward(self, s):
        with pyro.plate("data", 2):
            z = pyro.sample("z", dist.Normal(torch.tensor(0.0, dtype=F64), 1.0))
            with poutine.scale(scale=s):
                pyro.sample("x", dist.Normal(z, 1.0), obs=DATA)


class ScaledLikelihoodGuide(nn.Module):
    def __init__(self):
        super().__init__()
        self.loc = nn.Parameter(torch.tensor([0.1, -0.4], dtype=F64))
        self.log_scale = nn.Parameter(torch.tensor([0.8, 0.8], dtype=F64).log())

    def forward(self, s):
        with pyro.plate("data", 2):
            pyro.sample("z", dist.Normal(self.loc, self.log_scale.exp()))


class AnnealedModel(nn.Module):
    """Pyro's DMM pattern: KL annealing by poutine.scale around the latent sites, in model and
    guide; a mini-batch the plate draws itself."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(1.3, dtype=F64))
        self.x = torch.linspace(-1.0, 2.0, 5, dtype=F64)

    def forward(self, annealing):
        with pyro.plate("data", 5, subsample_size=3) as idx:
            with poutine.scale(scale=annealing):
                z = pyro.sample("z", dist.Normal(torch.tensor(0.0, dtype=F64), 1.0))
            pyro.sample("x", dist.Normal(self.w * z, 1.0), obs=self.x[idx])


class AnnealedGuide(nn.Module):
    def __init__(self):
        super().__init__()
        self.loc = nn.Parameter(torch.linspace(-1.0, 1.0, 5, dtype=F64))
        self.log_scale = nn.Parameter(torch.linspace(-0.5, 0.3, 5, dtype=F64))

    def forward(self, annealing):
        with pyro.plate("data", 5, subsample_size=3) as idx:
            with poutine.scale(scale=annealing):
                pyro.sample("z", dist.Normal(self.loc[idx], self.log_scale[idx].exp()))


@pytest.mark.parametrize("s", [0.5, torch.tensor(0.5, dtype=F64)], ids=["float", "tensor"])
def test_a_scale_on_the_likelihood_gives_pyros_elbo(s):
    model, guide = ScaledLikelihood(), ScaledLikelihoodGuide()
    pyro.set_rng_seed(0)
    assert make("elbo", num_particles=4).loss(model, guide, s) == pytest.approx(1.5625844287218396, rel=1e-12)
    assert_same_as_pyro(make("elbo", num_particles=4), pyro_elbo(), model, guide, s)
    assert_same_as_pyro(make("analytic_elbo", num_particles=4), pyro_elbo(TraceMeanField_ELBO), model, guide, s)


@pytest.mark.parametrize("annealing", [0.3, torch.tensor(0.3, dtype=F64)], ids=["float", "tensor"])
def test_kl_annealing_by_poutine_scale_gives_pyros_elbos_in_value_and_gradient(annealing):
    model, guide = AnnealedModel(), AnnealedGuide()
    assert_same_as_pyro(make("elbo", num_particles=4), pyro_elbo(), model, guide, annealing)
    assert_same_as_pyro(make("analytic_elbo", num_particles=4), pyro_elbo(TraceMeanField_ELBO), model, guide, annealing)


def test_kl_annealing_by_poutine_scale_is_the_kl_weighted_elbo():
    """The DMM pattern scales log p(z) - log q(z) by a: pyrovae's kl_weight computes the same
    objective on a model without the scale; stl's value is the elbo's on the same draw."""
    model, guide = AnnealedModel(), AnnealedGuide()
    scaled, g_scaled = value_and_grads(make("elbo", num_particles=3), model, guide, 0.3, seed=1)
    weighted = make("elbo", num_particles=3, kl_weight=0.3)
    _, g_weighted = value_and_grads(weighted, model, guide, 1.0, seed=1)
    assert -weighted.last_objective.item() == pytest.approx(scaled, rel=1e-12)  # its value reports beta = 1
    for a, b in zip(g_scaled, g_weighted, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    pyro.set_rng_seed(1)
    assert make("stl", num_particles=3).loss(model, guide, 0.3) == pytest.approx(scaled, rel=1e-12)


@pytest.mark.parametrize("name", WEIGHTED)
@pytest.mark.parametrize("annealing", [0.3, torch.tensor(0.3, dtype=F64)], ids=["float", "tensor"])
def test_an_importance_weighted_bound_refuses_scales_that_differ_between_sites(name, annealing):
    refused(lambda: make(name, num_particles=4).loss(AnnealedModel(), AnnealedGuide(), annealing),
            f"estimator {name!r}", "site 'x'", "kl_weight", "'elbo'")  # fmt: skip


class WhollyScaled(nn.Module):
    """Every site under the same poutine.scale: a number, or one value a data point."""

    def forward(self, s):
        with pyro.plate("data", 3), poutine.scale(scale=s):
            z = pyro.sample("z", dist.Normal(torch.tensor(0.0, dtype=F64), 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=torch.tensor([1.0, -2.0, 0.5], dtype=F64))


class WhollyScaledGuide(nn.Module):
    def __init__(self):
        super().__init__()
        self.loc = nn.Parameter(torch.tensor([0.4, -0.9, 0.2], dtype=F64))

    def forward(self, s):
        with pyro.plate("data", 3), poutine.scale(scale=s):
            pyro.sample("z", dist.Normal(self.loc, 0.8))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("s", [2.5, torch.tensor([1.0, 2.0, 3.0], dtype=F64)], ids=["number", "per-point"])
def test_a_scale_every_site_shares_multiplies_each_points_bound(name, s):
    model, guide = WhollyScaled(), WhollyScaledGuide()
    est = make(name, num_particles=4)
    pyro.set_rng_seed(5)
    unscaled = est.bound(model, guide, 1.0)
    pyro.set_rng_seed(5)
    assert torch.equal(est.bound(model, guide, s), unscaled)  # the bound of each point is unscaled
    pyro.set_rng_seed(5)
    assert est.loss(model, guide, s) == pytest.approx(-(unscaled * s).sum().item(), rel=1e-12)
    if name == "elbo":
        pyro.set_rng_seed(5)
        reference = pyro_elbo().loss(model, guide, s)
        pyro.set_rng_seed(5)
        assert est.loss(model, guide, s) == pytest.approx(reference, rel=1e-12)


def test_a_scale_that_varies_inside_a_data_point_is_carried_by_the_elbo_and_refused_by_iwae():
    x = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    s = torch.tensor([[1.0], [2.0]], dtype=F64)  # over a plate at dim -2, inside each point

    def model(s):
        with pyro.plate("data", 3), pyro.plate("inner", 2, dim=-2), poutine.scale(scale=s):
            z = pyro.sample("z", dist.Normal(torch.tensor(0.0, dtype=F64), 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(s):
        with pyro.plate("data", 3), pyro.plate("inner", 2, dim=-2), poutine.scale(scale=s):
            pyro.sample("z", dist.Normal(torch.tensor(0.2, dtype=F64), 1.0))

    pyro.set_rng_seed(0)
    ours = make("elbo", num_particles=4).loss(model, guide, s)
    pyro.set_rng_seed(0)
    assert ours == pytest.approx(pyro_elbo(nesting=2).loss(model, guide, s), rel=1e-12)
    refused(lambda: make("iwae", num_particles=4).loss(model, guide, s), "varies inside each data point")


# -- 2. two plates at dim -1 ------------------------------------------------------------------------
X2 = torch.tensor([1.0, -2.0], dtype=F64)


def flipped_model(x):
    """The issue's reproducer: latents in one plate at dim -1, data in another of the same size."""
    with pyro.plate("latents", 2):
        z = pyro.sample("z", dist.Normal(torch.tensor(0.0, dtype=F64), 1.0))
    with pyro.plate("data", 2):
        pyro.sample("x", dist.Normal(z.flip(-1), 0.1), obs=x)


def flipped_posterior(x):
    with pyro.plate("latents", 2):
        pyro.sample("z", dist.Normal(x.flip(-1) / 1.01, (0.01 / 1.01) ** 0.5))


@pytest.mark.parametrize("name", NAMES)
def test_two_plates_at_dim_minus_one_are_refused_naming_both(name):
    refused(lambda: make(name, num_particles=8).loss(flipped_model, flipped_posterior, X2),
            "'latents'", "'data'", "dim=-2")  # fmt: skip


def test_two_plates_at_dim_minus_one_of_different_sizes_and_subsampled_are_refused():
    def model(x):
        with pyro.plate("latents", 3, subsample_size=2):
            z = pyro.sample("z", dist.Normal(torch.tensor(0.0, dtype=F64), 1.0))
        with pyro.plate("data", 4, subsample_size=2):
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        with pyro.plate("latents", 3, subsample_size=2):
            pyro.sample("z", dist.Normal(torch.tensor(0.0, dtype=F64), 1.0))

    for name in ("elbo", "iwae", "dreg"):
        refused(lambda name=name: make(name).loss(model, guide, X2), "'latents'", "'data'")

    def unequal(x):
        with pyro.plate("latents", 3):
            z = pyro.sample("z", dist.Normal(torch.tensor(0.0, dtype=F64), 1.0))
        with pyro.plate("data", 2):
            pyro.sample("x", dist.Normal(z.sum(-1, keepdim=True), 1.0), obs=x)

    def unequal_guide(x):
        with pyro.plate("latents", 3):
            pyro.sample("z", dist.Normal(torch.tensor(0.0, dtype=F64), 1.0))

    assert isinstance(pyro_elbo().loss(unequal, unequal_guide, X2), float)  # Pyro sums it all
    refused(lambda: make("elbo").loss(unequal, unequal_guide, X2), "'latents'", "'data'")


# -- 3. subsampled inner plates ---------------------------------------------------------------------
def inner_model(x, idx, sequential):
    with pyro.plate("data", 1, dim=-1):
        z = pyro.sample("z", dist.Normal(torch.tensor(0.0, dtype=F64), 5.0))
        if sequential:
            for j in pyro.plate("inner", 4, subsample=idx):
                pyro.sample(f"x{j}", dist.Normal(z, 1.0), obs=x[j])
        else:
            with pyro.plate("inner", 4, subsample=idx, dim=-2):
                pyro.sample("x", dist.Normal(z, 1.0), obs=x[idx].unsqueeze(-1))


def inner_guide(x, idx, sequential):
    with pyro.plate("data", 1, dim=-1):
        pyro.sample("z", dist.Normal(torch.tensor(0.5, dtype=F64), 1.0))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("sequential", [True, False], ids=["sequential", "vectorized"])
def test_a_subsampled_inner_plate_is_refused_in_every_form(name, sequential):
    x, idx = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=F64), torch.tensor([0, 2])
    words = ["sequential plate 'inner'"] if sequential else ["plate 'inner' (dim -2)"]
    refused(lambda: make(name, num_particles=3).loss(inner_model, inner_guide, x, idx, sequential),
            *words, "2 of 4", "only the data plate 'data'")  # fmt: skip


# -- 4. model and guide that disagree on a site's shape ---------------------------------------------
def test_model_and_guide_that_disagree_on_a_shape_are_refused_naming_the_site():
    def model():
        with pyro.plate("data", 3):
            pyro.sample("x", dist.Normal(torch.zeros(3, 1, 2, dtype=F64), 1.0).to_event(2))

    def guide():
        with pyro.plate("data", 3):
            pyro.sample("x", dist.Normal(torch.zeros(3, 2, 1, dtype=F64), 1.0).to_event(2))

    with pytest.raises(ValueError, match="shapes disagree at site 'x'"):  # Pyro's own check
        with pyro.validation_enabled(True):
            Trace_ELBO().loss(model, guide)
    for name in NAMES:
        refused(lambda name=name: make(name, num_particles=2).loss(model, guide), "site 'x'", "(3, 1, 2) vs (3, 2, 1)")


def test_model_and_guide_that_disagree_on_event_dims_are_refused_naming_the_site():
    def model():
        with pyro.plate("data", 3):
            pyro.sample("z", dist.Normal(torch.zeros(3, 2, dtype=F64), 1.0).to_event(1))

    def guide():
        with pyro.plate("data", 3), pyro.plate("dims", 2, dim=-2):
            pyro.sample("z", dist.Normal(torch.zeros(2, 3, dtype=F64), 1.0))

    refused(lambda: make("elbo", max_plate_nesting=2).loss(model, guide), "site 'z'", "event dims", "1 vs 0")


# -- 5. guide factors -------------------------------------------------------------------------------
class FactorGuide(nn.Module):
    def __init__(self):
        super().__init__()
        self.loc = nn.Parameter(torch.tensor([0.3, -0.2, 0.5], dtype=F64))

    def forward(self, x, has_rsample=True):
        with pyro.plate("data", 3):
            z = pyro.sample("z", dist.Normal(self.loc, 1.0))
            pyro.factor("f", -0.3 * z**2, has_rsample=has_rsample)


def factor_model(x, has_rsample=True):
    with pyro.plate("data", 3):
        z = pyro.sample("z", dist.Normal(torch.tensor(0.0, dtype=F64), 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def test_a_guide_factor_is_a_term_of_log_q_as_in_pyro():
    x = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    guide = FactorGuide()
    assert_same_as_pyro(make("elbo", num_particles=4), pyro_elbo(), factor_model, guide, x)
    pyro.set_rng_seed(0)
    with_factor = make("iwae", num_particles=4).bound(factor_model, guide, x)
    pyro.set_rng_seed(0)
    w = make("iwae", num_particles=4).log_weights(factor_model, guide, (x,), {}, for_gradient=False)
    z = w.latents["z"]
    expected = (w.log_lik + w.log_prior - dist.Normal(guide.loc, 1.0).log_prob(z) + 0.3 * z**2).logsumexp(0)
    torch.testing.assert_close(with_factor, expected - torch.log(torch.tensor(4.0, dtype=F64)))


def test_a_guide_factor_without_rsample_takes_the_score_function_estimators_only():
    x = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    assert isinstance(make("elbo", num_particles=2).differentiable_loss(factor_model, FactorGuide(), x, False),
                      torch.Tensor)  # fmt: skip
    refused(lambda: make("dreg", num_particles=2).differentiable_loss(factor_model, FactorGuide(), x, False),
            "'f' cannot be reparameterized")  # fmt: skip


# -- tracebacks where Pyro answers ------------------------------------------------------------------
def test_a_plate_with_no_size_and_no_site_is_one_line():
    def model():  # Pyro's test_plate_no_size_ok
        with pyro.plate("plate"):
            pass

    assert pyro_elbo().loss(model, model) == 0.0
    refused(lambda: make("elbo").loss(model, model), "no sample site")
    refused(lambda: make("elbo", max_plate_nesting=1).loss(model, model), "no sample site")


def test_a_plate_with_no_size_around_the_data_gives_pyros_elbo():
    x = torch.tensor([1.0, -2.0, 0.5], dtype=F64)

    def model(x):
        with pyro.plate("data"):
            z = pyro.sample("z", dist.Normal(torch.zeros(3, dtype=F64), 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data"):
            pyro.sample("z", dist.Normal(torch.full((3,), 0.2, dtype=F64), 1.0))

    pyro.set_rng_seed(0)
    reference = pyro_elbo().loss(model, guide, x)
    pyro.set_rng_seed(0)
    assert make("elbo", num_particles=4).loss(model, guide, x) == pytest.approx(reference, rel=1e-12)


def test_svi_step_with_no_gradient_path_returns_the_loss_as_pyros_svi_does():
    x = torch.tensor([1.0, -2.0, 0.5], dtype=F64)

    def model(x):
        with pyro.plate("data", 3):
            pyro.sample("x", dist.Normal(torch.tensor(0.0, dtype=F64), 1.0), obs=x)

    def guide(x):
        pass

    expected = SVI(model, guide, Adam({}), Trace_ELBO()).step(x)
    for name in NAMES:
        if name not in ("vimco",):
            assert SVI(model, guide, Adam({}), make(name)).step(x) == pytest.approx(expected, rel=1e-12)


def test_rws_with_autodelta_steps_as_pyros_svi_does():
    x = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    guide = AutoDelta(factor_model)
    loss = SVI(factor_model, guide, Adam({"lr": 0.01}), make("rws", num_particles=3)).step(x)
    assert isinstance(loss, float) and loss == loss


def test_sleep_phi_works_with_an_effect_guide_and_refuses_a_point_mass_or_an_auxiliary_site():
    x = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    messenger = AutoNormalMessenger(factor_model)
    loss = make("rws", num_particles=3, sleep_phi=True).differentiable_loss(factor_model, messenger, x)
    assert torch.isfinite(loss)
    loss.backward()
    refused(lambda: make("rws", num_particles=3, sleep_phi=True).differentiable_loss(
        factor_model, AutoDelta(factor_model), x), "point mass", "site 'z'", "sleep_phi=false")  # fmt: skip
    refused(lambda: make("rws", num_particles=3, sleep_phi=True).differentiable_loss(
        factor_model, AutoNormal(factor_model), x), "'z_unconstrained'", "sleep_phi=false")  # fmt: skip


# -- autoguides -------------------------------------------------------------------------------------
def test_autonormal_is_inside_the_contract_and_exact_at_the_posterior():
    """AutoNormal's auxiliary site and Delta site make up log q(z): at the exact posterior of a
    conjugate model every bound equals log p(x)."""
    x = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    guide = AutoNormal(factor_model, init_loc_fn=lambda site: x / 2, init_scale=0.5**0.5)  # N(x / 2, 1 / 2)
    exact = dist.Normal(torch.tensor(0.0, dtype=F64), 2.0**0.5).log_prob(x)
    for name in NAMES:
        torch.testing.assert_close(make(name, num_particles=3).bound(factor_model, guide, x), exact)
    pyro.set_rng_seed(0)
    ours = make("elbo", num_particles=4).loss(factor_model, guide, x)
    pyro.set_rng_seed(0)
    assert ours == pytest.approx(pyro_elbo().loss(factor_model, guide, x), rel=1e-12)


def test_an_autoguide_that_joins_the_latents_into_one_vector_is_refused_naming_autonormal():
    x = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    refused(lambda: make("iwae", num_particles=3).loss(factor_model, AutoDiagonalNormal(factor_model), x),
            "'_AutoDiagonalNormal_latent'", "AutoNormal")  # fmt: skip


# -- values that lost a plate's dim -----------------------------------------------------------------
def test_a_value_that_lost_a_plate_dim_is_refused_where_pyro_computes_something():
    """``y.sum(-2)`` of a latent in a plate at dim -2 drops that dim; under K vectorized particles
    the particles' dim then lands on dim -2 and the observation's log prob is [K, K, B]. Pyro sums
    it silently; pyrovae refuses it in one line naming the site and the fix."""
    x = torch.tensor([1.0, -2.0, 0.5], dtype=F64)

    def model(x, keepdim):
        with pyro.plate("data", 3):
            with pyro.plate("inner", 4, dim=-2):
                y = pyro.sample("y", dist.Normal(torch.tensor(0.0, dtype=F64), 1.0))
            pyro.sample("x", dist.Normal(y.sum(-2, keepdim=keepdim), 1.0), obs=x)

    def guide(x, keepdim):
        with pyro.plate("data", 3), pyro.plate("inner", 4, dim=-2):
            pyro.sample("y", dist.Normal(torch.tensor(0.1, dtype=F64), 1.0))

    assert isinstance(pyro_elbo(nesting=2).loss(model, guide, x, False), float)
    for name in NAMES:
        refused(lambda name=name: make(name, num_particles=3).loss(model, guide, x, False),
                "site 'x'", "dim -2", "keepdim=True")  # fmt: skip
    pyro.set_rng_seed(0)
    reference = pyro_elbo(nesting=2).loss(model, guide, x, True)
    pyro.set_rng_seed(0)
    assert make("elbo", num_particles=4).loss(model, guide, x, True) == pytest.approx(reference, rel=1e-12)
