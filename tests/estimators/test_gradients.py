"""Gradient estimators against each other and against closed forms (Rainforth 2018, Tucker 2019)."""

import numpy as np
import pyro
import pytest
import torch
from models import chain, linear_gaussian

from pyrovae import ModelStructureError, estimators


def params_of(model, guide):
    return list(model.parameters()), list(guide.parameters())


def grads(est, model, guide, x, seed=None, **kwargs):
    """(model grads, guide grads) of the negated differentiable loss, i.e. ascent directions."""
    if seed is not None:
        torch.manual_seed(seed)
    theta, phi = params_of(model, guide)
    g = torch.autograd.grad(-est.differentiable_loss(model, guide, x, **kwargs), theta + phi,
                            allow_unused=True)  # fmt: skip
    g = [torch.zeros_like(p) if gi is None else gi for p, gi in zip(theta + phi, g, strict=True)]
    flat = [torch.cat([t.reshape(-1) for t in part]) for part in (g[: len(theta)], g[len(theta) :])]
    return flat[0], flat[1]


def pick(setup, lg):
    """The one-site linear-Gaussian model (every path) or the two-site chain (plain Pyro only)."""
    if setup == "one-site":
        return lg
    if lg is not linear_gaussian:
        pytest.skip("the two-site chain is a plain Pyro model: the traced path only")
    return chain


def draws(est, model, guide, x, groups=40):
    """``groups`` independent gradient draws, each the mean over many copies of x."""
    out = [torch.cat(grads(est, model, guide, x)) for _ in range(groups)]
    return torch.stack(out)  # [groups, n_params]


# -- zero variance at the exact posterior ---------------------------------------------------------
@pytest.mark.parametrize("setup", ["one-site", "two-site-chain"])
@pytest.mark.parametrize("name, zero", [("stl", True), ("dreg", True), ("elbo", False), ("iwae", False)])
def test_path_estimators_have_zero_variance_guide_gradients_at_the_posterior(setup, name, zero, lg):
    model, guide = pick(setup, lg)()
    x = model.sample(3)
    est = estimators.make(name, num_particles=4)
    phis = torch.stack([grads(est, model, guide, x)[1] for _ in range(20)])
    spread = phis.std(0).max().item()
    if zero:
        assert spread < 1e-9 and phis.abs().max().item() < 1e-9
    else:
        assert spread > 1e-3


def test_stl_mean_guide_gradient_equals_the_elbo_s_and_is_not_zero(lg):
    model, guide = lg(perturb=0.3)
    x = model.sample(2).repeat(500, 1)  # many copies: each draw is already an average
    stl = draws(estimators.make("stl", num_particles=2), model, guide, x)
    elbo = draws(estimators.make("elbo", num_particles=2), model, guide, x)
    n_theta = sum(p.numel() for p in model.parameters())
    diff = stl.mean(0) - elbo.mean(0)
    se = (stl.var(0) / len(stl) + elbo.var(0) / len(elbo)).sqrt()
    assert (diff.abs() < 4 * se + 1e-8).all(), (diff, se)
    phi_mean = stl.mean(0)[n_theta:]
    assert (phi_mean.abs() > 4 * stl.std(0)[n_theta:] / np.sqrt(len(stl))).any()  # not zero


@pytest.mark.parametrize("setup", ["one-site", "two-site-chain"])
def test_dreg_mean_gradients_equal_iwae_s(setup, lg):
    model, guide = pick(setup, lg)(perturb=0.3)
    x = model.sample(2).repeat(400, 1)
    k = 5
    d = draws(estimators.make("dreg", num_particles=k), model, guide, x)
    i = draws(estimators.make("iwae", num_particles=k), model, guide, x)
    diff, se = d.mean(0) - i.mean(0), (d.var(0) / len(d) + i.var(0) / len(i)).sqrt()
    assert (diff.abs() < 4.5 * se + 1e-8).all(), diff / se
    assert d.mean(0).abs().max() > 0.01  # a real gradient, not two zeros


# -- estimators that must agree on the same particles -----------------------------------------
def same_draw(a, b, model, guide, x, seed=5):
    torch.manual_seed(seed)
    la = a.loss(model, guide, x)
    torch.manual_seed(seed)
    lb = b.loss(model, guide, x)
    return la, lb


