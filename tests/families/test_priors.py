"""Learned priors (VampPrior, mixture of Gaussians) against exact identities and closed forms."""

import copy
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from models import takes_fast_path
from torch import nn

from pyrovae import estimators, likelihoods
from pyrovae.families.mixture import MixturePriorModel
from pyrovae.families.vamp import VampPriorModel
from pyrovae.networks import MLPDecoder, MLPEncoder
from pyrovae.vae import VAEGuide, VAEModel

from ..estimators.test_linear_gaussian import CASES

X_DIM, Z_DIM = 12, 3
SLEEP = {c for c, (_, options, _) in CASES.items() if options.get("sleep_phi")}  # dreams from the prior


def parts(seed=0):
    """A decoder, a Bernoulli likelihood and a guide, float64."""
    torch.manual_seed(seed)
    guide = VAEGuide(MLPEncoder(X_DIM, Z_DIM, (8,)), "guide").double()
    decoder = MLPDecoder(Z_DIM, X_DIM, (8,)).double()
    return decoder, likelihoods.make("bernoulli", x_dim=X_DIM), guide


def binary(b, seed=1):
    return torch.bernoulli(
        torch.full((b, X_DIM), 0.4, dtype=torch.float64), generator=torch.Generator().manual_seed(seed)
    )


def vamp(num_components=4, seed=0, **options):
    decoder, lik, guide = parts(seed)
    model = VampPriorModel(decoder, lik, Z_DIM, "model", guide, X_DIM, num_components, **options).double()
    return model, guide


def mixture(num_components=3, seed=0):
    decoder, lik, guide = parts(seed)
    model = MixturePriorModel(decoder, lik, Z_DIM, "model", num_components).double()
    with torch.no_grad():  # away from the initial values, so nothing holds by accident
        model.logits.normal_()
        model.locs.normal_()
        model.log_scales.normal_(std=0.3)
    return model, guide


MAKERS = {"vamp": vamp, "mixture": mixture}


def params(model, guide):
    return list(nn.ModuleList([model, guide]).parameters())  # each tensor once


def loss(case, model, guide, x, seed=5, fast=None, **kwargs):
    name, options, _ = CASES[case]
    torch.manual_seed(seed)
    return estimators.make(name, num_particles=4, fast_path=fast, **options).loss(model, guide, x, **kwargs)


def loss_and_grads(case, model, guide, x, wrt, seed=5, fast=None):
    name, options, _ = CASES[case]
    est = estimators.make(name, num_particles=4, fast_path=fast, **options)
    torch.manual_seed(seed)
    value = est.differentiable_loss(model, guide, x, num_data=40)
    return value.item(), torch.autograd.grad(value, wrt, allow_unused=True)


def same_grads(a, b):
    return all(
        (u is None and v is None) or torch.allclose(u, v, rtol=1e-9, atol=1e-12) for u, v in zip(a, b, strict=True)
    )


# -- 1. a VampPrior with one pseudo-input x is the Gaussian q(z | x) -------------------------------
class EncoderGaussianPrior(VAEModel):
    """p(z) = N(mu(x0), diag sigma(x0)^2), the guide's encoder at a fixed point x0."""

    def __init__(self, decoder, likelihood, z_dim, name, guide, x0):
        super().__init__(decoder, likelihood, z_dim, name)
        object.__setattr__(self, "guide", guide)
        self.register_buffer("x0", x0)

    def prior(self, batch_size):
        loc, scale = self.guide.encoder(self.x0)  # [1, z_dim]
        return dist.Normal(loc, scale).expand([batch_size, self.z_dim]).to_event(1)


def one_point_pair():
    x = binary(1)
    model, guide = vamp(num_components=1, init=x)
    gaussian = EncoderGaussianPrior(model.decoder, model.likelihood, Z_DIM, "gaussian", guide, x).double()
    return x, model, gaussian, guide


