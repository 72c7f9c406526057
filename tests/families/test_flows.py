"""The flow guide: the base Gaussian at zero-initialized flow nets, the change of variables by hand,
exactness at the posterior, and the fast path against the traced one."""

import copy

import pyro.distributions as dist
import pytest
import torch
from models import linear_gaussian_vae, takes_fast_path
from torch import nn

import pyrovae
from pyrovae import estimators
from pyrovae.errors import ConfigError
from pyrovae.families.flows import FlowGuide
from pyrovae.vae import VAEGuide

FLOWS = {
    "iaf": {"flow": "iaf"},
    "spline": {"flow": "spline"},
    "spline[quadratic]": {"flow": "spline", "order": "quadratic"},
}
# name -> (estimator, K, options)
ESTIMATORS = {
    "elbo": ("elbo", 3, {}),
    "iwae": ("iwae", 5, {}),
    "stl": ("stl", 3, {}),
    "dreg": ("dreg", 5, {}),
    "rws": ("rws", 5, {}),
    "rws[dreg]": ("rws", 5, {"wake_phi": "dreg"}),
}
PATH_DERIVATIVE = ["stl", "dreg", "rws[dreg]"]  # zero guide gradient on every draw at the posterior
X_DIM, Z_DIM, B, N = 6, 3, 5, 40


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread avoids the thread pool's overhead."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def vae_model():
    torch.manual_seed(0)
    return pyrovae.VAE(x_dim=X_DIM, z_dim=Z_DIM, hidden=[8]).double().model


def flow_guide(case, **kw):
    torch.manual_seed(1)
    return FlowGuide(X_DIM, Z_DIM, hidden=[8], flow_hidden=[12], **FLOWS[case], **kw).double()


def data():
    g = torch.Generator().manual_seed(2)
    return torch.bernoulli(torch.full((B, X_DIM), 0.4, dtype=torch.float64), generator=g)


def make(case, fast_path=None):
    name, k, options = ESTIMATORS[case]
    return estimators.make(name, num_particles=k, fast_path=fast_path, **options)


def run(est, model, guide, x, params, seed=3, **kwargs):
    torch.manual_seed(seed)
    loss = est.differentiable_loss(model, guide, x, **kwargs)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return loss.item(), [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params, strict=True)]


def close(a, b, tol=1e-10):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def hand_flow(guide, x, z0):
    """z_T and log |det dz_T / dz_0| ``[K, B]`` by autograd, one Jacobian row per latent dim (each
    point's output depends on its own input only), independent of Pyro's log-det code."""
    z0 = z0.detach().requires_grad_()
    _, _, h = guide.encoder(x)
    z = z0
    for step in guide.flows:
        z = step.condition(h)(z)
    rows = [torch.autograd.grad(z[..., j].sum(), z0, retain_graph=True)[0] for j in range(z.shape[-1])]
    jacobian = torch.stack(rows, dim=-2)  # [K, B, z_dim, z_dim]
    return z.detach(), torch.linalg.slogdet(jacobian).logabsdet


@pytest.mark.parametrize("case", sorted(FLOWS))
def test_zero_flow_nets_give_the_base_gaussian_guide(case):
    model, x = vae_model(), data()
    guide = flow_guide(case).zero_init()
    base = VAEGuide(copy.deepcopy(guide.encoder.gaussian), name=f"{guide.pyro_name}.base")
    torch.manual_seed(4)
    z = guide.distribution(x).rsample((4,))
    torch.manual_seed(4)
    q_base = base.distribution(x)
    zb = q_base.rsample((4,))
    close(z, zb)
    close(guide.distribution(x).log_prob(z.clone()), q_base.log_prob(zb))  # the inverse path too
    close(guide.code(x)["z"], q_base.base_dist.loc)
    shared = list(model.parameters())
    for case_est in ESTIMATORS:
        est = make(case_est)
        lf, gf = run(est, model, guide, x, shared + list(guide.encoder.gaussian.parameters()))
        lb, gb = run(est, model, base, x, shared + list(base.encoder.parameters()))
        assert lf == pytest.approx(lb, rel=1e-12), case_est
        for a, b in zip(gf, gb, strict=True):
            close(a, b)


