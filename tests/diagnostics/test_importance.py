"""PSIS k-hat and importance ESS against known answers."""

import numpy as np
import pytest
import torch

from pyrovae import ConfigError
from pyrovae.diagnostics import importance_diagnostics, importance_ess, pareto_khat
from pyrovae.diagnostics.arviz_compat import psislw


def test_khat_is_low_for_light_tails_and_high_for_heavy_tails():
    rng = np.random.default_rng(0)
    light = rng.normal(0, 0.3, (2000, 20))  # [K, B] log weights of a near-perfect proposal
    # log weights whose weights are Pareto(alpha = 1.25) tailed: k = 1 / alpha = 0.8
    heavy = np.log(rng.pareto(1.25, (2000, 20)) + 1.0)
    k_light, k_heavy = pareto_khat(light), pareto_khat(heavy)
    assert (k_light < 0.5).all()
    assert np.median(k_heavy) == pytest.approx(0.8, abs=0.15)
    assert (k_heavy > 0.5).mean() >= 0.8  # k-hat from 2000 draws scatters by about 0.15


def test_all_equal_weights_get_a_perfect_score_without_a_fit():
    lw = np.full((500, 3), -4.2)
    assert (pareto_khat(lw) == -np.inf).all()
    assert torch.allclose(importance_ess(torch.full((500, 3), -4.2)), torch.ones(3))


def test_too_few_samples_is_refused():
    with pytest.raises(ConfigError, match="needs K >= 100"):
        pareto_khat(np.zeros((20, 2)))


def test_ess_of_known_weights():
    w = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]) + 1e-30  # [K=4, B=2]
    ess = importance_ess(w.log())
    assert ess.tolist() == pytest.approx([1.0, 0.25])


def test_the_guide_s_tails_show_in_khat_and_ess(lg):
    x = lg()[0].sample(6)
    wide = importance_diagnostics(*lg(perturb=0.2, widen=0.4), x, num_samples=2000)
    narrow = importance_diagnostics(*lg(perturb=0.2, widen=-0.8), x, num_samples=2000)
    exact = importance_diagnostics(*lg(), x, num_samples=200)
    assert (wide["khat"] < 0.5).all() and (narrow["khat"] > 0.5).mean() >= 0.5
    assert wide["ess"].min() > 0.3 > narrow["ess"].max()
    assert (exact["khat"] == -np.inf).all() and np.allclose(exact["ess"], 1.0)


def test_the_arviz_adapter_returns_normalized_smoothed_weights():
    lw = np.random.default_rng(1).normal(0, 1, (4, 1000))
    smoothed, khat = psislw(lw)
    assert smoothed.shape == (4, 1000) and khat.shape == (4,)
    assert np.allclose(np.log(np.exp(smoothed).sum(-1)), 0.0, atol=1e-8)
