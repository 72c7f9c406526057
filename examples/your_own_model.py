"""pyrovae's estimators on a Pyro model that is not pyrovae's: a linear-Gaussian factor model.

    python examples/your_own_model.py --steps 500

The model has an exact log p(x), so the bounds can be read against the truth: ELBO <= IWAE(K)
<= log p(x), and the importance-sampled log-likelihood closes the gap as the guide improves.
"""

from __future__ import annotations

import argparse

import pyro
import pyro.distributions as dist
import torch
from torch import nn

import pyrovae


def data_plate(x: torch.Tensor, num_data: int | None) -> pyro.plate:
    """The data points at dim -1; a mini-batch of a set of ``num_data`` is scaled by N / B."""
    if num_data is None:
        return pyro.plate("data", x.shape[0], dim=-1)
    return pyro.plate("data", num_data, subsample=torch.arange(x.shape[0]), dim=-1)


class FactorModel(nn.Module):
    """z ~ N(0, I_2), x | z ~ N(W z + b, 0.5^2 I_5), data points in a plate at dim -1."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.W, self.b = torch.randn(5, 2, generator=g), torch.randn(5, generator=g)

    def forward(self, x: torch.Tensor, num_data: int | None = None) -> None:
        with data_plate(x, num_data):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.W.T + self.b, 0.5).to_event(1), obs=x)

    def log_px(self, x: torch.Tensor) -> torch.Tensor:
        return dist.MultivariateNormal(self.b, self.W @ self.W.T + 0.25 * torch.eye(5)).log_prob(x)


class Encoder(nn.Module):
    """q(z | x) = N(A x + c, diag(sigma^2)): an amortized linear encoder."""

    def __init__(self) -> None:
        super().__init__()
        self.lin, self.log_sd = nn.Linear(5, 2), nn.Parameter(torch.zeros(2))

    def forward(self, x: torch.Tensor, num_data: int | None = None) -> None:
        with data_plate(x, num_data):
            pyro.sample("z", dist.Normal(self.lin(x), self.log_sd.exp()).to_event(1))


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--estimator", default="iwae", choices=pyrovae.estimators.names())
    args = p.parse_args(argv)
    pyro.set_rng_seed(0)
    model, guide = FactorModel(), Encoder()
    with torch.no_grad():
        z = torch.randn(1000, 2)
        x = z @ model.W.T + model.b + 0.5 * torch.randn(1000, 5)
    est = pyrovae.estimators.make(args.estimator, num_particles=8)
    with pyro.settings.context(module_local_params=True):
        loss_fn = est(model, guide)
        opt = torch.optim.Adam(loss_fn.parameters(), lr=0.02)
        for _ in range(args.steps):
            batch = x[torch.randint(0, 1000, (100,))]
            opt.zero_grad()
            loss_fn(batch, num_data=1000).backward()
            opt.step()
        out = {
            "exact log p(x)": model.log_px(x).mean().item(),
            "IS log p(x), K=2000": pyrovae.log_likelihood(model, guide, x, num_samples=2000).mean().item(),
            "IWAE(8)": pyrovae.estimators.make("iwae", num_particles=8).bound(model, guide, x).mean().item(),
            "ELBO": pyrovae.estimators.make("elbo", num_particles=8).bound(model, guide, x).mean().item(),
        }
    for name, value in out.items():
        print(f"{name:20s} {value:8.4f} nats per point")
    return out


if __name__ == "__main__":
    main()
