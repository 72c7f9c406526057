"""VIMCO against exact answers: the expected IWAE bound of a model with binary latents and its
gradient, by enumerating every particle configuration; IWAE's value and reparameterized gradient
on the same draw; mini-batches; K >= 2."""

import itertools
import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrovae import ConfigError, estimators
from pyrovae.estimators import logmeanexp
from pyrovae.estimators.vimco import leave_one_out_bounds

DTYPE = torch.float64
D_Z, D_X = 2, 3  # latent bits, observed dims
SHAPES = {"theta": (D_Z,), "W": (D_X, D_Z), "b": (D_X,), "log_s": (1,), "phi": (D_Z,), "V": (D_Z, D_X)}
GUIDE = ("phi", "V")


class BinaryLatents:
    """z ~ Bernoulli(sigmoid(theta)) over D_Z bits, x | z ~ N(W z + b, exp(log_s)^2 I),
    q(z | x) = Bernoulli(sigmoid(phi + V x)): plain Pyro functions, the data plate at dim -1.

    Every parameter has a leading copy dim: data point n uses copy n // per_copy, so one backward
    pass over R copies of the data gives R independent gradient draws, one per copy.
    """

    def __init__(self, copies: int = 1, per_copy: int = 3, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.base = {n: 0.7 * torch.randn(s, generator=g, dtype=DTYPE) for n, s in SHAPES.items()}
        self.base["W"] = 2.0 * self.base["W"]  # the four configurations of z explain x differently
        self.base["log_s"] = torch.full((1,), math.log(0.8), dtype=DTYPE)
        self.params = {n: v.expand(copies, *v.shape).clone().requires_grad_() for n, v in self.base.items()}
        self.per_copy = per_copy
        self.seen: list[torch.Tensor] = []

    def sample(self, n: int, seed: int = 1) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        p = self.base
        z = torch.bernoulli(torch.sigmoid(p["theta"]).expand(n, D_Z), generator=g)
        return z @ p["W"].T + p["b"] + p["log_s"].exp() * torch.randn(n, D_X, generator=g, dtype=DTYPE)

    def _at(self, name: str, idx: torch.Tensor) -> torch.Tensor:
        return self.params[name][idx // self.per_copy]  # [B, ...]

    def _plate(self, x, subsample_size, subsample):
        return pyro.plate("data", x.shape[0], subsample_size=subsample_size, subsample=subsample, dim=-1)

    def model(self, x, subsample_size=None, subsample=None):
        with self._plate(x, subsample_size, subsample) as idx:
            self.seen.append(idx)
            z = pyro.sample("z", dist.Bernoulli(logits=self._at("theta", idx)).to_event(1))  # [K, B, D_Z]
            mean = (self._at("W", idx) @ z.unsqueeze(-1)).squeeze(-1) + self._at("b", idx)  # [K, B, D_X]
            pyro.sample("x", dist.Normal(mean, self._at("log_s", idx).exp()).to_event(1), obs=x[idx])

    def guide(self, x, subsample_size=None, subsample=None):
        with self._plate(x, subsample_size, subsample) as idx:
            self.seen.append(idx)
            logits = self._at("phi", idx) + (self._at("V", idx) @ x[idx].unsqueeze(-1)).squeeze(-1)  # [B, D_Z]
            pyro.sample("z", dist.Bernoulli(logits=logits).to_event(1))


def exact_expected_iwae(p: dict, x: torch.Tensor, k: int) -> torch.Tensor:
    """E_{z_1..k ~ q(z | x)}[log (1/k) sum_j w(x, z_j)] per point ``[B]``, by summing over all
    (2^D_Z)^k particle configurations; differentiable in the parameters ``p``."""
    zs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=D_Z)), dtype=DTYPE)  # [C, D_Z]
    log_prior = dist.Bernoulli(logits=p["theta"]).to_event(1).log_prob(zs)  # [C]
    mean = (zs @ p["W"].T + p["b"]).unsqueeze(1)  # [C, 1, D_X]
    log_lik = dist.Normal(mean, p["log_s"].exp()).to_event(1).log_prob(x)  # [C, B]
    log_q = dist.Bernoulli(logits=p["phi"] + x @ p["V"].T).to_event(1).log_prob(zs.unsqueeze(1))  # [C, B]
    lw = log_lik + log_prior.unsqueeze(1) - log_q  # [C, B]
    configs = torch.tensor(list(itertools.product(range(len(zs)), repeat=k)))  # [C^k, k]
    prob = log_q[configs].sum(1).exp()  # [C^k, B]
    assert torch.allclose(prob.sum(0), torch.ones(x.shape[0], dtype=DTYPE), atol=1e-12)
    return (prob * logmeanexp(lw[configs], dim=1)).sum(0)


