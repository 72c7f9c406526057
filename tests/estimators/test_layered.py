"""The fast path for several latent sites (estimators/layered.py) computes what tracing computes."""

import pytest
import torch
from models import takes_fast_path

from pyrovae import VAE, estimators
from pyrovae.estimators import fast_path
from pyrovae.estimators.layered import LayeredLogWeights
from pyrovae.evaluation import evaluate_model, log_likelihood
from pyrovae.families import HierarchicalModel

FAMILIES = {
    "gaussian 2 layers": {"latents": [6, 4], "hidden": [8]},
    "gaussian 3 layers": {"latents": [6, 4, 3], "hidden": [8], "activation": "tanh"},
    "iaf below a layer": {"latents": [6, 4], "hidden": [8], "guide": "iaf", "flow_hidden": [12]},
    "bernoulli 2 layers": {"latents": [6, 4], "hidden": [8], "latent": "bernoulli"},
    "bernoulli sbn": {"latents": [5], "hidden": [], "latent": "bernoulli"},
}
# every estimator configuration with what changes its computation
CASES = [("elbo", {}), ("elbo", {"kl_weight": 0.5}), ("analytic_elbo", {}), ("iwae", {}), ("stl", {}),
         ("stl", {"iwae": True}), ("dreg", {}), ("dreg", {"kl_weight": 0.5}), ("rws", {}),
         ("rws", {"wake_phi": "dreg", "sleep_phi": True}), ("rws", {"wake_phi": "none", "sleep_phi": True}),
         ("renyi", {"alpha": 0.5}), ("miwae", {"num_groups": 2}), ("piwae", {"num_groups": 2}),
         ("ciwae", {"beta": 0.3}), ("vimco", {})]  # fmt: skip
N = 20


def pair(family):
    torch.manual_seed(0)
    vae = VAE(30, **FAMILIES[family]).double()
    x = (torch.rand(6, 30, dtype=torch.float64) > 0.5).double()
    return vae, x


def run(vae, x, name, options, fast):
    est = estimators.make(name, num_particles=3, fast_path=fast, **options)
    torch.manual_seed(3)
    loss = est.differentiable_loss(vae.model, vae.guide, x, num_data=N)
    grads = torch.autograd.grad(loss, list(vae.parameters()), allow_unused=True)
    torch.manual_seed(4)
    bound = est.bound(vae.model, vae.guide, x, num_data=N)
    return loss.item(), grads, bound


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"{n}{o or ''}" for n, o in CASES])
def test_same_losses_gradients_and_bounds_as_tracing(family, case):
    name, options = CASES[case]
    vae, x = pair(family)
    reparam = FAMILIES[family].get("latent", "gaussian") == "gaussian"
    probe = estimators.make(name, num_particles=3, **options)
    assert takes_fast_path(probe, vae.model, vae.guide, (x,), {"num_data": N})
    if not reparam and not getattr(probe, "supports_score_function", False):
        with pytest.raises(Exception, match="reparameterized"):
            run(vae, x, name, options, True)
        return
    (lf, gf, bf), (lt, gt, bt) = run(vae, x, name, options, True), run(vae, x, name, options, False)
    assert lf == pytest.approx(lt, rel=1e-12, abs=1e-10)
    assert torch.allclose(bf, bt, rtol=1e-12, atol=1e-10)
    for a, b in zip(gf, gt, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, rtol=1e-9, atol=1e-10)
    assert any(g is not None and g.abs().sum() > 0 for g in gf)


@pytest.mark.parametrize("family", FAMILIES)
def test_kl_log_likelihood_and_evaluation_as_tracing(family):
    vae, x = pair(family)
    assert fast_path(vae.model, vae.guide, (x,), {}) is not None
    draws = []
    for fast in (True, False):
        torch.manual_seed(5)
        draws.append(estimators.draw(vae.model, vae.guide, (x,), {}, num_particles=4, fast=fast,
                                     max_plate_nesting=1))  # fmt: skip
    fast_w, traced_w = draws
    assert isinstance(fast_w, LayeredLogWeights) and not isinstance(traced_w, LayeredLogWeights)
    assert torch.allclose(fast_w.kl(), traced_w.kl(), rtol=1e-12, atol=1e-10)
    assert torch.allclose(fast_w.log_w(), traced_w.log_w(), rtol=1e-12, atol=1e-10)
    torch.manual_seed(6)
    fast_ll = log_likelihood(vae.model, vae.guide, x, num_samples=40, chunk_size=15)
    torch.manual_seed(6)
    traced_ll = log_likelihood(vae.model, vae.guide, x, num_samples=40, chunk_size=15, max_plate_nesting=1)
    assert torch.allclose(fast_ll, traced_ll, rtol=1e-12)
    torch.manual_seed(7)
    ev = evaluate_model(vae.model, vae.guide, [x], num_particles=3, num_samples=30, chunk_size=10)
    assert all(torch.isfinite(torch.tensor(float(v))) for k, v in ev.items() if isinstance(v, float))


def test_the_top_layer_kl_is_closed_form_and_the_others_monte_carlo():
    vae, x = pair("gaussian 2 layers")
    torch.manual_seed(1)
    w = estimators.draw(vae.model, vae.guide, (x,), {}, num_particles=4)
    q2, p2 = w.q["z2"], w.p["z2"]  # q(z2 | z1) at the sampled z1; p(z2) = N(0, I)
    closed = torch.distributions.kl_divergence(q2, p2)  # [K, B]
    expected = closed + w.site_log_q["z1"] - w.site_log_p["z1"]
    assert torch.allclose(w.kl(), expected, rtol=1e-12)


def test_a_subclass_with_its_own_forward_is_traced():
    class Scaled(HierarchicalModel):
        def forward(self, *args, **kwargs):  # samples something else: the layered methods no longer say what
            return super().forward(*args, **kwargs)

    vae, x = pair("gaussian 2 layers")
    model = Scaled(30, [6, 4], hidden=[8]).double()
    assert fast_path(model, vae.guide, (x,), {}) is None
    assert fast_path(vae.model, vae.guide, (x,), {}) is not None
