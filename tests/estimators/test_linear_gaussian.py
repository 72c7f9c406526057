"""Estimators against the exact answers of a linear-Gaussian model."""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from pyrovae import estimators

from .hand import elbo, iwae, kl_to_prior, log_lik, log_weights

N = 50  # data set size: a batch of B = 4 is scaled by N / B = 12.5


def renyi(alpha):
    def bound(lw):
        r = 1 - alpha
        return (logsumexp(r * lw, axis=0) - np.log(lw.shape[0])) / r

    return bound


def miwae(m):
    return lambda lw: iwae(lw.reshape(m, -1, lw.shape[-1]).transpose(1, 0, 2)).mean(0)


def jvi(order):
    """Nowozin 2018, eq. 12: sum_j c_j mean over the subsets of K - j particles of IWAE, by loops."""

    def bound(lw):
        k = lw.shape[0]
        total = 0.0
        for j in range(order + 1):
            c = (-1) ** j * (k - j) ** order / (math.factorial(j) * math.factorial(order - j))
            subsets = [[i for i in range(k) if i not in drop] for drop in itertools.combinations(range(k), j)]
            total = total + c * np.mean([iwae(lw[s]) for s in subsets], axis=0)
        return total

    return bound


TVO_BETAS = (0.0, *np.logspace(-1, 0, 5))  # tvo's default partition: log-uniform from 0.1, 5 intervals


def tvo(lw, betas=TVO_BETAS):
    """The left Riemann sum of self-normalized E_beta[lw] (Masrani et al. 2019, eq. 9), by a loop."""
    total = 0.0
    for lo, hi in zip(betas[:-1], betas[1:], strict=True):
        w = np.exp(lo * lw - logsumexp(lo * lw, axis=0))
        total = total + (hi - lo) * (w * lw).sum(0)
    return total


def sumo(m, cutoff=80, decay=0.9):
    """Luo et al. 2020, eq. 5: IWAE(m) + sum_k Delta_k / P(Kc >= k - m + 1), over the draws given."""

    def bound(lw):
        total = iwae(lw[:m])
        for k in range(m, lw.shape[0]):
            j = k - m + 1
            tail = 1 / j if j <= cutoff else decay ** (j - cutoff) / cutoff
            total = total + (iwae(lw[: k + 1]) - iwae(lw[:k])) / tail
        return total

    return bound


# case -> (estimator name, options, the bound by hand from the log weights [M*K, B])
CASES = {
    "elbo": ("elbo", {}, elbo),
    "iwae": ("iwae", {}, iwae),
    "analytic_elbo": ("analytic_elbo", {}, None),  # needs the KL: see hand_bound
    "stl": ("stl", {}, elbo),
    "stl[iwae]": ("stl", {"iwae": True}, iwae),
    "dreg": ("dreg", {}, iwae),
    "rws": ("rws", {}, iwae),
    "rws[dreg+sleep]": ("rws", {"wake_phi": "dreg", "sleep_phi": True}, iwae),
    "renyi[0.5]": ("renyi", {"alpha": 0.5}, renyi(0.5)),
    "renyi[-1]": ("renyi", {"alpha": -1.0}, renyi(-1.0)),
    "miwae[3]": ("miwae", {"num_groups": 3}, miwae(3)),
    "piwae[2]": ("piwae", {"num_groups": 2}, iwae),
    "ciwae[0.3]": ("ciwae", {"beta": 0.3}, lambda lw: 0.3 * elbo(lw) + 0.7 * iwae(lw)),
    "vimco": ("vimco", {}, iwae),
    "dreg[0.5]": ("dreg", {"alpha": 0.5}, iwae),
    "jvi": ("jvi", {}, jvi(1)),
    "jvi[2,dreg]": ("jvi", {"order": 2, "gradient": "dreg"}, jvi(2)),
    "tvo": ("tvo", {}, tvo),
    "sumo": ("sumo", {}, None),  # m = K, and the roulette's draws after them: see hand_bound
    "vargrad": ("vargrad", {}, elbo),
    "gdreg": ("gdreg", {}, iwae),
}
# estimators that need more particles than a test asks for (a baseline, a variance, a jackknife)
MIN_K = {"vimco": 2, "vargrad": 2, "jvi": 3}


def make(case, k):
    name, options, _ = CASES[case]
    return estimators.make(name, num_particles=max(k, MIN_K.get(name, 1)), **options)


def hand_bound(case, model, guide, x, z, k):
    """The estimator's per-point bound computed by hand from the same particles z (K = k)."""
    if case == "analytic_elbo":
        return log_lik(model, x, z).mean(0) - kl_to_prior(guide, x)
    if case == "sumo":
        return sumo(k)(log_weights(model, guide, x, z))
    return CASES[case][2](log_weights(model, guide, x, z))


