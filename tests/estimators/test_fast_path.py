"""The fast path (pyrovae's VAE without tracing) computes what the traced path computes."""

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
from models import takes_fast_path

import pyrovae
from pyrovae import estimators
from pyrovae.estimators import fast_path
from pyrovae.vae import VAEGuide, VAEModel

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
    assert takes_fast_path(fast, vae.model, vae.guide, (x,), {"num_data": 40})
    assert not takes_fast_path(traced, vae.model, vae.guide, (x,), {"num_data": 40})
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
    assert fast_path(vae.model, vae.guide, args, kwargs) is not None
    with poutine.scale(scale=2.0):
        assert fast_path(vae.model, vae.guide, args, kwargs) is None
    with poutine.trace(param_only=True) as capture:
        assert fast_path(vae.model, vae.guide, args, kwargs) is not None
        estimators.make("elbo").loss(vae.model, vae.guide, x)
    seen = {s["name"] for s in capture.trace.nodes.values() if s["type"] == "param"}  # what SVI optimizes
    own = {f"{vae.name}.{part}$$${n}" for part in ("model", "guide") for n, _ in getattr(vae, part).named_parameters()}
    assert seen == own
    assert fast_path(lambda x: vae.model(x), vae.guide, args, kwargs) is None
    assert fast_path(vae.model, vae.guide, (x, 3), kwargs) is None


def test_svi_on_the_fast_path_trains():
    vae, x = vae_and_data("bernoulli")
    est = estimators.make("iwae", num_particles=3)
    svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 0.05}), loss=est)
    losses = [svi.step(x) for _ in range(40)]
    assert sum(losses[-5:]) < sum(losses[:5])


# -- a subclass gets the fast path only for what it samples ---------------------------------------
class WidePrior(VAEModel):
    """Changes only its prior, to N(0, 3^2): the fast path is built from prior(), so it applies."""

    def prior(self, batch_size):
        return dist.Normal(self.prior_loc, 3.0 * self.prior_scale).expand([batch_size, self.z_dim]).to_event(1)


class OwnForward(VAEModel):
    """Samples the same sites with its own forward (here a wider prior written out): the inherited
    direct computation does not know it, so it is traced."""

    def forward(self, x=None, num_data=None, batch_size=None):
        with pyro.plate("data", x.shape[0]):
            prior = dist.Normal(self.prior_loc, 3.0 * self.prior_scale).expand([x.shape[0], self.z_dim])
            z = pyro.sample("z", prior.to_event(1))
            return pyro.sample("x", self.likelihood(self.decoder(z)), obs=x)


class OwnForwardAndDirect(OwnForward):
    """Says how to compute what its forward samples: log_prob_terms, and prior() for the KL."""

    prior = WidePrior.prior

    def log_prob_terms(self, x, z):
        lik = self.likelihood(self.decoder(z)).log_prob(x)
        return lik, dist.Normal(self.prior_loc, 3.0 * self.prior_scale).log_prob(z).sum(-1)


class GuideOwnForward(VAEGuide):
    def forward(self, x, num_data=None, batch_size=None):
        with pyro.plate("data", x.shape[0]):
            return pyro.sample("z", self.distribution(x))


def losses(model, guide, x, name="elbo"):
    """The loss on the fast path (where it applies), traced, and through a plain function (which
    only tracing can run), for the same noise."""
    out = {}
    for key, fn_model, fast in (("default", model, True), ("traced", model, False),
                                ("plain", lambda *a, **k: model(*a, **k), True)):  # fmt: skip
        torch.manual_seed(4)
        out[key] = estimators.make(name, num_particles=4, fast_path=fast).loss(fn_model, guide, x)
    return out


def test_a_subclass_that_changes_only_its_prior_gets_the_traced_result():
    vae, x = vae_and_data("bernoulli")
    model = WidePrior(vae.model.decoder, vae.likelihood, vae.z_dim, vae.model.pyro_name)
    assert fast_path(model, vae.guide, (x,), {}) is not None
    got = losses(model, vae.guide, x)
    assert got["default"] == pytest.approx(got["traced"], rel=1e-12)
    assert got["default"] == pytest.approx(got["plain"], rel=1e-12)
    assert got["default"] != pytest.approx(losses(vae.model, vae.guide, x)["default"], rel=1e-3)  # N(0, 9) matters


@pytest.mark.parametrize("cls, fast", [(OwnForward, False), (OwnForwardAndDirect, True)])
def test_a_subclass_that_overrides_forward_is_traced_unless_it_computes_directly_too(cls, fast):
    vae, x = vae_and_data("bernoulli")
    model = cls(vae.model.decoder, vae.likelihood, vae.z_dim, vae.model.pyro_name)
    assert (fast_path(model, vae.guide, (x,), {}) is not None) is fast
    got = losses(model, vae.guide, x)
    assert got["default"] == pytest.approx(got["plain"], rel=1e-12)
    assert got["traced"] == pytest.approx(got["plain"], rel=1e-12)
    # the same model as WidePrior, which takes the fast path: tracing one equals the other
    wide = WidePrior(vae.model.decoder, vae.likelihood, vae.z_dim, vae.model.pyro_name)
    assert got["default"] == pytest.approx(losses(wide, vae.guide, x)["default"], rel=1e-12)


def test_the_traced_test_vae_is_traced_everywhere():
    """The `lg` fixture's "vae-traced" variant: subclasses with their own forward."""
    from models import linear_gaussian_vae

    for traced in (False, True):
        model, guide = linear_gaussian_vae(traced=traced)
        assert (fast_path(model, guide, (model.sample(2),), {}) is not None) is not traced


def test_a_guide_that_overrides_forward_is_traced():
    vae, x = vae_and_data("bernoulli")
    guide = GuideOwnForward(vae.guide.encoder, vae.guide.pyro_name)
    assert fast_path(vae.model, guide, (x,), {}) is None
    got = losses(vae.model, guide, x)
    assert got["default"] == pytest.approx(got["traced"], rel=1e-12)


def test_an_instance_whose_forward_was_replaced_is_traced():
    vae, x = vae_and_data("bernoulli")
    model = WidePrior(vae.model.decoder, vae.likelihood, vae.z_dim, vae.model.pyro_name)
    assert fast_path(model, vae.guide, (x,), {}) is not None
    model.forward = OwnForward.forward.__get__(model)
    assert fast_path(model, vae.guide, (x,), {}) is None