def flat(grads) -> torch.Tensor:
    return torch.cat([g.reshape(g.shape[0], -1) for g in grads], dim=1)  # [R, P]


def exact_gradient(m: BinaryLatents, x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact expected bound of one copy's points, summed, and its gradient ``[P]``."""
    p = {n: v.clone().requires_grad_() for n, v in m.base.items()}
    value = exact_expected_iwae(p, x, k).sum()
    grads = torch.autograd.grad(value, list(p.values()))
    return value.detach(), flat([g.unsqueeze(0) for g in grads])[0]


def gradient_draws(name: str, k: int, copies: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, BinaryLatents]:
    """(``[R, P]`` per-copy gradients of the bound, the bound of each copy ``[R]``, the model)."""
    m = BinaryLatents(copies=copies)
    x = m.sample(m.per_copy)
    est = estimators.make(name, num_particles=k, max_plate_nesting=1)
    torch.manual_seed(seed)
    loss = est.differentiable_loss(m.model, m.guide, x.repeat(copies, 1))
    grads = torch.autograd.grad(-loss, list(m.params.values()))
    torch.manual_seed(seed)
    bound = est.bound(m.model, m.guide, x.repeat(copies, 1)).reshape(copies, m.per_copy).sum(1)
    return flat(grads), bound, m


def guide_columns() -> torch.Tensor:
    sizes = [math.prod(s) for s in SHAPES.values()]
    mask = [n in GUIDE for n, size in zip(SHAPES, sizes, strict=True) for _ in range(size)]
    return torch.tensor(mask)


K, COPIES = 3, 20000


@pytest.fixture(scope="module")
def draws():
    return {name: gradient_draws(name, K, COPIES, seed=7) for name in ("vimco", "iwae")}


@pytest.mark.parametrize("name", ["vimco", "iwae"])
def test_mean_gradient_and_bound_equal_the_exact_expectation(name, draws):
    g, bound, m = draws[name]
    value, exact = exact_gradient(m, m.sample(m.per_copy), K)
    stderr = g.std(0) / math.sqrt(COPIES)
    assert ((g.mean(0) - exact).abs() < 5.5 * stderr + 1e-9).all(), (g.mean(0) - exact) / stderr
    assert (bound.mean() - value).abs() < 5.5 * bound.std() / math.sqrt(COPIES)
    assert (stderr[guide_columns()] < 0.1 * exact[guide_columns()].abs().max()).all()  # a sharp test


def test_the_check_has_power_the_bound_s_own_gradient_alone_is_biased():
    """Dropping the score-function term (the reparameterized part only) is rejected by the same check."""
    m = BinaryLatents(copies=COPIES)
    x = m.sample(m.per_copy)
    est = estimators.make("iwae", num_particles=K, max_plate_nesting=1)
    torch.manual_seed(7)
    w = est.log_weights(m.model, m.guide, (x.repeat(COPIES, 1),), {})
    g = flat(torch.autograd.grad(logmeanexp(w.log_w(), 0).sum(), list(m.params.values())))
    _, exact = exact_gradient(m, x, K)
    z = (g.mean(0) - exact).abs() / (g.std(0) / math.sqrt(COPIES))
    assert z[guide_columns()].min() > 20  # every guide coordinate


def test_leave_one_out_baselines_lower_the_guide_gradient_variance(draws):
    cols = guide_columns()
    var_vimco, var_iwae = draws["vimco"][0][:, cols].var(0), draws["iwae"][0][:, cols].var(0)
    # measured over draw seeds 0-3: at most 0.11 per coordinate and 0.064 summed
    assert (var_vimco < 0.5 * var_iwae).all()
    assert var_vimco.sum() < 0.2 * var_iwae.sum()


# -- the value is IWAE's ------------------------------------------------------------------------
def same_draw(name, method, m_or_pair, *args, seed=3, **options):
    model, guide = m_or_pair
    est = estimators.make(name, num_particles=4, **options)
    torch.manual_seed(seed)
    return getattr(est, method)(model, guide, *args)


@pytest.mark.parametrize("kl_weight", [1.0, 0.4])
def test_discrete_value_is_iwae_s_and_model_gradients_are_iwae_s(kl_weight):
    m = BinaryLatents()
    x = m.sample(m.per_copy)
    pair = (m.model, m.guide)
    for method in ("loss", "bound"):
        a, b = (same_draw(n, method, pair, x, kl_weight=kl_weight) for n in ("vimco", "iwae"))
        assert torch.allclose(torch.as_tensor(a), torch.as_tensor(b), rtol=1e-12, atol=0)
    la, lb = (same_draw(n, "differentiable_loss", pair, x, kl_weight=kl_weight) for n in ("vimco", "iwae"))
    assert la.item() == pytest.approx(lb.item(), rel=1e-12)
    assert la.item() == pytest.approx(same_draw("iwae", "loss", pair, x), rel=1e-12)
    params = list(m.params.values())
    ga, gb = flat(torch.autograd.grad(la, params)), flat(torch.autograd.grad(lb, params))
    cols = guide_columns()
    # the score-function term reaches the guide only: the model's gradient is IWAE's exactly
    assert torch.allclose(ga[:, ~cols], gb[:, ~cols], rtol=1e-12, atol=1e-14)
    assert not torch.allclose(ga[:, cols], gb[:, cols], rtol=1e-3)


@pytest.mark.parametrize("kl_weight", [1.0, 0.4])
def test_reparameterized_latents_give_iwae_s_value_and_gradient_exactly(lg, kl_weight):
    model, guide = lg(perturb=0.3)
    x = model.sample(5)
    for method in ("loss", "bound"):
        a, b = (same_draw(n, method, (model, guide), x, kl_weight=kl_weight) for n in ("vimco", "iwae"))
        assert torch.allclose(torch.as_tensor(a), torch.as_tensor(b), rtol=1e-12, atol=0)
    la, lb = (same_draw(n, "differentiable_loss", (model, guide), x, kl_weight=kl_weight) for n in ("vimco", "iwae"))
    params = list(model.parameters()) + list(guide.parameters())
    assert la.item() == pytest.approx(lb.item(), rel=1e-12)
    for u, v in zip(torch.autograd.grad(la, params), torch.autograd.grad(lb, params), strict=True):
        assert torch.allclose(u, v, rtol=1e-12, atol=0)


# -- mini-batches -------------------------------------------------------------------------------
N, B = 7, 3


def _run(m, x, method, seed, pass_indices):
    """``method`` with the RNG at ``seed``; with ``pass_indices`` the plate is given the indices a
    ``subsample_size`` plate draws first from that RNG state (and the RNG advances the same)."""
    est = estimators.make("vimco", num_particles=4, max_plate_nesting=1)
    torch.manual_seed(seed)
    kwargs = {"subsample": torch.randperm(N)[:B]} if pass_indices else {"subsample_size": B}
    m.seen.clear()
    out = getattr(est, method)(m.model, m.guide, x, **kwargs)
    assert all(torch.equal(s, m.seen[0]) for s in m.seen), "one call scored different data points"
    return out, m.seen[0]


@pytest.mark.parametrize("seed", [0, 1])
def test_a_subsampled_plate_scales_the_summed_bound_and_matches_indices_passed_in(seed):
    m = BinaryLatents(per_copy=N)
    x = m.sample(N)
    params = list(m.params.values())
    out = {}
    for given in (False, True):
        bound, idx = _run(m, x, "bound", seed, given)
        loss, idx_loss = _run(m, x, "loss", seed, given)
        dl, idx_dl = _run(m, x, "differentiable_loss", seed, given)
        assert bound.shape == (B,) and torch.equal(idx, idx_loss) and torch.equal(idx, idx_dl)
        assert loss == pytest.approx(-N / B * bound.sum().item(), rel=1e-12)
        assert dl.item() == pytest.approx(loss, rel=1e-12)
        out[given] = (bound, idx, flat(torch.autograd.grad(dl, params)))
    (b0, i0, g0), (b1, i1, g1) = out[False], out[True]
    assert torch.equal(i0, i1) and len(set(i0.tolist())) == B
    assert torch.allclose(b0, b1, rtol=1e-12, atol=0)
    assert torch.allclose(g0, g1, rtol=1e-12, atol=1e-14)
    assert g0[:, guide_columns()].abs().max() > 0


# -- the leave-one-out bounds and the option ----------------------------------------------------
def _reference_leave_one_out(lw):
    """L_{-k} by building each particle set with particle k replaced, then logsumexp."""
    k = lw.shape[0]
    out = []
    for i in range(k):
        others = torch.cat([lw[:i], lw[i + 1 :]])
        out.append(torch.cat([others, others.mean(0, keepdim=True)]).logsumexp(0) - math.log(k))
    return torch.stack(out)


@pytest.mark.parametrize("k", [2, 3, 7])
def test_leave_one_out_bounds_are_exact_and_stable(k):
    g = torch.Generator().manual_seed(k)
    lw = torch.randn(k, 5, generator=g, dtype=DTYPE) * 3
    assert torch.allclose(leave_one_out_bounds(lw), _reference_leave_one_out(lw), rtol=1e-12, atol=1e-12)
    # weights far beyond exp's range, one particle dominating: still finite and exact
    wild = lw * 400
    out = leave_one_out_bounds(wild)
    assert torch.isfinite(out).all()
    assert torch.allclose(out, _reference_leave_one_out(wild), rtol=1e-12, atol=1e-9)
    if k == 2:  # the other particle and its own geometric mean: L_{-k} = lw_{1-k}
        assert torch.allclose(out, wild.flip(0), rtol=1e-12, atol=0)


@pytest.mark.parametrize("k", [1, 0, -3])
def test_fewer_than_two_particles_is_one_config_error(k):
    with pytest.raises(ConfigError, match=r"^vimco's num_particles must be an integer >= 2 .*got " + str(k)) as e:
        estimators.make("vimco", num_particles=k)
    assert "\n" not in str(e.value)
    assert estimators.make("vimco").num_particles == 2


def test_a_particle_of_weight_zero_gives_finite_baselines_and_gradients():
    # lw = -inf (a particle the model rules out) has weight 0 in IWAE; its baseline must not be nan
    lw = torch.tensor([[0.0], [1.0], [-math.inf]], requires_grad=True)
    loo = leave_one_out_bounds(lw)
    assert torch.isfinite(loo).all()
    # particle k replaced by the geometric mean of the others (exp(-inf) = 0 where one is -inf)
    expected = torch.tensor([1.0, 0.0, math.log(1.0 + math.e + math.exp(0.5))])
    assert torch.allclose(loo.flatten(), expected - math.log(3))