def test_every_estimator_has_a_hand_computation():
    assert {c[0] for c in CASES.values()} == set(estimators.names())


# Estimators whose every draw is exact at the posterior (all log weights equal log p(x)).
# analytic_elbo is exact only in expectation: its log p(x | z_k) - KL varies with z_k.
EXACT_EACH_DRAW = [c for c in CASES if c != "analytic_elbo"]


@pytest.mark.parametrize("case", EXACT_EACH_DRAW)
@pytest.mark.parametrize("k", [1, 6])
def test_exact_at_the_posterior(case, k, lg):
    model, guide = lg()
    x = model.sample(4)
    est = make(case, k)
    exact = model.log_px(x)
    # every log weight equals log p(x), so every bound is exact on every draw
    assert est.loss(model, guide, x) == pytest.approx(-exact.sum().item(), abs=1e-9)
    assert est.loss(model, guide, x, num_data=N) == pytest.approx(-N / 4 * exact.sum().item(), abs=1e-8)
    assert torch.allclose(est.bound(model, guide, x), exact, atol=1e-10)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("k", [1, 5])
def test_bound_equals_hand_computation_on_the_same_particles(case, k, lg):
    model, guide = lg(perturb=0.3)
    x = model.sample(4)
    est = make(case, k)
    torch.manual_seed(7)
    loss = est.loss(model, guide, x, num_data=N)
    torch.manual_seed(7)
    dloss = est.differentiable_loss(model, guide, x, num_data=N)
    torch.manual_seed(7)
    w = est.log_weights(model, guide, (x,), {"num_data": N}, for_gradient=False)
    z = w.latents["z"]
    draws = est.num_draws if case != "sumo" else z.shape[0]  # SUMO: K and a random count Kc >= 1 more
    assert z.shape == (draws, 4, 2) and draws > est.num_particles - (case != "sumo")
    expected = -N / 4 * hand_bound(case, model, guide, x, z, est.num_particles).sum()
    assert loss == pytest.approx(expected, rel=1e-10)
    assert dloss.item() == pytest.approx(expected, rel=1e-10)
    assert dloss.requires_grad


def _draws(est, model, guide, x1, reps):
    """``reps`` independent draws of the bound at one data point, as one batch."""
    return est.bound(model, guide, x1.expand(reps, -1)).numpy()


def test_iwae_is_below_log_px_and_rises_with_k(lg):
    model, guide = lg(perturb=0.4)
    x1 = model.sample(1)
    exact = model.log_px(x1).item()
    means, ses = [], []
    for k in (1, 4, 16, 64):
        b = _draws(estimators.make("iwae", num_particles=k), model, guide, x1, 4000)
        means.append(b.mean())
        ses.append(b.std(ddof=1) / np.sqrt(len(b)))
        assert means[-1] + 4 * ses[-1] < exact, (k, means[-1], ses[-1], exact)
    for j in range(3):
        assert means[j + 1] - means[j] > 4 * np.hypot(ses[j], ses[j + 1]), (means, ses)
    assert exact - means[-1] < 0.25 * (exact - means[0])  # and closes most of the gap


def test_analytic_and_monte_carlo_elbo_agree_in_mean(lg):
    model, guide = lg(perturb=0.3)
    x1 = model.sample(1)
    a = _draws(estimators.make("analytic_elbo"), model, guide, x1, 20000)
    m = _draws(estimators.make("elbo"), model, guide, x1, 20000)
    se = np.hypot(a.std(), m.std()) / np.sqrt(20000)
    assert abs(a.mean() - m.mean()) < 4 * se


def test_analytic_elbo_is_exact_in_expectation_at_the_posterior(lg):
    model, guide = lg()
    x1 = model.sample(1)
    a = _draws(estimators.make("analytic_elbo", num_particles=4), model, guide, x1, 20000)
    assert abs(a.mean() - model.log_px(x1).item()) < 4 * a.std() / np.sqrt(len(a))


def torch_hand_bound(case, model, guide, x, eps, kl_weight=1.0):
    """The bound as a torch function of every parameter, at fixed noise eps [K, B, d], with the
    KL part weighted by ``kl_weight``: lw = log p(x | z) + beta (log p(z) - log q(z | x))."""
    loc, sd = (x - guide.c) @ guide.A.T, guide.log_sd.exp()
    z = loc + sd * eps
    Normal = torch.distributions.Normal
    log_lik = Normal(z @ model.W.T + model.b, model.s).log_prob(x).sum(-1)
    lw = log_lik + kl_weight * (Normal(0.0, 1.0).log_prob(z).sum(-1) - Normal(loc, sd).log_prob(z).sum(-1))
    if case == "analytic_elbo":
        log_s2 = 2 * guide.log_sd
        return log_lik.mean(0) - kl_weight * 0.5 * (log_s2.exp() - 1 - log_s2 + loc**2).sum(-1)
    return _torch_bound(case, lw)


