"""Gradient SNR against known answers."""

import math

import pytest
import torch

from pyrovae import estimators
from pyrovae.diagnostics import gradient_snr, loglog_slope, snr_from_draws


def blocks(draws, g):
    """[R, n] draws -> block sums and sums of squares, g blocks."""
    d = draws.double().reshape(g, -1, draws.shape[-1])
    return d.sum(1), (d * d).sum(1), d.shape[1]


def test_gaussian_draws_give_mean_over_sd():
    gen = torch.Generator().manual_seed(0)
    mu, sd = torch.tensor([1.0, -2.0, 0.5, 3.0]), torch.tensor([1.0, 4.0, 0.25, 1.5])
    draws = mu + sd * torch.randn(4000, 4, generator=gen, dtype=torch.float64)
    s = snr_from_draws(*blocks(draws, 40))
    truth = (mu.abs() / sd).mean().item()  # (1 + 0.5 + 2 + 2) / 4
    assert s.interval[0] < truth < s.interval[1]
    assert s.mean_snr == pytest.approx(truth, rel=0.05)
    assert s.total_variance == pytest.approx((sd**2).sum().item(), rel=0.08)
    assert (s.num_scalars, s.num_zero, s.num_infinite, s.num_draws) == (4, 0, 0, 4000)


def test_a_constant_gradient_has_infinite_snr_and_no_variance():
    draws = torch.tensor([[0.3, -1.0, 2.0]]).repeat(100, 1)
    s = snr_from_draws(*blocks(draws, 10))
    assert s.mean_snr == math.inf and s.num_infinite == 3 and s.total_variance == 0.0


def test_zero_gradients_are_left_out_and_counted():
    gen = torch.Generator().manual_seed(1)
    draws = torch.cat([torch.zeros(200, 2), 2.0 + torch.randn(200, 1, generator=gen)], dim=1)
    s = snr_from_draws(*blocks(draws, 20), zero_tol=1e-12)
    assert s.num_zero == 2 and s.mean_snr == pytest.approx(2.0, rel=0.15)


def test_iwae_encoder_snr_falls_with_k_and_the_decoder_s_rises(lg):
    model, guide = lg(perturb=0.3)
    x = model.sample(8)
    groups = {"encoder": list(guide.parameters()), "decoder": list(model.parameters())}
    ks, enc, dec = (1, 8, 64), [], []
    for k in ks:
        s = gradient_snr(estimators.make("iwae", num_particles=k), model, guide, x, groups=groups,
                         num_draws=300, num_blocks=20, bootstrap=50)  # fmt: skip
        enc.append(s["encoder"].mean_snr)
        dec.append(s["decoder"].mean_snr)
    assert loglog_slope(ks, enc) < -0.2 and loglog_slope(ks, dec) > 0.2


def test_stl_guide_gradient_at_the_posterior_counts_as_zero(lg):
    model, guide = lg()
    groups = {"encoder": list(guide.parameters()), "decoder": list(model.parameters())}
    s = gradient_snr(estimators.make("stl", num_particles=2), model, guide, model.sample(4),
                     groups=groups, num_draws=20, num_blocks=4, bootstrap=10)  # fmt: skip
    assert s["encoder"].num_zero == s["encoder"].num_scalars
    assert s["decoder"].num_zero == 0 and s["decoder"].mean_snr > 0


def test_loglog_slope_of_a_power_law():
    assert loglog_slope([1, 2, 4, 8], [3 * k**-0.5 for k in (1, 2, 4, 8)]) == pytest.approx(-0.5)


def test_the_batch_stays_fixed_under_a_plate_that_draws_its_subsample():
    import dataclasses

    from ..conformance.cases import build
    from ..estimators.test_subsample import CHAIN

    pair = build(dataclasses.replace(CHAIN, plate="size"), seed=0, perturb=0.3)
    groups = {"model": list(pair.model.parameters()), "guide": list(pair.guide.parameters())}
    gradient_snr(estimators.make("dreg", num_particles=3), pair.model, pair.guide, *pair.args, groups=groups,
                 num_draws=20, num_blocks=4, bootstrap=10)  # fmt: skip
    seen = pair.model.seen + pair.guide.seen
    assert len(seen) >= 40 and all(torch.equal(s, seen[0]) for s in seen)
