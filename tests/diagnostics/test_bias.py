"""The gradient-bias test (diagnostics.gradient_bias): unbiased estimators pass, biased ones show.

On the perturbed linear-Gaussian problem: DReG against IWAE and STL against the ELBO show about
the 0.27% of |z| > 3 that chance gives (here: at most one coordinate of each group); STL on the
IWAE bound (biased, Tucker et al. 2019), RWS-DReG (DReG with alpha = 0: ascends another objective)
and TVO's covariance gradient (self-normalized estimates) show many coordinates biased in the guide.
"""

import math

import pytest
import torch

import pyrovae
from pyrovae import ConfigError, estimators
from pyrovae.diagnostics import gradient_bias
from pyrovae.diagnostics.bias import summarize
from pyrovae.testing import LinearGaussian

DRAWS = 200


def groups(problem):
    return {"encoder": list(problem.guide.parameters()), "decoder": list(problem.model.parameters())}


def measure(name, draws=DRAWS, **options):
    p = LinearGaussian().perturb()
    est = estimators.make(name, num_particles=4, **options)
    return gradient_bias(est, p.model, p.guide, p.x, groups=groups(p), num_draws=draws)


UNBIASED = [
    ("dreg", {}, "iwae K=4"),
    ("stl", {}, "elbo K=4"),
    ("jvi", {"gradient": "dreg"}, "its bound's path derivative"),
]


@pytest.mark.parametrize(("name", "options", "reference"), UNBIASED)
def test_unbiased_estimators_show_no_bias(name, options, reference):
    res = measure(name, **options)
    for group, b in res.items():
        assert b.reference == reference
        assert b.num_draws == DRAWS and b.num_scalars > 0
        assert b.fraction_over * (b.num_scalars - b.num_zero) <= 1, (name, group, b)  # chance: ~0.03 coordinates
        assert b.max_abs_z < 5, (name, group, b)


# (RWS's wake-phi bias is real but small on this problem: max |z| about 3 at 500 draws)
BIASED = [("stl", {"iwae": True}, DRAWS), ("tvo", {}, DRAWS), ("dreg", {"alpha": 0.0}, 600)]


@pytest.mark.parametrize(("name", "options", "draws"), BIASED)
def test_biased_guide_gradients_show(name, options, draws):
    res = measure(name, draws, **options)
    assert res["encoder"].fraction_over > 0.05 and res["encoder"].max_abs_z > 6, res["encoder"]


def test_the_draws_are_paired_and_leave_the_random_stream_alone():
    """The same estimator against itself differs by exactly zero on every paired draw, and the test
    does not move torch's random state (a measurement inside training must not)."""
    p = LinearGaussian().perturb()
    est = estimators.make("iwae", num_particles=3)
    torch.manual_seed(5)
    before = torch.get_rng_state()
    res = gradient_bias(est, p.model, p.guide, p.x, groups=groups(p), reference=est.differentiable_loss, num_draws=5)
    assert torch.equal(before, torch.get_rng_state())
    assert all(b.num_zero == b.num_scalars and b.fraction_over == 0.0 for b in res.values())


def test_summary_counts_a_constant_nonzero_difference_as_biased():
    total = torch.tensor([0.0, 2.0 * 10, 0.1])  # sums over 10 draws: zero, constant 2, noise
    squares = torch.tensor([0.0, 4.0 * 10, 1.0])
    b = summarize(total.double(), squares.double(), 10, "ref", 3.0)
    assert b.num_zero == 1 and b.max_abs_z == math.inf and b.fraction_over == 0.5
    assert b.expected_fraction == pytest.approx(0.0027, abs=1e-4)


def test_an_estimator_without_a_reference_is_one_line():
    p = LinearGaussian().perturb()

    class Odd(estimators.Estimator):
        estimates = "something"

    with pytest.raises(ConfigError, match="no reference gradient for Odd.*valid: 'elbo', 'iwae', 'bound'"):
        gradient_bias(Odd(), p.model, p.guide, p.x, groups=groups(p), num_draws=2)
    with pytest.raises(ConfigError, match="num_draws >= 2"):
        gradient_bias(estimators.make("iwae"), p.model, p.guide, p.x, groups=groups(p), num_draws=1)


def test_a_gradient_equal_up_to_rounding_is_zero_not_a_z_score():
    """DReG's decoder gradient is IWAE's, summed in another order: on a float32 VAE the paired
    differences are rounding (relative size ~1e-7), whose z-scores would flag a share of the decoder
    at random. They count as zero; the encoder, whose gradients differ, is still tested."""
    torch.manual_seed(0)
    vae = pyrovae.VAE(x_dim=20, z_dim=3, hidden=[16])
    x = torch.bernoulli(torch.full((50, 20), 0.3), generator=torch.Generator().manual_seed(0))
    est = estimators.make("dreg", num_particles=4)
    res = gradient_bias(est, vae.model, vae.guide, x, groups={"encoder": list(vae.guide.parameters()),
                        "decoder": list(vae.model.parameters())}, num_draws=30)  # fmt: skip
    dec, enc = res["decoder"], res["encoder"]
    assert dec.num_zero == dec.num_scalars and dec.fraction_over == 0.0, dec
    assert enc.num_zero < enc.num_scalars / 10, enc  # real differences are not taken for rounding
