"""The importance-sampled log-likelihood against the exact log p(x) of a linear-Gaussian model."""

import importlib

import pytest
import torch

import pyrovae
from pyrovae.evaluation import active_units


def test_exact_at_the_posterior_for_any_chunking(lg):
    model, guide = lg()
    x = model.sample(5)
    for chunk in (1, 7, 100):
        ll = pyrovae.log_likelihood(model, guide, x, num_samples=100, chunk_size=chunk)
        assert torch.allclose(ll, model.log_px(x), atol=1e-10)


# A mismatched guide that is wider than the posterior, so the weights are bounded and K = 5000
# is enough; a too-narrow guide gives heavy-tailed weights (see the PSIS diagnostics).
def test_within_005_nats_at_k5000_under_a_mismatched_guide(lg):
    model, guide = lg(perturb=0.2, widen=0.4)
    x = model.sample(8)
    exact = model.log_px(x)
    elbo = pyrovae.estimators.make("elbo", num_particles=2000).bound(model, guide, x)
    assert (exact - elbo).min() > 0.1  # the guide is genuinely off
    ll = pyrovae.log_likelihood(model, guide, x, num_samples=5000)
    assert ll.shape == (8,)
    assert (ll - exact).abs().max() < 0.05


def test_does_not_change_with_the_chunk_size(lg):
    model, guide = lg(perturb=0.2, widen=0.4)
    x = model.sample(8)
    exact = model.log_px(x)
    estimates = [pyrovae.log_likelihood(model, guide, x, num_samples=5000, chunk_size=c) for c in (5000, 613, 50)]
    for e in estimates:
        assert (e - exact).abs().max() < 0.05
    for e in estimates[1:]:
        assert (e - estimates[0]).abs().max() < 0.05


def test_running_logsumexp_matches_one_pass_on_the_same_particles(lg):
    """Chunks see the same particles when the RNG is replayed chunk by chunk."""
    model, guide = lg(perturb=0.25)
    x = model.sample(3)
    est = pyrovae.estimators.make("iwae", num_particles=1, max_plate_nesting=1)
    torch.manual_seed(0)
    lw = torch.cat([est.log_weights(model, guide, (x,), {}, num_particles=1).log_w() for _ in range(12)])
    torch.manual_seed(0)
    ll = pyrovae.log_likelihood(model, guide, x, num_samples=12, chunk_size=1, max_plate_nesting=1)
    assert torch.allclose(ll, torch.logsumexp(lw, 0) - torch.log(torch.tensor(12.0)), atol=1e-12)


def test_bad_sizes_fail_clearly(lg):
    model, guide = lg()
    with pytest.raises(pyrovae.ConfigError, match="num_samples and chunk_size must be >= 1"):
        pyrovae.log_likelihood(model, guide, model.sample(2), num_samples=0)


def test_active_units_counts_dimensions_whose_posterior_mean_varies():
    g = torch.Generator().manual_seed(0)
    means = torch.randn(1000, 5, generator=g) * torch.tensor([1.0, 0.5, 0.05, 0.0, 0.2])
    # variances 1, 0.25, 0.0025, 0, 0.04: three above the 0.01 threshold
    assert active_units(means) == 3


def test_memory_is_bounded_by_the_chunk_not_by_k(monkeypatch, lg):
    """Never more than chunk_size particles are drawn at once, whatever num_samples."""
    module = importlib.import_module("pyrovae.evaluation.log_likelihood")

    sizes = []
    real = module.draw

    def spy(*args, num_particles, **kwargs):
        sizes.append(num_particles)
        return real(*args, num_particles=num_particles, **kwargs)

    monkeypatch.setattr(module, "draw", spy)
    model, guide = lg()
    pyrovae.log_likelihood(model, guide, model.sample(2), num_samples=1000, chunk_size=128)
    assert max(sizes) == 128 and sum(sizes) == 1000 and sizes[-1] == 1000 - 7 * 128