def _torch_bound(case, lw):
    def lme(t, dim=0):
        return torch.logsumexp(t, dim) - np.log(t.shape[dim])

    if case == "elbo":
        return lw.mean(0)
    if case == "iwae":
        return lme(lw)
    if case.startswith("renyi"):
        r = 1 - CASES[case][1]["alpha"]
        return lme(r * lw) / r
    if case == "miwae[3]":
        return lme(lw.reshape(3, -1, lw.shape[-1]), 1).mean(0)
    if case == "ciwae[0.3]":
        return 0.3 * lw.mean(0) + 0.7 * lme(lw)
    raise KeyError(case)


# Estimators whose gradient is the reparameterized gradient of their own bound.
REPARAM = ["elbo", "iwae", "analytic_elbo", "renyi[0.5]", "renyi[-1]", "miwae[3]", "ciwae[0.3]"]


def _noise(est, model, guide, x, seed):
    """The standard-normal noise eps behind the estimator's particles for ``seed``."""
    torch.manual_seed(seed)
    w = est.log_weights(model, guide, (x,), {"num_data": N}, for_gradient=False)
    with torch.no_grad():
        return (w.latents["z"] - (x - guide.c) @ guide.A.T) / guide.log_sd.exp()


@pytest.mark.parametrize("kl_weight", [1.0, 0.4])
@pytest.mark.parametrize("case", REPARAM)
def test_gradient_equals_the_hand_gradient_at_the_same_noise(case, kl_weight, lg):
    model, guide = lg(perturb=0.3)
    x = model.sample(4)
    params = [model.W, model.b, guide.A, guide.c, guide.log_sd]
    name, options, _ = CASES[case]
    est = estimators.make(name, num_particles=3, kl_weight=kl_weight, **options)
    torch.manual_seed(7)
    grads = torch.autograd.grad(est.differentiable_loss(model, guide, x, num_data=N), params)
    eps = _noise(est, model, guide, x, 7)
    hand = -N / 4 * torch_hand_bound(case, model, guide, x, eps, kl_weight).sum()
    for g, h in zip(grads, torch.autograd.grad(hand, params), strict=True):
        assert torch.allclose(g, h, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("kl_weight", [1.0, 0.4])
@pytest.mark.parametrize("name", ["stl", "dreg"])
def test_path_derivative_gradients_equal_the_hand_surrogate(name, kl_weight, lg):
    """From explicit densities at the same noise, lw'_k = log p(x | z_k) + beta (log p(z_k) -
    log q_stop(z_k)) with q's parameters stopped and z_k = loc + sd eps_k keeping its path:
    STL ascends (1/K) sum_k lw'_k; DReG ascends sum_k (w_k - beta w_k (1 - w_k)) lw'_k in phi (the
    path form of IWAE's score term beta w_k d log q / dphi; w_k^2 at beta = 1; the model's
    parameters stopped there) and sum_k w_k log p(x | stop z_k) in theta, w = softmax(lw) at beta."""
    model, guide = lg(perturb=0.3)
    x = model.sample(4)
    params = [model.W, model.b, guide.A, guide.c, guide.log_sd]
    est = estimators.make(name, num_particles=3, kl_weight=kl_weight)
    torch.manual_seed(7)
    grads = torch.autograd.grad(est.differentiable_loss(model, guide, x, num_data=N), params)
    eps = _noise(est, model, guide, x, 7)
    Normal = torch.distributions.Normal
    loc, sd = (x - guide.c) @ guide.A.T, guide.log_sd.exp()
    z = loc + sd * eps

    def lw_path(W, b):  # [K, B]
        log_lik = Normal(z @ W.T + b, model.s).log_prob(x).sum(-1)
        kl_part = Normal(0.0, 1.0).log_prob(z).sum(-1) - Normal(loc.detach(), sd.detach()).log_prob(z).sum(-1)
        return log_lik + kl_weight * kl_part

    if name == "stl":
        surrogate = lw_path(model.W, model.b).mean(0)
    else:
        wt = lw_path(model.W, model.b).detach().softmax(0)
        theta = (wt * Normal(z.detach() @ model.W.T + model.b, model.s).log_prob(x).sum(-1)).sum(0)
        v = wt - kl_weight * wt * (1 - wt)
        surrogate = (v * lw_path(model.W.detach(), model.b.detach())).sum(0) + theta
    hand = torch.autograd.grad(-N / 4 * surrogate.sum(), params)
    for g, h in zip(grads, hand, strict=True):
        assert torch.allclose(g, h, rtol=1e-9, atol=1e-10)
