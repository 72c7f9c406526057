"""Hierarchical latent layers against a two-layer linear-Gaussian model with exact answers.

Model z2 ~ N(0, I), z1 | z2 ~ N(A z2 + a, diag s1^2), x | z1 ~ N(W z1 + b, s^2 I). Then
z1 ~ N(a, C1), C1 = A A^T + diag s1^2, and x ~ N(W a + b, W C1 W^T + s^2 I). The posterior factorizes
bottom-up, p(z1, z2 | x) = p(z1 | x) p(z2 | z1) (z2 is independent of x given z1), and both factors
are linear-Gaussian:

    p(z1 | x) = N(V1 (C1^-1 a + W^T (x - b) / s^2), V1),    V1 = (C1^-1 + W^T W / s^2)^-1,
    p(z2 | z1) = N(V2 A^T diag(s1^-2) (z1 - a), V2),        V2 = (I + A^T diag(s1^-2) A)^-1.

A holds one nonzero per row and column and W has orthogonal columns, so C1, V1 and V2 are diagonal:
the linear guide (hidden=[]) set to them is the exact posterior and every log weight is log p(x).
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch

import pyrovae
from pyrovae import ModelStructureError, estimators, likelihoods
from pyrovae.errors import ConfigError
from pyrovae.evaluation import log_likelihood
from pyrovae.families.hierarchical import HierarchicalGuide, HierarchicalModel

from ..conformance.cases import MIN_K

DT = torch.float64
D, D1, D2 = 4, 3, 2  # x, z1, z2 sizes
N, B = 30, 5  # data set size and batch: subsampled batches are scaled by N / B = 6
S = 0.625  # exact in float32: the fixed scale is stored as a float32 buffer before .double()
S1 = torch.tensor([0.5, 0.8, 0.7], dtype=DT)
A = torch.tensor([[0.0, 1.3], [0.9, 0.0], [0.0, 0.0]], dtype=DT)
a = torch.tensor([0.2, -0.4, 0.3], dtype=DT)


def _set(linear: torch.nn.Linear, weight: torch.Tensor, bias: torch.Tensor) -> None:
    with torch.no_grad():
        linear.weight.copy_(weight)
        linear.bias.copy_(bias)


def _set_gaussian(head, weight: torch.Tensor, bias: torch.Tensor, var: torch.Tensor) -> None:
    """A GaussianHead with loc = weight h + bias and a constant variance ``var``."""
    _set(head.loc, weight, bias)
    _set(head.log_var, torch.zeros_like(head.log_var.weight), var.log())


class LinearGaussian:
    """The exact two-layer pair and its closed forms (see the module docstring)."""

    def __init__(self, perturb: float = 0.0, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(D, D1, generator=g, dtype=DT))
        self.W = q * torch.tensor([0.8, 1.2, 1.5], dtype=DT)  # orthogonal columns
        self.b = 0.5 * torch.randn(D, generator=g, dtype=DT)
        lik = likelihoods.make("gaussian", x_dim=D, scale=S)
        self.model = HierarchicalModel(D, [D1, D2], lik, hidden=[], activation="tanh").double()
        self.guide = HierarchicalGuide(D, [D1, D2], hidden=[], activation="tanh").double()
        _set_gaussian(self.model.conditionals[0].head, A, a, S1**2)
        _set(self.model.decoder[0], self.W, self.b)

        c1 = (A * A).sum(1) + S1**2  # diag of C1
        prec1 = torch.diag(1 / c1) + self.W.T @ self.W / S**2
        v1 = 1 / torch.diagonal(prec1)
        assert torch.allclose(prec1, torch.diag(1 / v1), atol=1e-12)  # diagonal, as built
        m1 = v1[:, None] * self.W.T / S**2
        _set_gaussian(self.guide.layers[0].head, m1, v1 * (a / c1) - m1 @ self.b, v1)
        prec2 = torch.eye(D2, dtype=DT) + A.T @ (A / S1[:, None] ** 2)
        v2 = 1 / torch.diagonal(prec2)
        assert torch.allclose(prec2, torch.diag(1 / v2), atol=1e-12)
        m2 = v2[:, None] * A.T / S1**2
        _set_gaussian(self.guide.layers[1].head, m2, -m2 @ a, v2)
        if perturb:
            with torch.no_grad():
                for p in self.guide.parameters():
                    p.add_(perturb * torch.randn(p.shape, generator=g, dtype=DT))

        self.marginal = dist.MultivariateNormal(self.W @ a + self.b, self.W @ torch.diag(c1) @ self.W.T
                                                + S**2 * torch.eye(D, dtype=DT))  # fmt: skip
        self.x = self.marginal.sample(torch.Size([B]))  # [B, D]

    def log_px(self) -> torch.Tensor:
        return self.marginal.log_prob(self.x)  # [B]


def tol(value: float) -> float:
    return 1e-9 * (1.0 + abs(value))


EXACT_EACH_DRAW = [n for n in estimators.names() if n != "analytic_elbo"]  # analytic: in expectation
PATH_DERIVATIVE = {"stl": {}, "dreg": {}, "rws[dreg]": {"wake_phi": "dreg"}}


@pytest.mark.parametrize("name", EXACT_EACH_DRAW)
@pytest.mark.parametrize("k", [1, 5])
def test_every_bound_is_log_px_at_the_exact_posterior(name, k):
    lg = LinearGaussian()
    exact = lg.log_px()
    est = estimators.make(name, num_particles=max(k, MIN_K.get(name, 1)))  # a baseline, variance, jackknife
    total = exact.sum().item()
    assert est.loss(lg.model, lg.guide, lg.x) == pytest.approx(-total, abs=tol(total))
    assert est.loss(lg.model, lg.guide, lg.x, num_data=N) == pytest.approx(-N / B * total, abs=tol(N / B * total))
    bound = est.bound(lg.model, lg.guide, lg.x, num_data=N)
    assert bound.shape == (B,) and torch.allclose(bound, exact, atol=tol(exact.abs().max().item()))
    dloss = est.differentiable_loss(lg.model, lg.guide, lg.x, num_data=N)
    assert dloss.item() == pytest.approx(-N / B * total, abs=tol(N / B * total))


@pytest.mark.parametrize("case", sorted(PATH_DERIVATIVE))
def test_path_derivative_guide_gradients_vanish_at_the_exact_posterior(case):
    lg = LinearGaussian()
    est = estimators.make(case.split("[")[0], num_particles=4, **PATH_DERIVATIVE[case])
    dloss = est.differentiable_loss(lg.model, lg.guide, lg.x, num_data=N)
    grads = torch.autograd.grad(dloss, list(lg.guide.parameters()))
    assert max(g.abs().max().item() for g in grads) < tol(dloss.item()) * 20


def test_analytic_elbo_is_log_px_in_expectation_at_the_exact_posterior():
    """The closed-form KL term varies with the particles, so its mean over many is checked."""
    lg = LinearGaussian()
    est = estimators.make("analytic_elbo", num_particles=4000)
    w = est.log_weights(lg.model, lg.guide, (lg.x,), {}, for_gradient=False)
    per_particle = w.log_lik - w.kl()  # [K, B]
    mean, se = per_particle.mean(0), per_particle.std(0) / per_particle.shape[0] ** 0.5
    assert ((mean - lg.log_px()).abs() <= 5 * se + 1e-9).all(), (mean - lg.log_px(), se)


def test_log_likelihood_is_exact_over_several_chunks():
    lg = LinearGaussian()
    ll = log_likelihood(lg.model, lg.guide, lg.x, num_samples=20, chunk_size=7)
    exact = lg.log_px()
    assert ll.shape == (B,) and torch.allclose(ll, exact, atol=tol(exact.abs().max().item()))


def _run(est, lg, seed):
    torch.manual_seed(seed)
    loss = est.differentiable_loss(lg.model, lg.guide, lg.x, num_data=N)
    params = list(lg.model.parameters()) + list(lg.guide.parameters())
    return loss.item(), torch.autograd.grad(loss, params)


def test_iwae_with_one_particle_is_the_elbo():
    lg = LinearGaussian(perturb=0.3)
    (li, gi), (le, ge) = (_run(estimators.make(n, num_particles=1), lg, seed=4) for n in ("iwae", "elbo"))
    assert li == pytest.approx(le, rel=1e-12)
    assert all(torch.allclose(u, v, rtol=1e-10, atol=1e-12) for u, v in zip(gi, ge, strict=True))


def test_dreg_has_the_iwae_value_and_model_gradient():
    lg = LinearGaussian(perturb=0.3)
    (ld, gd), (li, gi) = (_run(estimators.make(n, num_particles=5), lg, seed=6) for n in ("dreg", "iwae"))
    assert ld == pytest.approx(li, rel=1e-12)
    n_model = len(list(lg.model.parameters()))
    assert all(torch.allclose(u, v, rtol=1e-10, atol=1e-12) for u, v in zip(gd[:n_model], gi[:n_model], strict=True))
    assert any(not torch.allclose(u, v) for u, v in zip(gd[n_model:], gi[n_model:], strict=True))  # phi differs


def test_one_gaussian_layer_is_the_vae():
    """Latents [d] with the VAE's weights: the same losses and gradients for the same noise."""
    torch.manual_seed(0)
    vae = pyrovae.VAE(x_dim=12, z_dim=3, hidden=[8], activation="relu").double()
    model = HierarchicalModel(12, [3], "bernoulli", hidden=[8], activation="relu").double()
    guide = HierarchicalGuide(12, [3], hidden=[8], activation="relu").double()
    with torch.no_grad():
        for src, dst in ((vae.model, model), (vae.guide, guide)):
            for p, q in zip(src.parameters(), dst.parameters(), strict=True):
                q.copy_(p)
    x = torch.bernoulli(torch.rand(6, 12, generator=torch.Generator().manual_seed(1), dtype=DT))
    for name in ("elbo", "iwae", "dreg"):
        est = estimators.make(name, num_particles=3)
        results = []
        for m, g in ((vae.model, vae.guide), (model, guide)):
            torch.manual_seed(2)
            loss = est.differentiable_loss(m, g, x)
            results.append((loss.item(), torch.autograd.grad(loss, [*m.parameters(), *g.parameters()])))
        (lv, gv), (lh, gh) = results
        assert lv == pytest.approx(lh, rel=1e-12), name
        assert all(torch.allclose(u, v, rtol=1e-10, atol=1e-12) for u, v in zip(gv, gh, strict=True)), name


