"""SUMO as an evaluator: log_likelihood(method="sumo") is unbiased for log p(x) (Luo et al. 2020),
where IS at the same m stays below, in chunks of two particles (the running sums across chunks)."""

import math

import pytest
import torch

import pyrovae
from pyrovae import ConfigError, estimators
from pyrovae.evaluation.sumo import expected_draws
from pyrovae.testing import LinearGaussian


def test_one_pass_gives_the_estimator_s_number_on_the_same_draw():
    p = LinearGaussian().perturb()
    torch.manual_seed(3)
    ll = pyrovae.log_likelihood(p.model, p.guide, p.x, method="sumo", num_samples=3, chunk_size=1000)
    torch.manual_seed(3)
    assert torch.allclose(ll, estimators.make("sumo", num_particles=3).bound(p.model, p.guide, p.x), rtol=1e-12)


def test_exact_at_the_posterior():
    p = LinearGaussian()
    ll = pyrovae.log_likelihood(p.model, p.guide, p.x, method="sumo", num_samples=2, chunk_size=3)
    assert torch.allclose(ll, p.model.log_px(p.x), atol=1e-10)


def test_unbiased_where_importance_sampling_is_not():
    p = LinearGaussian().perturb()
    n, calls = 400, 400
    x = p.x.repeat(10, 1)  # ten estimates of each point a call, sharing its roulette count
    exact = p.model.log_px(p.x)
    torch.manual_seed(0)
    sumo = torch.stack(
        [pyrovae.log_likelihood(p.model, p.guide, x, method="sumo", num_samples=2, chunk_size=2) for _ in range(calls)]
    )
    sumo = sumo.reshape(calls, 10, -1).mean(1)  # [calls, points]: the calls are independent
    is_ = pyrovae.log_likelihood(p.model, p.guide, p.x.repeat(n, 1), num_samples=2).reshape(n, -1)
    z_sumo = (sumo.mean(0) - exact) / (sumo.std(0) / math.sqrt(calls))
    z_is = (is_.mean(0) - exact) / (is_.std(0) / math.sqrt(n))
    assert (z_sumo.abs() < 5).all(), z_sumo
    assert (z_is < -5).all(), z_is


def test_bad_options_are_one_line_and_the_cost_is_stated():
    p = LinearGaussian()
    with pytest.raises(ConfigError, match="cutoff must be an integer >= 1 and decay in"):
        pyrovae.log_likelihood(p.model, p.guide, p.x, method="sumo", num_samples=2, decay=1.5)
    with pytest.raises(ConfigError, match="valid: is, ais, sumo"):
        pyrovae.log_likelihood(p.model, p.guide, p.x, method="sumu")
    assert expected_draws(1) == pytest.approx(1 + sum(1 / k for k in range(1, 81)) + 0.9 / (80 * 0.1))