@pytest.mark.parametrize(
    "a, b",
    [
        (("renyi", {"alpha": 0.0, "num_particles": 6}), ("iwae", {"num_particles": 6})),
        (("renyi", {"alpha": 1.0, "num_particles": 6}), ("elbo", {"num_particles": 6})),
        (("iwae", {"num_particles": 1}), ("elbo", {"num_particles": 1})),
        (("miwae", {"num_groups": 4, "num_particles": 1}), ("elbo", {"num_particles": 4})),
        (("miwae", {"num_groups": 1, "num_particles": 4}), ("iwae", {"num_particles": 4})),
        (("ciwae", {"beta": 1.0, "num_particles": 5}), ("elbo", {"num_particles": 5})),
        (("ciwae", {"beta": 0.0, "num_particles": 5}), ("iwae", {"num_particles": 5})),
        (("piwae", {"num_groups": 2, "num_particles": 3}), ("iwae", {"num_particles": 6})),
        (("dreg", {"num_particles": 5}), ("iwae", {"num_particles": 5})),
        (("stl", {"num_particles": 5}), ("elbo", {"num_particles": 5})),
        (("rws", {"num_particles": 5}), ("iwae", {"num_particles": 5})),
    ],
)
def test_bounds_that_must_agree_do_on_the_same_particles(a, b, lg):
    model, guide = lg(perturb=0.3)
    x = model.sample(5)
    la, lb = same_draw(estimators.make(a[0], **a[1]), estimators.make(b[0], **b[1]), model, guide, x)
    assert la == pytest.approx(lb, rel=1e-12)


@pytest.mark.parametrize("a, b", [("renyi", "iwae"), ("renyi1", "elbo"), ("ciwae1", "elbo"),
                                  ("ciwae0", "iwae"), ("miwae", "elbo")])  # fmt: skip