def _pair(latent: str, latents=(6, 4, 3), hidden=(10,)):
    model = HierarchicalModel(16, latents, "bernoulli", hidden=hidden, activation="tanh", latent=latent)
    guide = HierarchicalGuide(16, latents, hidden=hidden, activation="tanh", latent=latent)
    return model, guide


@pytest.mark.parametrize("latent", ["gaussian", "bernoulli"])
def test_generation_codes_and_shapes(latent):
    model, guide = _pair(latent)
    x = model(batch_size=7)
    assert x.shape == (7, 16) and set(x.unique().tolist()) <= {0.0, 1.0}
    z = model.sample_latents(5)
    assert set(z) == {"z1", "z2", "z3"} and [z[f"z{i}"].shape for i in (1, 2, 3)] == [(5, 6), (5, 4), (5, 3)]
    assert model.decode(z).shape == (5, 16)
    code = guide.code(x)
    assert {k: v.shape for k, v in code.items()} == {"z1": (7, 6), "z2": (7, 4), "z3": (7, 3)}
    if latent == "bernoulli":
        assert all(set(v.unique().tolist()) <= {0.0, 1.0} for v in z.values())
        assert all(((c > 0) & (c < 1)).all() for c in code.values())  # probabilities
        assert any(p is model.top_logits for p in model.parameters())  # the learned top prior
    w = estimators.make("iwae", num_particles=2).log_weights(model, guide, (x,), {}, for_gradient=False)
    assert {k: v.shape for k, v in w.latents.items()} == {"z1": (2, 7, 6), "z2": (2, 7, 4), "z3": (2, 7, 3)}


