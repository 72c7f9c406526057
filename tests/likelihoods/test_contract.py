"""One contract over every registered likelihood: log_prob against an independent reference."""
# Fixed scales are powers of two: a float32 buffer holds them exactly.

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import expit, log_expit

from pyrovae import DataError, likelihoods

D = 6


def _softplus(a):
    return np.logaddexp(0, a)


def _cb_log_norm(lam):
    """log C(lambda) of the continuous Bernoulli, C = 2 atanh(1 - 2 lambda) / (1 - 2 lambda)."""
    return np.log(2 * np.arctanh(1 - 2 * lam) / (1 - 2 * lam))


def _dlogistic(x, loc, scale, n=256):
    """Bin masses from scipy's logistic cdf, the end bins taking the tails."""
    h = 0.5 / (n - 1)
    c = x / (n - 1)
    upper = np.where(x >= n - 1, 1.0, stats.logistic.cdf(c + h, loc, scale))
    lower = np.where(x <= 0, 0.0, stats.logistic.cdf(c - h, loc, scale))
    return np.log(upper - lower)


# name -> (options, data kind sampler, reference log density per dimension from (x, params))
CASES = {
    "bernoulli": ({}, lambda p, x: stats.bernoulli.logpmf(x, expit(p[0]))),
    "continuous_bernoulli": (
        {},
        lambda p, x: x * log_expit(p[0]) + (1 - x) * log_expit(-p[0]) + _cb_log_norm(expit(p[0])),
    ),
    "gaussian": ({"scale": 0.25}, lambda p, x: stats.norm.logpdf(x, p[0], 0.25)),
    "gaussian[decoder]": (
        {"scale": "decoder", "min_scale": 0.01},
        lambda p, x: stats.norm.logpdf(x, p[0], 0.01 + _softplus(p[1] + _inv_sp(0.99))),
    ),
    "laplace": ({"scale": 0.125}, lambda p, x: stats.laplace.logpdf(x, p[0], 0.125)),
    "poisson": ({}, lambda p, x: stats.poisson.logpmf(x, _softplus(p[0]) + 1e-4)),
    "discretized_logistic": ({"scale": 0.0625}, lambda p, x: _dlogistic(x, p[0], 0.0625)),
}


def _inv_sp(y):
    return y + np.log(-np.expm1(-y))


def _data(lik, rng, n):
    if lik.data_kind == "binary":
        return rng.integers(0, 2, (n, D)).astype(float)
    if lik.data_kind == "unit":
        return rng.uniform(0, 1, (n, D))
    return rng.integers(0, 256, (n, D)).astype(float)


def test_every_likelihood_has_a_reference():
    covered = {c.split("[")[0] for c in CASES}
    assert covered == set(likelihoods.names())


@pytest.mark.parametrize("case", sorted(CASES))
def test_log_prob_agrees_with_the_reference(case):
    options, ref = CASES[case]
    lik = likelihoods.make(case.split("[")[0], x_dim=D, **options).double()
    rng = np.random.default_rng(0)
    x = _data(lik, rng, 5)
    params = rng.normal(0, 1.5, (5, lik.num_params * D))
    if lik.data_kind == "counts" and case == "discretized_logistic":
        params[:, :D] = rng.uniform(0, 1, (5, D))  # locations on the [0, 1] scale
    d = lik(torch.tensor(params))
    assert d.batch_shape == (5,) and d.event_shape == (D,)
    got = d.log_prob(torch.tensor(x)).numpy()
    blocks = np.split(params, lik.num_params, axis=-1)
    expected = ref(blocks, x).sum(-1)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", likelihoods.names())
def test_batch_dims_broadcast_for_particles(name):
    lik = likelihoods.make(name, x_dim=D)
    params = torch.randn(7, 3, lik.num_params * D)  # [K, B, P*D]
    assert lik(params).batch_shape == (7, 3)
    assert lik.mean(params).shape == (7, 3, D)


@pytest.mark.parametrize("name", likelihoods.names())
def test_data_outside_the_support_is_refused(name):
    lik = likelihoods.make(name, x_dim=D)
    bad = {"binary": 0.5, "unit": 1.5, "counts": 2.5}[lik.data_kind]
    if name in ("gaussian", "laplace"):
        bad = float("nan")  # every finite real is in their support
    x = torch.zeros(2, D)
    x[1, 3] = bad
    with pytest.raises(DataError, match=name):
        lik.check_data(x)
    lik.check_data(torch.tensor(_data(lik, np.random.default_rng(1), 3), dtype=torch.float32))


def test_discretized_logistic_sums_to_one_over_its_levels():
    lik = likelihoods.make("discretized_logistic", x_dim=1, scale="decoder").double()
    levels = torch.arange(256, dtype=torch.float64).reshape(256, 1, 1)  # [256, B=1, D=1]
    for loc, raw_scale in [(0.5, 0.0), (-0.3, -4.0), (1.4, 2.0), (0.0, -12.0)]:
        params = torch.tensor([[loc, raw_scale]], dtype=torch.float64)  # [B=1, 2 blocks]
        logp = lik(params).log_prob(levels)  # [256, 1]
        assert torch.isfinite(logp).all()
        assert torch.logsumexp(logp, 0).item() == pytest.approx(0.0, abs=1e-10)


def test_discretized_logistic_stays_finite_for_tiny_masses():
    d = likelihoods.make("discretized_logistic", x_dim=1, scale=1e-3)(torch.tensor([[0.0]]))
    assert torch.isfinite(d.log_prob(torch.tensor([[200.0]]))).all()


def test_gaussian_fixed_scale_is_squared_error():
    x, m = torch.rand(4, D), torch.rand(4, D)
    s = 0.4
    lp = likelihoods.make("gaussian", x_dim=D, scale=s)(m).log_prob(x)
    expected = -((x - m) ** 2).sum(-1) / (2 * s**2) - D / 2 * np.log(2 * np.pi * s**2)
    assert torch.allclose(lp, expected, atol=1e-5)


@pytest.mark.parametrize("scale, n_params", [("global", 1), ("per_dim", D), ("decoder", 0)])
def test_learned_scales_are_parameters(scale, n_params):
    lik = likelihoods.make("gaussian", x_dim=D, scale=scale)
    assert sum(p.numel() for p in lik.parameters()) == n_params
    assert lik.num_params == (2 if scale == "decoder" else 1)


def test_bad_options_fail_with_the_valid_choices():
    from pyrovae import ConfigError

    with pytest.raises(ConfigError, match="unknown likelihood 'gausian'; valid likelihoods: bernoulli"):
        likelihoods.make("gausian", x_dim=D)
    with pytest.raises(ConfigError, match="scale must be a positive number or one of global"):
        likelihoods.make("gaussian", x_dim=D, scale="learned")
    with pytest.raises(ConfigError, match="has no option 'sigma'"):
        likelihoods.make("laplace", x_dim=D, sigma=1.0)
