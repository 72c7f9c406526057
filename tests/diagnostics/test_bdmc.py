"""Bidirectional Monte Carlo on simulated data: the exact log p(x) lies between the two runs."""

import pytest
import torch

import pyrovae
from pyrovae.diagnostics import bdmc


def _template(model, n):
    return torch.zeros(n, model.D, dtype=torch.float64)


def test_forward_and_reverse_ais_bracket_the_exact_value(lg):
    """From the prior with few steps the bracket is wide and holds the exact value; with more
    steps it narrows around it. Each side is a bound in expectation (a single noisy point may
    cross), so the check is on the mean over the simulated points."""
    model, guide = lg(perturb=0.3)
    torch.manual_seed(0)
    wide = bdmc(model, guide, 40, _template(model, 40), num_steps=5, num_chains=8, hmc_steps=3, init="prior")
    exact = model.log_px(wide.x)
    assert wide.x.shape == (40, model.D)
    assert wide.lower.mean() < exact.mean() < wide.upper.mean()
    torch.manual_seed(1)
    narrow = bdmc(model, guide, 40, _template(model, 40), num_steps=100, num_chains=8, hmc_steps=3, init="prior")
    exact = model.log_px(narrow.x)
    assert narrow.lower.mean() <= exact.mean() + 0.03 and exact.mean() <= narrow.upper.mean() + 0.03
    assert narrow.gap.mean() < 0.25 * wide.gap.mean()


def test_from_the_exact_posterior_both_bounds_are_exact(lg):
    model, guide = lg()
    result = bdmc(model, guide, 5, _template(model, 5), num_steps=4, num_chains=3, hmc_steps=2)
    exact = model.log_px(result.x)
    for estimate in (result.lower, result.upper, result.importance):
        assert torch.allclose(estimate, exact, atol=1e-9)


def test_importance_sampling_gets_the_forward_runs_number_of_evaluations(lg):
    model, guide = lg(perturb=0.3)
    result = bdmc(model, guide, 3, _template(model, 3), num_steps=6, num_chains=4, hmc_steps=2)
    assert result.is_samples == 4 * (1 + 5 * 2)
    assert set(result.seconds) == {"forward", "reverse", "importance"}
    summary = result.summary()
    assert summary["gap"] == pytest.approx((result.upper - result.lower).mean().item())


def test_bad_arguments_get_one_clear_line(lg):
    model, guide = lg()
    with pytest.raises(pyrovae.ConfigError, match="batch of num_points=5 data points, the data first"):
        bdmc(model, guide, 5, _template(model, 3))
    with pytest.raises(pyrovae.ConfigError, match="num_steps must be an integer >= 1"):
        bdmc(model, guide, 3, _template(model, 3), num_steps=0)
    with pytest.raises(pyrovae.ConfigError, match="num_points must be an integer >= 1"):
        bdmc(model, guide, 0, _template(model, 0))