def test_burda_two_layer_architecture():
    """784-100-100-[100]-50-50-[50] bottom-up; the model mirrors it top-down."""
    model, guide = (cls(784, [100, 50], **kw) for cls, kw in ((HierarchicalModel, {}), (HierarchicalGuide, {})))

    def linears(module):
        return [(m.in_features, m.out_features) for m in module.modules() if isinstance(m, torch.nn.Linear)]

    # a Gaussian head is two linears (mu, log sigma^2)
    assert linears(guide) == [(784, 100), (100, 100), (100, 100), (100, 100),
                              (100, 50), (50, 50), (50, 50), (50, 50)]  # fmt: skip
    assert linears(model) == [(50, 50), (50, 50), (50, 100), (50, 100), (100, 100), (100, 100), (100, 784)]
    linear = HierarchicalGuide(20, [8, 4], hidden=[], latent="bernoulli")
    assert linears(linear) == [(20, 8), (8, 4)]  # the sigmoid belief net: logits = W z + b


@pytest.mark.parametrize("name", ["elbo", "iwae", "rws"])
def test_bernoulli_layers_train_by_score_function(name):
    model, guide = _pair("bernoulli")
    x = torch.bernoulli(torch.rand(8, 16))
    loss = estimators.make(name, num_particles=4).differentiable_loss(model, guide, x, num_data=40)
    assert torch.isfinite(loss)
    params = dict(model.named_parameters(prefix="model")) | dict(guide.named_parameters(prefix="guide"))
    grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    for pname, g in zip(params, grads, strict=True):
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, pname


