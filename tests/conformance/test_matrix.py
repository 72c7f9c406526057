"""Every estimator x every likelihood x {fast path, traced, a subclass of the VAE}.

For each cell: every parameter gets a finite gradient, the fast path gives what tracing gives
(same noise, same loss and gradients), one SVI step leaves every parameter and the loss finite,
and the trained parameters survive a checkpoint round trip (``torch.load(weights_only=True)``)
with the same loss for the same noise.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from models import takes_fast_path

import pyrovae
from pyrovae import estimators, likelihoods
from pyrovae.run import checkpoint
from pyrovae.vae import VAEModel

from .cases import CASES, make

X_DIM, Z_DIM, BATCH, NUM_DATA = 6, 2, 5, 40

# every registered likelihood with its defaults, and the learned-scale variants
LIKELIHOODS = {name: {} for name in likelihoods.names()}
LIKELIHOODS.update({"gaussian[global]": {"scale": "global"}, "gaussian[per_dim]": {"scale": "per_dim"},
                    "gaussian[decoder]": {"scale": "decoder"}, "laplace[decoder]": {"scale": "decoder"}})  # fmt: skip


class WidePrior(VAEModel):
    """A VAE model that changes only its prior, to N(0, 3^2): both paths are built from it."""

    def prior(self, batch_size: int) -> dist.TorchDistribution:
        return dist.Normal(self.prior_loc, 3.0 * self.prior_scale).expand([batch_size, self.z_dim]).to_event(1)


def vae_and_data(likelihood: str, variant: str, seed: int = 0):
    torch.manual_seed(seed)
    vae = pyrovae.VAE(x_dim=X_DIM, z_dim=Z_DIM, hidden=[4], likelihood=likelihood.split("[")[0],
                      likelihood_options=LIKELIHOODS[likelihood]).double()  # fmt: skip
    if variant == "subclass":
        vae.model = WidePrior(vae.model.decoder, vae.likelihood, Z_DIM, vae.model.pyro_name).double()
    g = torch.Generator().manual_seed(seed + 1)
    kind = vae.likelihood.data_kind
    if kind == "binary":
        x = torch.bernoulli(torch.full((BATCH, X_DIM), 0.4, dtype=torch.float64), generator=g)
    elif kind == "unit":
        x = torch.rand(BATCH, X_DIM, generator=g, dtype=torch.float64)
    else:
        x = torch.randint(0, 256, (BATCH, X_DIM), generator=g).double()
    return vae, x


def step(est, vae, x, seed: int = 3):
    torch.manual_seed(seed)
    loss = est.differentiable_loss(vae.model, vae.guide, x, num_data=NUM_DATA)
    params = list(vae.parameters())
    return loss, torch.autograd.grad(loss, params, allow_unused=True)


@pytest.mark.parametrize("variant", ["fast", "traced", "subclass"])
@pytest.mark.parametrize("likelihood", sorted(LIKELIHOODS))
@pytest.mark.parametrize("case", sorted(CASES))
def test_cell(case, likelihood, variant, tmp_path):
    vae, x = vae_and_data(likelihood, variant)
    est = make(case, 3, fast_path=variant != "traced")
    assert takes_fast_path(est, vae.model, vae.guide, (x,), {"num_data": NUM_DATA}) == (variant != "traced")

    loss, grads = step(est, vae, x)
    assert torch.isfinite(loss)
    for (name, _), g in zip(vae.named_parameters(), grads, strict=True):
        assert g is not None, f"{name} gets no gradient"
        assert torch.isfinite(g).all(), f"{name} gets a non-finite gradient"

    if variant != "traced":  # the same noise through Pyro's tracing gives the same numbers
        t_loss, t_grads = step(make(case, 3, fast_path=False), vae, x)
        assert loss.item() == pytest.approx(t_loss.item(), rel=1e-10)
        for a, b in zip(grads, t_grads, strict=True):
            assert torch.allclose(a, b, rtol=1e-8, atol=1e-10)

    svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 0.01}), loss=est)
    assert torch.isfinite(torch.tensor(svi.step(x, num_data=NUM_DATA)))
    for name, p in vae.named_parameters():
        assert torch.isfinite(p).all(), f"{name} is not finite after one SVI step"

    path = tmp_path / "checkpoint.pt"
    checkpoint.save({"model": vae.state_dict()}, path)
    state = torch.load(path, weights_only=True)
    fresh, _ = vae_and_data(likelihood, variant, seed=99)
    fresh.load_state_dict(state["model"])
    assert all(torch.equal(a, b) for a, b in zip(vae.state_dict().values(), fresh.state_dict().values(), strict=True))
    torch.manual_seed(5)
    a = est.loss(vae.model, vae.guide, x, num_data=NUM_DATA)
    torch.manual_seed(5)
    b = est.loss(fresh.model, fresh.guide, x, num_data=NUM_DATA)
    assert a == pytest.approx(b, rel=1e-12)


def test_every_estimator_is_in_the_matrix():
    assert {name for name, _ in CASES.values()} == set(estimators.names())
