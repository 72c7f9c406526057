"""The flow guides' path derivative without inversion: d log q / dz at a sampled point from one
triangular solve a step equals autograd through the inverted flow, and DReG and STL take the same
gradients (every parameter, float64, the same draw) as on the inversion path they replace."""

import copy

import pyro.distributions as dist
import pytest
import torch
from torch import Tensor, nn

import pyrovae
from pyrovae import estimators
from pyrovae.estimators.direct import DirectLogWeights
from pyrovae.families.flows import FlowDistribution, FlowGuide, flow_step_solve

FLOWS = {
    "iaf": {"flow": "iaf"},
    "spline": {"flow": "spline"},
    "spline[quadratic]": {"flow": "spline", "order": "quadratic"},
}
X_DIM, Z_DIM, B, K = 7, 4, 5, 3


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread avoids the thread pool's overhead."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def perturbed_guide(case: str, seed: int = 0, flow_hidden: tuple[int, ...] = (9, 8)) -> FlowGuide:
    """A float64 flow guide, three steps, two hidden layers a net (or ``flow_hidden``), tanh, with
    every parameter jittered so that no step is near the identity and the splines' bins differ."""
    torch.manual_seed(seed)
    guide = FlowGuide(
        X_DIM, Z_DIM, hidden=[6], activation="tanh", flow_layers=3, flow_hidden=list(flow_hidden), **FLOWS[case]
    )
    guide = guide.double()
    with torch.no_grad():
        for p in guide.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return guide


def data(seed: int = 1) -> Tensor:
    return torch.bernoulli(
        torch.full((B, X_DIM), 0.4, dtype=torch.float64), generator=torch.Generator().manual_seed(seed)
    )


@pytest.mark.parametrize("flow_hidden", [(9, 8), (9,)], ids=["two-layers", "one-layer"])  # two solvers for IAF
@pytest.mark.parametrize("block", [1, 3, 8])
@pytest.mark.parametrize("case", sorted(FLOWS))
def test_step_solve_is_the_dense_solve_with_autograds_jacobian(case, block, flow_hidden):
    guide, x = perturbed_guide(case, flow_hidden=flow_hidden), data()
    h = guide.encoder(x)[2]  # [B, context]
    point, v = torch.randn(2, B, Z_DIM, dtype=torch.float64).unbind(0)
    for step in guide.flows:
        transform = step.condition(h)
        full = torch.autograd.functional.jacobian(transform, point)  # [B, d, B, d]
        jac = full.diagonal(dim1=0, dim2=2).permute(2, 0, 1)  # [B, d, d]
        p = step.nn.permutation
        assert torch.equal(jac[:, p][:, :, p].triu(1), torch.zeros_like(jac))  # triangular in the net's order
        at = point.clone().requires_grad_()
        (r,) = torch.autograd.grad(transform.log_abs_det_jacobian(at, transform(at)).sum(), at)
        ref = torch.linalg.solve(jac.transpose(-1, -2), (v - r).unsqueeze(-1)).squeeze(-1)
        assert torch.allclose(flow_step_solve(step, h, point, v, block=block), ref, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("case", sorted(FLOWS))
def test_score_at_a_draw_is_autograd_through_the_inverse(case):
    guide, x = perturbed_guide(case), data()
    q = guide.distribution(x)
    z = q.rsample((K,))  # [K, B, d]
    score = q.score_at_sample(z)
    at = z.detach().requires_grad_()
    (ref,) = torch.autograd.grad(guide.distribution(x).log_prob(at).sum(), at)  # inverts every step
    assert score is not None and score.shape == z.shape and not score.requires_grad
    assert torch.allclose(score, ref, rtol=1e-9, atol=1e-10)
    assert q.score_at_sample(z.detach()) is None  # not the draw itself
    q.rsample((K,))
    assert q.score_at_sample(z) is None  # no longer the last draw


def grads(est, vae, x, seed=3):
    torch.manual_seed(seed)
    loss = est.differentiable_loss(vae.model, vae.guide, x, num_data=40)
    return loss.item(), torch.autograd.grad(loss, list(vae.parameters()))


@pytest.mark.parametrize("name, options", [("dreg", {}), ("stl", {}), ("stl", {"iwae": True})])
@pytest.mark.parametrize("guide", ["iaf", "spline"])
def test_dreg_and_stl_gradients_equal_the_inversion_paths(guide, name, options, monkeypatch):
    torch.manual_seed(0)
    vae = pyrovae.VAE(X_DIM, z_dim=Z_DIM, hidden=[6], activation="tanh", guide=guide, flow_layers=3,
                      flow_hidden=[9, 8]).double()  # fmt: skip
    with torch.no_grad():
        for p in vae.parameters():
            p.add_(0.3 * torch.randn_like(p))
    est, x = estimators.make(name, num_particles=K, **options), data()
    loss, new = grads(est, vae, x)
    monkeypatch.setattr(FlowDistribution, "score_at_sample", lambda self, value: None)  # log q(z.detach())
    loss_old, old = grads(est, vae, x)
    assert loss == loss_old
    for a, b in zip(new, old, strict=True):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-11)
    assert any(g.abs().max() > 1e-3 for g in new)


class FrozenFlowModel(nn.Module):
    """p(z) flat and p(x | z) = q0(z | x) for a frozen copy q0 of a flow guide, so that the exact
    posterior p(z | x) is q0: path-derivative estimators give the guide a zero gradient on every draw."""

    def __init__(self, guide: FlowGuide) -> None:
        super().__init__()
        self.frozen = copy.deepcopy(guide).requires_grad_(False)
        self.pyro_name = "frozenflowmodel"

    def prior(self, batch_size: int) -> dist.TorchDistribution:
        return dist.Normal(torch.zeros(batch_size, Z_DIM, dtype=torch.float64), 1.0).to_event(1)

    def log_prob_terms(self, x: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        return self.frozen.distribution(x).log_prob(z), z.new_zeros(z.shape[:-1])  # inverts: any z


@pytest.mark.parametrize("case", sorted(FLOWS))
def test_zero_path_gradient_at_the_exact_posterior(case):
    guide, x = perturbed_guide(case), data()
    w = DirectLogWeights(FrozenFlowModel(guide), guide, x, num_particles=K)
    params = list(guide.parameters())
    path = torch.autograd.grad((w.log_lik + w.log_prior - w.log_q_stop()).sum(), params, retain_graph=True)
    total = torch.autograd.grad((w.log_lik + w.log_prior - w.log_q).sum(), params)
    assert all(g.abs().max() < 1e-9 for g in path)
    assert any(g.abs().max() > 1e-3 for g in total)  # the score term that the path derivative drops