@pytest.mark.parametrize("name", ["stl", "dreg", "analytic_elbo"])
def test_path_derivatives_refuse_bernoulli_layers(name):
    model, guide = _pair("bernoulli")
    with pytest.raises(ModelStructureError, match="'z1'"):
        estimators.make(name, num_particles=2).differentiable_loss(model, guide, torch.bernoulli(torch.rand(4, 16)))


@pytest.mark.parametrize("latent", ["gaussian", "bernoulli"])
def test_iwae_training_lowers_the_loss(latent):
    torch.manual_seed(0)
    x = torch.bernoulli(torch.rand(20).expand(200, 20))
    model = HierarchicalModel(20, [8, 4], "bernoulli", hidden=[32], activation="tanh", latent=latent)
    guide = HierarchicalGuide(20, [8, 4], hidden=[32], activation="tanh", latent=latent)
    est = estimators.make("iwae", num_particles=5)

    def loss() -> float:
        return sum(est.loss(model, guide, x) for _ in range(4)) / 4

    with pyro.settings.context(module_local_params=True):
        before = loss()
        opt = torch.optim.Adam([*model.parameters(), *guide.parameters()], lr=3e-2)
        for _ in range(30):
            opt.zero_grad()
            est.differentiable_loss(model, guide, x).backward()
            opt.step()
        assert loss() < before - 0.05 * abs(before)
    assert len(pyro.get_param_store().keys()) == 0


def test_bad_configurations_fail_at_once():
    with pytest.raises(ConfigError, match="gaussian, bernoulli"):
        HierarchicalGuide(4, [2], latent="binary")
    with pytest.raises(ConfigError, match="latents"):
        HierarchicalModel(4, [])
    with pytest.raises(ConfigError, match="latent_hidden_layers"):
        HierarchicalModel(4, [2, 1], latent_hidden_layers=-1)
