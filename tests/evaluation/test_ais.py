"""Annealed importance sampling against the exact log p(x) of linear-Gaussian models."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyrovae
from pyrovae.evaluation.ais import ais, beta_schedule


def test_from_the_exact_posterior_every_weight_is_log_px_at_any_number_of_steps(lg):
    model, guide = lg()
    x = model.sample(4)
    for steps in (1, 2, 7):
        result = ais(model, guide, x, num_steps=steps, num_chains=5, hmc_steps=3)
        assert result.log_weights.shape == (5, 4)
        assert torch.allclose(result.log_weights, model.log_px(x).expand(5, -1), atol=1e-9)


def test_one_step_is_importance_sampling_with_the_same_draws(lg):
    model, guide = lg(perturb=0.3)
    x = model.sample(6)
    torch.manual_seed(3)
    annealed = ais(model, guide, x, num_steps=1, num_chains=9)
    torch.manual_seed(3)
    importance = pyrovae.log_likelihood(model, guide, x, num_samples=9, chunk_size=9)
    assert torch.allclose(annealed.log_likelihood, importance, atol=1e-10)


def _standard_error(log_w: torch.Tensor) -> torch.Tensor:
    """The delta-method standard error of log mean_c w_c, per point: sd(w) / (mean(w) sqrt(C))."""
    w = (log_w - log_w.max(0).values).exp()
    return w.std(0) / (w.mean(0) * math.sqrt(w.shape[0]))


def test_from_the_prior_it_converges_to_the_exact_value_as_steps_grow(lg):
    """The prior is a poor start (its log weights spread over 10 nats or more); as the number of
    intermediate distributions grows the chains' log weights concentrate and AIS comes within a
    few of its own standard errors of the exact value."""
    model, guide = lg(perturb=0.3)
    x = model.sample(6)
    exact = model.log_px(x)
    torch.manual_seed(0)
    spread, errors = {}, {}
    for steps in (1, 30, 600):
        r = ais(model, guide, x, num_steps=steps, num_chains=16, hmc_steps=3, step_size=0.3, init="prior")
        spread[steps] = r.log_weights.std(0).max()
        errors[steps] = (r.log_likelihood - exact).abs()
    assert spread[1] > 5 and errors[1].mean() > 0.2  # the prior is genuinely poor
    assert spread[600] < 0.5 * spread[30] < 0.5 * spread[1]
    assert (errors[600] <= 4 * _standard_error(r.log_weights) + 0.02).all(), errors[600]
    assert errors[600].mean() < 0.1


def test_the_step_size_adapts_per_data_point():
    """A model that is not pyrovae's: x_i | z_i ~ N(z_i, s_i^2), z_i ~ N(0, 1), with one noise
    scale a data point, so the posteriors' widths differ 100-fold and each point needs its own
    step size; log p(x_i) = log N(x_i; 0, 1 + s_i^2)."""
    s = torch.tensor([0.01, 1.0, 0.1], dtype=torch.float64)

    def model(x, s):
        with pyro.plate("data", x.shape[0], dim=-1):
            z = pyro.sample("z", dist.Normal(torch.zeros_like(x), 1.0))
            pyro.sample("x", dist.Normal(z, s), obs=x)

    def guide(x, s):
        with pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("z", dist.Normal(x / (1 + s**2), 1.0))

    x = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    torch.manual_seed(1)
    r = ais(model, guide, x, s, num_steps=300, num_chains=16, hmc_steps=5, step_size=0.05)
    assert r.step_size[0] < r.step_size[2] < r.step_size[1] and r.step_size[0] < 0.1 * r.step_size[1], r.step_size
    assert (r.acceptance > 0.4).all(), r.acceptance  # no point's chains stuck at a step size too large
    exact = dist.Normal(0.0, (1 + s**2).sqrt()).log_prob(x)
    assert ((r.log_likelihood - exact).abs() < 5 * _standard_error(r.log_weights) + 0.02).all()


def test_points_per_chunk_splits_the_data_and_each_chunk_is_exact(lg):
    model, guide = lg()
    x = model.sample(5)
    result = ais(model, guide, x, num_steps=3, num_chains=4, hmc_steps=2, points_per_chunk=2)
    assert result.log_weights.shape == (4, 5) and result.step_size.shape == (5,)
    assert torch.allclose(result.log_likelihood, model.log_px(x), atol=1e-9)


def test_log_likelihood_method_ais_is_the_ais_estimate(lg):
    model, guide = lg(perturb=0.3)
    x = model.sample(3)
    torch.manual_seed(5)
    direct = ais(model, guide, x, num_steps=10, num_chains=4, hmc_steps=2)
    torch.manual_seed(5)
    through = pyrovae.log_likelihood(model, guide, x, method="ais", num_steps=10, num_chains=4, hmc_steps=2)
    assert torch.equal(direct.log_likelihood, through)


def test_schedules_run_from_zero_to_one_and_rise():
    for kind in ("sigmoid", "linear"):
        b = beta_schedule(50, kind)
        assert b[0] == 0 and b[-1] == 1 and (b.diff() > 0).all()
    assert torch.allclose(beta_schedule(4, "linear"), torch.tensor([0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64))
    steps = beta_schedule(100, "sigmoid").diff()
    assert steps[0] < steps[50] and steps[-1] < steps[50]  # smaller steps at both ends


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"num_steps": 0}, "num_steps must be an integer >= 1, got 0"),
        ({"num_chains": 0}, "num_chains must be an integer >= 1"),
        ({"hmc_steps": 2.5}, "hmc_steps must be an integer >= 1"),
        ({"step_size": 0.0}, "step_size must be a number > 0, got 0.0"),
        ({"step_size": -1}, "step_size must be a number > 0"),
        ({"step_size": float("nan")}, "step_size must be a number > 0"),
        ({"target_accept": 1.0}, r"target_accept must be in \(0, 1\)"),
        ({"schedule": "cosine"}, "unknown AIS schedule 'cosine'; valid: sigmoid, linear"),
        ({"init": "posterior"}, "unknown initial distribution 'posterior'; valid: guide, prior"),
        ({"points_per_chunk": 0}, "points_per_chunk must be an integer >= 1"),
    ],
)
def test_bad_options_get_one_clear_line(options, message, lg):
    model, guide = lg()
    with pytest.raises(pyrovae.ConfigError, match=message):
        ais(model, guide, model.sample(2), **options)


def test_discrete_latents_are_refused_in_one_line():
    vae = pyrovae.VAE(6, latent="bernoulli", latents=[3], hidden=[])
    x = (torch.rand(2, 6) < 0.5).float()
    with pytest.raises(pyrovae.ModelStructureError, match="latent site 'z1' is discrete.*use method='is'"):
        ais(vae.model, vae.guide, x, num_steps=2)


def test_an_unknown_method_is_refused(lg):
    model, guide = lg()
    with pytest.raises(pyrovae.ConfigError, match="unknown log-likelihood method 'hmc'; valid: is, ais"):
        pyrovae.log_likelihood(model, guide, model.sample(2), method="hmc")