def test_gradients_that_must_agree_do_on_the_same_particles(a, b, lg):
    make = {
        "renyi": lambda: estimators.make("renyi", alpha=0.0, num_particles=4),
        "renyi1": lambda: estimators.make("renyi", alpha=1.0, num_particles=4),
        "ciwae1": lambda: estimators.make("ciwae", beta=1.0, num_particles=4),
        "ciwae0": lambda: estimators.make("ciwae", beta=0.0, num_particles=4),
        "miwae": lambda: estimators.make("miwae", num_groups=4, num_particles=1),
        "iwae": lambda: estimators.make("iwae", num_particles=4),
        "elbo": lambda: estimators.make("elbo", num_particles=4),
    }
    model, guide = lg(perturb=0.3)
    x = model.sample(5)
    ga, gb = grads(make[a](), model, guide, x, seed=3), grads(make[b](), model, guide, x, seed=3)
    for u, v in zip(ga, gb, strict=True):
        assert torch.allclose(u, v, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("setup", ["one-site", "two-site-chain"])
def test_piwae_trains_the_model_on_iwae_mk_and_the_guide_on_miwae(setup, lg):
    model, guide = pick(setup, lg)(perturb=0.3)
    x = model.sample(4)
    m, k = 3, 2
    theta_p, phi_p = grads(estimators.make("piwae", num_groups=m, num_particles=k), model, guide, x, seed=9)
    theta_i, _ = grads(estimators.make("iwae", num_particles=m * k), model, guide, x, seed=9)
    _, phi_m = grads(estimators.make("miwae", num_groups=m, num_particles=k), model, guide, x, seed=9)
    assert torch.allclose(theta_p, theta_i, rtol=1e-9, atol=1e-12)
    assert torch.allclose(phi_p, phi_m, rtol=1e-9, atol=1e-12)
    assert not torch.allclose(phi_p, grads(estimators.make("iwae", num_particles=m * k), model, guide, x,
                                           seed=9)[1])  # fmt: skip


# -- reweighted wake-sleep ----------------------------------------------------------------------
def test_rws_wake_phi_equals_the_weighted_score_of_q_and_wake_theta_is_iwae_s(lg):
    model, guide = lg(perturb=0.3)
    x = model.sample(4)
    est = estimators.make("rws", num_particles=5)
    theta, phi = grads(est, model, guide, x, seed=2)
    torch.manual_seed(2)
    w = est.log_weights(model, guide, (x,), {}, for_gradient=False)
    z = w.latents["z"].detach()
    wt = w.log_w().softmax(0).detach()
    log_q = guide.distribution(x).log_prob(z)  # [K, B], z fixed: the score of q
    hand_phi = torch.autograd.grad((wt * log_q).sum(), list(guide.parameters()))
    assert torch.allclose(phi, torch.cat([g.reshape(-1) for g in hand_phi]), rtol=1e-9)
    theta_iwae, _ = grads(estimators.make("iwae", num_particles=5), model, guide, x, seed=2)
    assert torch.allclose(theta, theta_iwae, rtol=1e-9)


def test_rws_wake_phi_on_a_chain_guide_is_the_weighted_score_at_stopped_latents():
    """With two dependent guide sites, wake-phi is sum_k w_k grad_phi log q(stop z_k): the second
    site's density sees its parent stopped too (no reparameterized path through z1)."""
    import pyro.distributions as dist

    model, guide = chain(perturb=0.3)
    x = model.sample(4)
    est = estimators.make("rws", num_particles=5)
    _, phi = grads(est, model, guide, x, seed=2)
    torch.manual_seed(2)
    w = est.log_weights(model, guide, (x,), {}, for_gradient=False)
    z1, z2 = w.latents["z1"].detach(), w.latents["z2"].detach()
    wt = w.log_w().softmax(0).detach()
    loc1 = (x @ guide.u1).unsqueeze(-1) + guide.e1
    log_q = dist.Normal(loc1, guide.ls1.exp()).log_prob(z1).sum(-1)
    loc2 = (x @ guide.u2).unsqueeze(-1) + guide.e2 + guide.k * z1
    log_q = log_q + dist.Normal(loc2, guide.ls2.exp()).log_prob(z2).sum(-1)  # [K, B]
    hand = torch.autograd.grad((wt * log_q).sum(), list(guide.parameters()))
    assert torch.allclose(phi, torch.cat([g.reshape(-1) for g in hand]), rtol=1e-9)


def test_rws_dreg_wake_phi_has_the_mean_of_rws_wake_phi_and_reaches_phi_only(lg):
    model, guide = lg(perturb=0.3)
    x = model.sample(2).repeat(400, 1)
    rws = draws(estimators.make("rws", num_particles=4), model, guide, x)
    dreg = draws(estimators.make("rws", num_particles=4, wake_phi="dreg"), model, guide, x)
    diff, se = dreg.mean(0) - rws.mean(0), (dreg.var(0) / len(dreg) + rws.var(0) / len(rws)).sqrt()
    assert (diff.abs() < 4.5 * se + 1e-8).all(), diff / se
    # theta sees wake-theta only: the same as plain RWS on the same particles
    t1, _ = grads(estimators.make("rws", num_particles=4), model, guide, x[:8], seed=1)
    t2, _ = grads(estimators.make("rws", num_particles=4, wake_phi="dreg"), model, guide, x[:8], seed=1)
    assert torch.allclose(t1, t2, rtol=1e-9)


def test_rws_sleep_phi_fits_the_guide_to_the_model(lg):
    model, guide = lg(perturb=0.5)
    for p in model.parameters():
        p.requires_grad_(False)
    est = estimators.make("rws", num_particles=1, wake_phi="none", sleep_phi=True)
    opt = torch.optim.Adam(guide.parameters(), lr=0.02)
    x = model.sample(256)
    for _ in range(400):
        opt.zero_grad()
        est.differentiable_loss(model, guide, x).backward()
        opt.step()
    A, sd = model.posterior()
    assert torch.allclose(guide.log_sd.exp(), sd, rtol=0.1)
    assert torch.allclose(guide.A, A, atol=0.1)


def test_rws_handles_guide_sites_that_cannot_be_reparameterized_and_dreg_refuses_them():
    import pyro.distributions as dist

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Bernoulli(0.3))
            pyro.sample("x", dist.Normal(2 * z - 1, 1.0), obs=x)

    logit = torch.zeros(1, requires_grad=True)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Bernoulli(logits=logit.expand(x.shape[0])))

    x = torch.tensor([0.5, -1.0, 1.5])
    est = estimators.make("rws", num_particles=3, max_plate_nesting=1)
    torch.manual_seed(3)
    est.differentiable_loss(model, guide, x).backward()
    torch.manual_seed(3)
    w = est.log_weights(model, guide, (x,), {}, for_gradient=False)
    z, wt = w.latents["z"].detach(), w.log_w().softmax(0).detach()
    hand = torch.autograd.grad(-(wt * dist.Bernoulli(logits=logit.expand(3)).log_prob(z)).sum(), logit)[0]
    assert torch.allclose(logit.grad, hand, rtol=1e-6) and hand.abs().item() > 1e-3
    for name in ("stl", "dreg", "piwae", "miwae"):
        with pytest.raises(ModelStructureError, match="cannot be reparameterized"):
            estimators.make(name, num_particles=2, max_plate_nesting=1).differentiable_loss(model, guide, x)


