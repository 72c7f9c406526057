"""Amortization and approximation gaps (Cremer et al. 2018) against known answers."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from models import linear_gaussian

import pyrovae
from pyrovae import ModelStructureError
from pyrovae.diagnostics import LocalGuide, amortization_gaps


def test_zero_gaps_when_the_encoder_is_already_exact(lg):
    model, guide = lg()
    x = model.sample(6)
    gaps = amortization_gaps(model, guide, x, steps=200, elbo_samples=200, num_samples=500)
    assert gaps["amortization_gap"].abs().max() < 1e-3
    assert gaps["approximation_gap"].abs().max() < 1e-3
    assert torch.allclose(gaps["log_likelihood"], model.log_px(x), atol=1e-3)


def test_a_poor_encoder_has_an_amortization_gap_and_the_gaussian_family_none(lg):
    model, guide = lg(perturb=0.3)
    x = model.sample(6)
    gaps = amortization_gaps(model, guide, x, steps=300, elbo_samples=20000, num_samples=2000)
    exact_gap = model.log_px(x) - pyrovae.estimators.make("elbo", num_particles=20000).bound(model, guide, x)
    # refining each point's q recovers the whole gap: the exact posterior is in the family
    # (two Monte Carlo ELBOs of 20000 draws each: a standard error of about 0.015)
    assert torch.allclose(gaps["amortization_gap"], exact_gap, atol=0.06)
    assert gaps["approximation_gap"].abs().max() < 0.01
    assert (gaps["amortization_gap"] > 0.1).all()


def test_pyrovae_s_guide_exposes_its_local_parameters():
    vae = pyrovae.VAE(x_dim=8, z_dim=2, hidden=[8], likelihood="gaussian")
    assert isinstance(vae.guide, LocalGuide)
    x = torch.rand(5, 8)
    gaps = amortization_gaps(vae.model, vae.guide, x, steps=20, elbo_samples=50, num_samples=100)
    assert gaps["amortization_gap"].shape == (5,)
    assert (gaps["amortization_gap"] > -0.05).all()


def test_other_guides_get_a_clear_error():
    model, _ = linear_gaussian()

    def plain_guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(torch.zeros(x.shape[0], 2, dtype=x.dtype), 1.0).to_event(1))

    with pytest.raises(ModelStructureError, match="need a guide that exposes its per-point parameters"):
        amortization_gaps(model, plain_guide, model.sample(2))
