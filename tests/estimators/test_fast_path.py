"""The fast path (pyrovae's VAE without tracing) computes what the traced path computes."""

import pyro
import pyro.poutine as poutine
import pytest
import torch

import pyrovae
from pyrovae import estimators
from pyrovae.estimators import direct

from .test_linear_gaussian import CASES

LIKELIHOODS = {
    "bernoulli": ({}, lambda g: torch.bernoulli(torch.rand(6, 16, generator=g, dtype=torch.float64))),
    "gaussian[decoder]": ({"scale": "decoder"}, lambda g: torch.rand(6, 16, generator=g, dtype=torch.float64)),
    "discretized_logistic": ({}, lambda g: torch.randint(0, 256, (6, 16), generator=g).double()),
}


def vae_and_data(likelihood, architecture="mlp"):
    options, data = LIKELIHOODS[likelihood]
    torch.manual_seed(0)
    vae = pyrovae.VAE(x_dim=16, z_dim=3, hidden=[8], likelihood=likelihood.split("[")[0], likelihood_options=options,
                      architecture=architecture, image_shape=(1, 4, 4)).double()  # fmt: skip
    return vae, data(torch.Generator().manual_seed(1))


def run(est, vae, x, seed=3):
    torch.manual_seed(seed)
    loss = est.differentiable_loss(vae.model, vae.guide, x, num_data=40)
    return loss.item(), torch.autograd.grad(loss, list(vae.parameters()))


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("likelihood", sorted(LIKELIHOODS))
def test_same_losses_and_gradients_for_the_same_noise(case, likelihood):
    name, options, _ = CASES[case]
    vae, x = vae_and_data(likelihood)
    fast = estimators.make(name, num_particles=4, fast_path=True, **options)
    traced = estimators.make(name, num_particles=4, fast_path=False, **options)
    assert fast.uses_fast_path(vae.model, vae.guide, (x,), {"num_data": 40})
    assert not traced.uses_fast_path(vae.model, vae.guide, (x,), {"num_data": 40})
    (lf, gf), (lt, gt) = run(fast, vae, x), run(traced, vae, x)
    assert lf == pytest.approx(lt, rel=1e-12)
    for a, b in zip(gf, gt, strict=True):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["elbo", "dreg", "piwae"])
def test_conv_nets_and_kl_weight_too(name):
    vae, x = vae_and_data("gaussian[decoder]", "conv")
    options = {"kl_weight": 0.3, **({"num_groups": 2} if name == "piwae" else {})}
    (lf, gf), (lt, gt) = (run(estimators.make(name, num_particles=3, fast_path=f, **options), vae, x)
                          for f in (True, False))  # fmt: skip
    assert lf == pytest.approx(lt, rel=1e-12)
    assert all(torch.allclose(a, b, rtol=1e-9, atol=1e-12) for a, b in zip(gf, gt, strict=True))


def test_log_likelihood_and_bounds_agree():
    vae, x = vae_and_data("bernoulli")
    torch.manual_seed(0)
    fast = pyrovae.log_likelihood(vae.model, vae.guide, x, num_samples=300, chunk_size=70)
    torch.manual_seed(0)
    traced = pyrovae.log_likelihood(lambda *a, **k: vae.model(*a, **k), lambda *a, **k: vae.guide(*a, **k), x,
                                    num_samples=300, chunk_size=70)  # fmt: skip
    assert torch.allclose(fast, traced, rtol=1e-12)


def test_handlers_switch_the_fast_path_off_but_svi_parameter_capture_does_not():
    vae, x = vae_and_data("bernoulli")
    args, kwargs = (x,), {}
    assert direct.applies(vae.model, vae.guide, args, kwargs)
    with poutine.scale(scale=2.0):
        assert not direct.applies(vae.model, vae.guide, args, kwargs)
    with poutine.trace(param_only=True) as capture:
        assert direct.applies(vae.model, vae.guide, args, kwargs)
        estimators.make("elbo").loss(vae.model, vae.guide, x)
    assert {s["name"] for s in capture.trace.nodes.values() if s["type"] == "param"}  # SVI sees them
    assert not direct.applies(lambda x: vae.model(x), vae.guide, args, kwargs)
    assert not direct.applies(vae.model, vae.guide, (x, 3), kwargs)


def test_svi_on_the_fast_path_trains():
    vae, x = vae_and_data("bernoulli")
    est = estimators.make("iwae", num_particles=3)
    svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 0.05}), loss=est)
    losses = [svi.step(x) for _ in range(40)]
    assert sum(losses[-5:]) < sum(losses[:5])
