"""Models with exact answers, written in plain Pyro (not pyrovae's VAE).

Linear-Gaussian: z ~ N(0, I_d), x | z ~ N(W z + b, s^2 I_D). Then x ~ N(b, W W^T + s^2 I) and
z | x ~ N(M^-1 W^T (x - b) / s^2, M^-1) with M = I + W^T W / s^2. W has orthogonal columns, so
M is diagonal and the mean-field linear guide below is exact at ``exact_guide_params``.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import Tensor, nn

DTYPE = torch.float64


def data_plate(batch: int, num_data: int | None) -> pyro.plate:
    if num_data is None:
        return pyro.plate("data", batch, dim=-1)
    return pyro.plate("data", num_data, subsample=torch.arange(batch), dim=-1)


class LinearGaussianModel(nn.Module):
    def __init__(self, d: int = 2, D: int = 3, s: float = 0.7, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(D, d, generator=g, dtype=DTYPE))
        W = q * torch.linspace(0.8, 1.6, d, dtype=DTYPE)  # orthogonal columns, unequal norms
        self.W = nn.Parameter(W)
        self.b = nn.Parameter(torch.randn(D, generator=g, dtype=DTYPE) * 0.5)
        self.s = s
        self.d, self.D = d, D

    def forward(self, x: Tensor, num_data: int | None = None) -> None:
        B = x.shape[0]
        with data_plate(B, num_data):
            z = pyro.sample("z", dist.Normal(torch.zeros(self.d, dtype=DTYPE), 1.0)
                            .expand([B, self.d]).to_event(1))  # fmt: skip
            pyro.sample("x", dist.Normal(z @ self.W.T + self.b, self.s).to_event(1), obs=x)

    # exact answers
    def log_px(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            cov = self.W @ self.W.T + self.s**2 * torch.eye(self.D, dtype=DTYPE)
            return dist.MultivariateNormal(self.b, cov).log_prob(x)

    def posterior(self) -> tuple[Tensor, Tensor]:
        """(A, sd): z | x ~ N(A (x - b), diag(sd^2))."""
        with torch.no_grad():
            M = torch.eye(self.d, dtype=DTYPE) + self.W.T @ self.W / self.s**2
            Minv = torch.linalg.inv(M)
            assert torch.allclose(Minv, torch.diag(torch.diag(Minv)), atol=1e-10)
            return Minv @ self.W.T / self.s**2, torch.diag(Minv).sqrt()

    def sample(self, n: int, seed: int = 1) -> Tensor:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            z = torch.randn(n, self.d, generator=g, dtype=DTYPE)
            return z @ self.W.T + self.b + self.s * torch.randn(n, self.D, generator=g, dtype=DTYPE)


class LinearGaussianGuide(nn.Module):
    """q(z | x) = N(A (x - c), diag(exp(log_sd))^2)."""

    def __init__(self, model: LinearGaussianModel, perturb: float = 0.0, seed: int = 2) -> None:
        super().__init__()
        A, sd = model.posterior()
        g = torch.Generator().manual_seed(seed)
        self.A = nn.Parameter(A + perturb * torch.randn(A.shape, generator=g, dtype=DTYPE))
        self.c = nn.Parameter(model.b.detach() + perturb * torch.randn(model.D, generator=g, dtype=DTYPE))
        self.log_sd = nn.Parameter(sd.log() + perturb * torch.randn(model.d, generator=g, dtype=DTYPE))

    def distribution(self, x: Tensor) -> dist.TorchDistribution:
        return dist.Normal((x - self.c) @ self.A.T, self.log_sd.exp()).to_event(1)

    def forward(self, x: Tensor, num_data: int | None = None) -> None:
        with data_plate(x.shape[0], num_data):
            pyro.sample("z", self.distribution(x))


def linear_gaussian(perturb: float = 0.0, **kw):
    model = LinearGaussianModel(**kw)
    return model, LinearGaussianGuide(model, perturb)