# -- KL weighting and warm-up --------------------------------------------------------------------
def test_kl_weight_changes_the_gradient_not_the_reported_bound(lg):
    model, guide = lg(perturb=0.3)
    x = model.sample(4)
    plain, beta = (estimators.make("iwae", num_particles=3), estimators.make("iwae", num_particles=3, kl_weight=0.5))
    la, lb = same_draw(plain, beta, model, guide, x)
    assert la == pytest.approx(lb, rel=1e-12)
    torch.manual_seed(5)
    value = beta.differentiable_loss(model, guide, x).item()
    assert value == pytest.approx(la, rel=1e-12)
    assert beta.last_objective is not None and beta.last_objective.item() != pytest.approx(-la)
    g_plain, g_beta = grads(plain, model, guide, x, seed=5), grads(beta, model, guide, x, seed=5)
    assert not torch.allclose(g_plain[1], g_beta[1])
    # the scaled gradient itself is checked against explicit densities in test_linear_gaussian


@pytest.mark.parametrize("name", estimators.names())
def test_every_estimator_accepts_kl_weight_and_reports_the_unscaled_bound(name, lg):
    model, guide = lg(perturb=0.3)
    x = model.sample(4)
    la, lb = same_draw(estimators.make(name, num_particles=2),
                       estimators.make(name, num_particles=2, kl_weight=0.3), model, guide, x)  # fmt: skip
    assert la == pytest.approx(lb, rel=1e-12)
    torch.manual_seed(1)
    est = estimators.make(name, num_particles=2, kl_weight=0.3)
    est.differentiable_loss(model, guide, x).backward()


def test_kl_warmup_schedules_over_steps_and_epochs(lg):
    est = estimators.make("elbo", kl_warmup=4, kl_weight=1.0)
    model, guide = lg()
    x = model.sample(2)
    seen = []
    for _ in range(6):
        seen.append(est.current_kl_weight())
        est.differentiable_loss(model, guide, x)
    assert seen == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    by_epoch = estimators.make("dreg", kl_warmup=10, kl_warmup_unit="epochs", kl_weight=0.5)
    by_epoch.epoch = 4
    assert by_epoch.current_kl_weight() == pytest.approx(0.2)


def test_renyi_below_zero_is_an_objective_not_a_bound(lg):
    assert estimators.make("renyi", alpha=0.5).reports_bound
    assert not estimators.make("renyi", alpha=-1.0).reports_bound
    model, guide = lg(perturb=0.4)
    x1 = model.sample(1)
    vals = estimators.make("renyi", alpha=-2.0, num_particles=8).bound(model, guide, x1.expand(4000, -1))
    assert vals.mean().item() > model.log_px(x1).item()  # above log p(x): not a bound


# -- convergence --------------------------------------------------------------------------------
def test_svi_with_dreg_converges_to_the_exact_posterior(lg):
    model, guide = lg(perturb=0.5)
    for p in model.parameters():
        p.requires_grad_(False)
    x = model.sample(200)

    def svi_guide(x):
        pyro.module("guide", guide)  # the global param store idiom
        guide(x)

    svi = pyro.infer.SVI(model, svi_guide, pyro.optim.Adam({"lr": 0.02}),
                         loss=estimators.make("dreg", num_particles=8))  # fmt: skip
    for _ in range(600):
        svi.step(x)
    A, sd = model.posterior()
    assert torch.allclose(guide.A, A, atol=0.03)
    assert torch.allclose(guide.log_sd.exp(), sd, rtol=0.05)
    assert torch.allclose(guide.A @ guide.c, A @ model.b, atol=0.03)  # only A c is identified
