"""A linear-Gaussian model with exact answers, in every plate form, for the conformance checks.

z ~ N(0, I_d), x | z ~ N(W z + b, s^2 I_D). Then x ~ N(b, W W^T + s^2 I) and
z | x ~ N(A (x - b), diag(v)) with M = I + W^T W / s^2, A = M^-1 W^T / s^2, diag(v) = M^-1 (W has
orthogonal columns, so M is diagonal and the mean-field linear guide q(z | x) = N(A (x - c),
diag(exp(log_sd))^2) is exact at ``A, c = b, log_sd = log sqrt(v)``). For any such guide the
ELBO has a closed form:

    ELBO(x) = E_q log N(x; W z + b, s^2 I) - KL(q || N(0, I))
            = -D/2 log(2 pi s^2) - (|x - W m - b|^2 + sum_j v_j |W_j|^2) / (2 s^2)
              - 1/2 sum_j (v_j + m_j^2 - 1 - log v_j),    m = A (x - c).

The model and guide take the data in each form Pyro users write: ``(x)`` (the whole batch),
``(x, idx)`` (``pyro.plate(..., subsample=idx)``) and ``(x, None, B)``
(``pyro.plate(..., subsample_size=B)``); ``seen`` keeps the indices each run scored.
"""

from __future__ import annotations

import math
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from torch import Tensor, nn

DTYPE = torch.float64
FORMS = ("full", "idx", "size")


class LinearGaussianModel(nn.Module):
    def __init__(self, d: int = 2, D: int = 3, s: float = 0.7, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(D, d, generator=g, dtype=DTYPE))
        self.W = nn.Parameter(q * torch.linspace(0.8, 1.6, d, dtype=DTYPE))  # orthogonal columns
        self.b = nn.Parameter(torch.randn(D, generator=g, dtype=DTYPE) * 0.5)
        self.s, self.d, self.D = s, d, D
        self.seen: list[Tensor] = []

    def forward(self, x: Tensor, idx: Tensor | None = None, subsample_size: int | None = None) -> None:
        with data_plate(x, idx, subsample_size) as ind:
            self.seen.append(ind)
            xb = x if idx is None and subsample_size is None else x[ind]
            prior = dist.Normal(torch.zeros(self.d, dtype=DTYPE), 1.0).expand([len(ind), self.d])
            z = pyro.sample("z", prior.to_event(1))
            pyro.sample("x", dist.Normal(z @ self.W.T + self.b, self.s).to_event(1), obs=xb)

    def log_px(self, x: Tensor) -> Tensor:
        """log p(x) per data point, exact: ``[B]``."""
        with torch.no_grad():
            cov = self.W @ self.W.T + self.s**2 * torch.eye(self.D, dtype=DTYPE)
            return dist.MultivariateNormal(self.b, cov).log_prob(x)

    def posterior(self) -> tuple[Tensor, Tensor]:
        """(A, sd): z | x ~ N(A (x - b), diag(sd^2))."""
        with torch.no_grad():
            M = torch.eye(self.d, dtype=DTYPE) + self.W.T @ self.W / self.s**2
            Minv = torch.linalg.inv(M)
            return Minv @ self.W.T / self.s**2, torch.diag(Minv).sqrt()

    def sample(self, n: int, seed: int = 1) -> Tensor:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            z = torch.randn(n, self.d, generator=g, dtype=DTYPE)
            return z @ self.W.T + self.b + self.s * torch.randn(n, self.D, generator=g, dtype=DTYPE)


class LinearGaussianGuide(nn.Module):
    """q(z | x) = N(A (x - c), diag(exp(log_sd))^2)."""

    def __init__(self, model: LinearGaussianModel) -> None:
        super().__init__()
        A, sd = model.posterior()
        self.A = nn.Parameter(A.clone())
        self.c = nn.Parameter(model.b.detach().clone())
        self.log_sd = nn.Parameter(sd.log())
        self.seen: list[Tensor] = []

    def forward(self, x: Tensor, idx: Tensor | None = None, subsample_size: int | None = None) -> None:
        with data_plate(x, idx, subsample_size) as ind:
            self.seen.append(ind)
            xb = x if idx is None and subsample_size is None else x[ind]
            pyro.sample("z", self.distribution(xb))

    def distribution(self, x: Tensor) -> dist.TorchDistribution:
        return dist.Normal((x - self.c) @ self.A.T, self.log_sd.exp()).to_event(1)


def data_plate(x: Tensor, idx: Tensor | None, subsample_size: int | None) -> Any:  # a pyro.plate
    if idx is not None:
        return pyro.plate("data", x.shape[0], subsample=idx, dim=-1)
    if subsample_size is not None:
        return pyro.plate("data", x.shape[0], subsample_size=subsample_size, dim=-1)
    return pyro.plate("data", x.shape[0], dim=-1)


class LinearGaussian:
    """The model, a guide, ``num_data`` points, and the exact answers (see the module docstring)."""

    def __init__(self, num_data: int = 6, seed: int = 0) -> None:
        self.model = LinearGaussianModel(seed=seed)
        self.guide = LinearGaussianGuide(self.model)
        self.x = self.model.sample(num_data, seed=seed + 1)

    def perturb(self, amount: float = 0.3, narrow: float = 0.4, seed: int = 2) -> LinearGaussian:
        """Move the guide off the posterior: random offsets, and ``narrow`` off its log sd."""
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.guide.parameters():
                p.add_(amount * torch.randn(p.shape, generator=g, dtype=DTYPE))
            self.guide.log_sd.sub_(narrow)
        return self

    def parameters(self) -> list[nn.Parameter]:
        return list(self.model.parameters()) + list(self.guide.parameters())

    def clear(self) -> None:
        self.model.seen.clear()
        self.guide.seen.clear()

    def elbo(self, x: Tensor) -> Tensor:
        """The closed-form ELBO per data point, differentiable in every parameter: ``[B]``."""
        m, g = self.model, self.guide
        mean = (x - g.c) @ g.A.T  # [B, d]
        v = (2 * g.log_sd).exp()  # [d]
        resid = x - mean @ m.W.T - m.b  # [B, D]
        expected = (resid**2).sum(-1) + (v * (m.W**2).sum(0)).sum()
        log_lik = -0.5 * m.D * math.log(2 * math.pi * m.s**2) - expected / (2 * m.s**2)
        kl = 0.5 * (v + mean**2 - 1 - v.log()).sum(-1)
        return log_lik - kl

    def iwae(self, x: Tensor, k: int) -> Tensor:
        """One draw of IWAE(K) per data point, reparameterized (its gradient is the path
        derivative, unbiased for the gradient of E IWAE(K)): ``[B]``."""
        m, q = self.model, self.guide.distribution(x)
        z = q.rsample((k,))  # [K, B, d]
        prior = dist.Normal(torch.zeros(m.d, dtype=DTYPE), 1.0).to_event(1)
        lik = dist.Normal(z @ m.W.T + m.b, m.s).to_event(1)
        lw = lik.log_prob(x) + prior.log_prob(z) - q.log_prob(z)  # [K, B]
        return torch.logsumexp(lw, 0) - math.log(k)