def test_one_pseudo_input_is_the_guide_at_that_point():
    x, model, _, guide = one_point_pair()
    z = torch.randn(5, 1, Z_DIM, dtype=torch.float64) * 3  # [K, B, z_dim], anywhere
    expected = guide.distribution(x).log_prob(z)
    got = model.prior(1).log_prob(z)
    assert got.shape == (5, 1)
    assert torch.allclose(got, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("case", sorted(CASES))
def test_one_pseudo_input_gives_the_gaussian_prior_losses(case):
    x, model, gaussian, guide = one_point_pair()
    # the Gaussian's KL is closed form, the mixture's Monte Carlo: analytic_elbo on the VampPrior is the elbo
    reference = "elbo" if case == "analytic_elbo" else case
    assert loss(case, model, guide, x) == pytest.approx(loss(reference, gaussian, guide, x), rel=1e-12)
    if case not in SLEEP:  # a dream draws from each prior with its own random numbers
        shared = [*model.decoder.parameters(), *guide.parameters()]
        lv, gv = loss_and_grads(case, model, guide, x, shared)
        lg, gg = loss_and_grads(reference, gaussian, guide, x, shared)
        assert lv == pytest.approx(lg, rel=1e-12)
        assert same_grads(gv, gg)


# -- 2. a mixture of C copies of N(0, I) is the standard VAE --------------------------------------
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_mixture_of_standard_normals_is_the_standard_vae(case):
    model, guide = mixture(num_components=3)
    with torch.no_grad():
        model.locs.zero_()
        model.log_scales.zero_()  # the logits stay random: equal components make the weights irrelevant
    standard = VAEModel(model.decoder, model.likelihood, Z_DIM, "standard").double()
    x = binary(6)
    reference = "elbo" if case == "analytic_elbo" else case  # N(0, I) has a closed-form KL, the mixture not
    assert loss(case, model, guide, x, num_data=30) == pytest.approx(
        loss(reference, standard, guide, x, num_data=30), rel=1e-12
    )


# -- 3. the densities by hand --------------------------------------------------------------------
def log_normal(z, loc, scale):
    """log N(z; loc, diag scale^2) written out, summed over the last dim."""
    return (-0.5 * ((z - loc) / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)).sum(-1)


def test_mixture_density_is_the_sum_over_components():
    model, guide = mixture(num_components=4)
    z = 2 * torch.randn(6, 5, Z_DIM, dtype=torch.float64)  # [K, B, z_dim]
    weights = torch.softmax(model.logits, 0)
    components = log_normal(z[..., None, :], model.locs, model.log_scales.exp())  # [K, B, C]
    expected = (weights * components.exp()).sum(-1).log()  # [K, B]
    prior = model.prior(5)
    assert prior.batch_shape == (5,) and prior.event_shape == (Z_DIM,)
    assert torch.allclose(prior.log_prob(z), expected, rtol=1e-12, atol=0)
    _, log_prior = model.log_prob_terms(binary(5), z)
    assert torch.allclose(log_prior, expected, rtol=1e-12, atol=0)


def test_vamp_density_is_the_mean_of_the_guide_at_the_pseudo_inputs():
    model, guide = vamp(num_components=4)
    z = torch.randn(6, 5, Z_DIM, dtype=torch.float64)  # [K, B, z_dim]
    loc, scale = guide.encoder(model.pseudo_inputs)  # [C, z_dim]; the init lies inside [0, 1]
    assert ((model.pseudo_inputs > 0) & (model.pseudo_inputs < 1)).all()
    expected = log_normal(z[..., None, :], loc, scale).exp().mean(-1).log()  # [K, B]
    assert torch.allclose(model.prior(5).log_prob(z), expected, rtol=1e-12, atol=0)


def test_pseudo_inputs_are_kept_in_the_data_range():
    model, guide = vamp(num_components=2, init=torch.tensor([[-3.0] * X_DIM, [0.5] * (X_DIM - 1) + [7.0]]))
    assert torch.equal(model.inputs(), model.pseudo_inputs.clamp(0, 1))
    assert (model.pseudo_inputs.min().item(), model.pseudo_inputs.max().item()) == (-3, 7)  # the parameter is free
    unbounded, _ = vamp(num_components=2, bounds=None)
    assert unbounded.inputs() is unbounded.pseudo_inputs


# -- 4. fast path and traced path ----------------------------------------------------------------
@pytest.mark.parametrize("prior", sorted(MAKERS))
@pytest.mark.parametrize("case", sorted(CASES))
def test_fast_path_equals_traced_path(prior, case):
    model, guide = MAKERS[prior]()
    x = binary(6)
    name, options, _ = CASES[case]
    est = estimators.make(name, num_particles=4, fast_path=True, **options)
    assert takes_fast_path(est, model, guide, (x,), {"num_data": 40})
    wrt = params(model, guide)
    (lf, gf), (lt, gt) = (loss_and_grads(case, model, guide, x, wrt, fast=f) for f in (True, False))
    assert lf == pytest.approx(lt, rel=1e-12)
    assert same_grads(gf, gt)


@pytest.mark.parametrize("prior", sorted(MAKERS))
@pytest.mark.parametrize("fast", [True, False])
def test_analytic_elbo_is_the_elbo_for_the_same_draw(prior, fast):
    """No closed-form KL from a Gaussian to a mixture: the documented Monte Carlo fallback."""
    model, guide = MAKERS[prior]()
    x = binary(6)
    assert loss("analytic_elbo", model, guide, x, fast=fast) == pytest.approx(
        loss("elbo", model, guide, x, fast=fast), rel=1e-12
    )
    torch.manual_seed(0)
    w = estimators.draw(model, guide, (x,), {}, num_particles=3, fast=fast)
    assert torch.allclose(w.kl(), w.log_q - w.log_prior, rtol=1e-12, atol=1e-12)


# -- 5. gradients and training -------------------------------------------------------------------
def prior_parameters(model):
    return [model.pseudo_inputs] if isinstance(model, VampPriorModel) else [model.logits, model.locs, model.log_scales]


@pytest.mark.parametrize("prior", sorted(MAKERS))
@pytest.mark.parametrize("case", ["elbo", "iwae"])
def test_gradients_reach_the_prior_parameters(prior, case):
    model, guide = MAKERS[prior]()
    _, grads = loss_and_grads(case, model, guide, binary(6), prior_parameters(model))
    for g in grads:
        assert g is not None and torch.isfinite(g).all() and (g != 0).any()


@pytest.mark.parametrize("case", ["elbo", "iwae"])
def test_the_encoder_gets_the_gradient_of_the_guide_plus_that_of_the_prior(case):
    """With the prior's encoder a separate copy, the copy's gradient is the path through the
    VampPrior alone (nonzero), and the shared encoder's gradient is the sum of both paths."""
    model, guide = vamp()
    x = binary(6)
    copied = copy.deepcopy(guide)
    split = VampPriorModel(model.decoder, model.likelihood, Z_DIM, "split", copied, X_DIM, 4).double()
    with torch.no_grad():
        split.pseudo_inputs.copy_(model.pseudo_inputs)
    encoder, copy_encoder = list(guide.parameters()), list(copied.parameters())
    _, shared = loss_and_grads(case, model, guide, x, encoder)
    _, both = loss_and_grads(case, split, guide, x, encoder + copy_encoder)
    through_guide, through_prior = both[: len(encoder)], both[len(encoder) :]
    assert all((g != 0).any() for g in through_prior)
    assert same_grads(shared, [a + b for a, b in zip(through_guide, through_prior, strict=True)])


@pytest.mark.parametrize("prior", sorted(MAKERS))
def test_torch_adam_with_module_local_params_lowers_the_loss(prior):
    model, guide = MAKERS[prior]()
    x = binary(32)
    est = estimators.make("iwae", num_particles=3)
    with pyro.settings.context(module_local_params=True):
        before = loss("iwae", model, guide, x, seed=11)
        opt = torch.optim.Adam(params(model, guide), lr=0.02)
        for _ in range(40):
            opt.zero_grad()
            est.differentiable_loss(model, guide, x).backward()
            opt.step()
        after = loss("iwae", model, guide, x, seed=11)
    assert after < before - 0.5
    assert not list(pyro.get_param_store().keys())  # nothing went through the global store


@pytest.mark.parametrize("prior", sorted(MAKERS))
def test_svi_holds_each_parameter_once_in_the_param_store(prior):
    model, guide = MAKERS[prior]()
    start = [p.detach().clone() for p in prior_parameters(model)]
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.01}), loss=estimators.make("elbo"))
    for _ in range(3):
        svi.step(binary(6))
    store = dict(pyro.get_param_store().named_parameters())
    ids = [id(t) for t in store.values()]
    assert len(ids) == len(set(ids))  # no tensor under two names
    expected = {f"{m.pyro_name}$$${n}": p for m in (model, guide) for n, p in m.named_parameters()}
    assert set(store) == set(expected)
    assert all(store[n] is p for n, p in expected.items())  # the encoder only under the guide's names
    assert all(not torch.equal(a, b) for a, b in zip(start, prior_parameters(model), strict=True))  # SVI trains them


# -- 6. generation -------------------------------------------------------------------------------
@pytest.mark.parametrize("prior", sorted(MAKERS))
def test_generates_data_and_latents(prior):
    model, _ = MAKERS[prior]()
    x = model(x=None, batch_size=7)
    assert x.shape == (7, X_DIM) and ((x == 0) | (x == 1)).all()
    latents = model.sample_latents(5)
    assert set(latents) == {"z"} and latents["z"].shape == (5, Z_DIM)
    assert model.decode(latents).shape == (5, X_DIM)


def test_mixture_samples_come_from_the_weighted_components():
    model, _ = mixture(num_components=3)
    with torch.no_grad():
        model.logits.copy_(torch.tensor([-60.0, 0.0, -60.0]))
        model.log_scales.fill_(-20.0)
    z = model.sample_latents(50)["z"]
    assert torch.allclose(z, model.locs[1].expand(50, Z_DIM), atol=1e-6)