@pytest.mark.parametrize("case", sorted(FLOWS))
def test_log_q_is_the_change_of_variables_on_every_path(case):
    guide, x = flow_guide(case), data()
    q = guide.distribution(x)
    torch.manual_seed(5)
    z = q.rsample((4,))  # [K, B, z_dim]
    loc, scale, _ = guide.encoder(x)
    torch.manual_seed(5)
    z0 = dist.Normal(loc, scale).rsample((4,))  # the same noise: the base draw behind z
    z_hand, log_det = hand_flow(guide, x, z0)
    close(z, z_hand)
    assert (z - z0).abs().max() > 0.05  # the flow is not the identity
    expected = dist.Normal(loc, scale).log_prob(z0).sum(-1) - log_det
    cached = q.log_prob(z)  # Pyro reuses each step's cached pre-image
    close(cached, expected)
    inverse = q.log_prob(z.detach())  # a new tensor: each step inverted, as STL and DReG do
    close(inverse, expected)
    close(q.log_prob(z), expected)  # the cache of z.detach() does not stand in for z
    close(guide.code(x)["z"], hand_flow(guide, x, loc)[0])

    # The inverse path's gradients: d/dphi log q(z(phi)) = (d log q / dz)(dz / dphi) + d log q / dphi
    # at fixed z, with the total from the cached path and both parts from the inverse path.
    params = list(guide.parameters())
    total = torch.autograd.grad(cached.sum(), params, retain_graph=True)
    z_fixed = z.detach().requires_grad_()
    *score, dlogq_dz = torch.autograd.grad(q.log_prob(z_fixed).sum(), [*params, z_fixed], retain_graph=True)
    path = torch.autograd.grad(z, params, grad_outputs=dlogq_dz)
    for t, p, s in zip(total, path, score, strict=True):
        close(t, p + s, tol=1e-9)


class ExactBase(nn.Module):
    """The linear-Gaussian VAE's exact encoder (mu, sigma), and a context h = tanh(V x + a)."""

    def __init__(self, encoder: nn.Module, x_dim: int, context_dim: int) -> None:
        super().__init__()
        self.base = encoder
        self.context = nn.Linear(x_dim, context_dim)

    def forward(self, x):
        loc, scale = self.base(x)
        return loc, scale, torch.tanh(self.context(x))


@pytest.mark.parametrize("case", sorted(FLOWS))
def test_exact_at_the_posterior_with_zero_path_gradients(case):
    model, exact_guide = linear_gaussian_vae()
    torch.manual_seed(6)
    encoder = ExactBase(exact_guide.encoder, model.D, 4).double()
    guide = FlowGuide(model.D, model.d, flow_hidden=[8], encoder=encoder, context_dim=4, identity_init=True,
                      **FLOWS[case]).double()  # fmt: skip
    x = model.sample(4)
    exact = model.log_px(x).sum().item()
    params = list(guide.parameters())
    assert any(p is q for p in params for q in guide.flows.parameters())
    for case_est in ESTIMATORS:
        est = make(case_est)
        assert est.loss(model, guide, x) == pytest.approx(-exact, abs=1e-9), case_est
        assert est.loss(model, guide, x, num_data=N) == pytest.approx(-N / 4 * exact, abs=1e-8), case_est
        if case_est in PATH_DERIVATIVE:
            loss, grads = run(est, model, guide, x, params)
            assert loss == pytest.approx(-exact, abs=1e-9)
            assert max(g.abs().max().item() for g in grads) < 1e-10, case_est


@pytest.mark.parametrize("case", sorted(FLOWS))
def test_fast_and_traced_paths_agree(case):
    model, guide, x = vae_model(), flow_guide(case), data()
    params = list(model.parameters()) + list(guide.parameters())
    for case_est in ESTIMATORS:
        fast, traced = make(case_est, fast_path=True), make(case_est, fast_path=False)
        assert takes_fast_path(fast, model, guide, (x,), {"num_data": N})
        assert not takes_fast_path(traced, model, guide, (x,), {"num_data": N})
        (lf, gf), (lt, gt) = (run(est, model, guide, x, params, num_data=N) for est in (fast, traced))
        assert lf == pytest.approx(lt, rel=1e-12), case_est
        for a, b in zip(gf, gt, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("case", sorted(FLOWS))
def test_gradients_reach_every_flow_parameter_and_minibatches_scale(case):
    model, guide, x = vae_model(), flow_guide(case), data()
    flow_params = list(guide.flows.parameters())
    for case_est in ("elbo", "iwae"):
        est = make(case_est)
        loss, grads = run(est, model, guide, x, flow_params)
        assert all(g.abs().max() > 0 for g in grads), case_est
        scaled, _ = run(est, model, guide, x, flow_params, num_data=N)
        assert scaled == pytest.approx(N / B * loss, rel=1e-12)


def test_bad_options_fail_at_once():
    with pytest.raises(ConfigError, match="unknown flow 'maf'"):
        FlowGuide(X_DIM, Z_DIM, flow="maf")
    with pytest.raises(ConfigError, match="flow_hidden"):
        FlowGuide(X_DIM, Z_DIM, flow_hidden=[2])
    with pytest.raises(ConfigError, match="context_dim"):
        FlowGuide(X_DIM, Z_DIM, encoder=nn.Identity())
