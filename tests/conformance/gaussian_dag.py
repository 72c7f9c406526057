"""Random linear-Gaussian model/guide pairs in plain Pyro, with their exact answers.

A model is a DAG of one to three Gaussian latent sites (a chain or a tree) and an observed site
x, each site Gaussian around a linear map of its parents:

    z_j ~ N(c_j + sum_p W_jp z_p, diag(s_j^2)),    x ~ N(c_x + sum_p W_xp z_p, diag(s_x^2)),

in a data plate at dim -1 that is a full batch, ``subsample=idx`` or ``subsample_size=B``, with
optionally a plate at dim -2 inside it: x is then observed P times per data point, and one latent
site may live in that plate too. Per data point every variable is jointly Gaussian, so log p(x)
and the posterior p(z | x) are closed forms (built here as a linear structural-equation model).

The guide samples the latent sites in an order of its own (the inner-plate site last), each a
(multivariate) Gaussian whose mean is linear in x and in the sites it sampled before:
q(z_j | x, z_<j). Any posterior factorizes that way exactly, so :meth:`DAGGuide.set_exact` makes
every log weight equal log p(x), and the ELBO of any guide of this family is closed form:
ELBO(x) = log p(x) - KL(q(z | x) || p(z | x)), both Gaussian.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from torch import Tensor, nn

PLATES = ("full", "idx", "size")


@dataclass(frozen=True)
class Structure:
    """What a generated pair looks like.

    ``dims[j]`` is latent j's size; ``parents[j]`` its parents (earlier latents); ``x_parents``
    those of x; ``inner`` the size P of the plate inside the data plate (0: none); ``inner_latent``
    the latent that lives in it (a site whose only child is x), or None; ``order`` the guide's
    order of the other latents; ``plate`` one of PLATES; ``num_data`` N and ``batch`` B.
    """

    dims: tuple[int, ...]
    parents: tuple[tuple[int, ...], ...]
    x_parents: tuple[int, ...]
    x_dim: int
    inner: int
    inner_latent: int | None
    order: tuple[int, ...]
    plate: str
    num_data: int
    batch: int
    dtype: torch.dtype = torch.float64

    @property
    def nesting(self) -> int:
        return 2 if self.inner else 1

    @property
    def guide_order(self) -> tuple[int, ...]:
        return self.order + (() if self.inner_latent is None else (self.inner_latent,))


def _p(t: Tensor) -> nn.Parameter:
    return nn.Parameter(t)


class DAGModel(nn.Module):
    """The model of a :class:`Structure`, random linear maps and scales from ``seed``."""

    def __init__(self, s: Structure, seed: int = 0) -> None:
        super().__init__()
        self.s = s
        g = torch.Generator().manual_seed(seed)
        dt = torch.float64

        def rand(*shape: int, scale: float = 1.0) -> Tensor:
            return (torch.randn(*shape, generator=g, dtype=dt) * scale).to(s.dtype)

        self.c = nn.ParameterList([_p(rand(d, scale=0.5)) for d in s.dims])
        self.log_s = nn.ParameterList([_p(rand(d, scale=0.3)) for d in s.dims])
        self.W = nn.ParameterList([_p(rand(s.dims[j], s.dims[p], scale=0.8)) for j in range(len(s.dims))
                                   for p in s.parents[j]])  # fmt: skip
        self.Wx = nn.ParameterList([_p(rand(s.x_dim, s.dims[p], scale=0.8)) for p in s.x_parents])
        self.cx = _p(rand(s.x_dim, scale=0.5))
        self.log_sx = _p(rand(s.x_dim, scale=0.3) - 0.3)
        self.seen: list[Tensor] = []  # the data points each run scored (the tests compare them)

    def _edges(self, j: int) -> list[tuple[int, Tensor]]:
        start = sum(len(self.s.parents[i]) for i in range(j))
        return [(p, self.W[start + n]) for n, p in enumerate(self.s.parents[j])]

    # -- the Pyro model ------------------------------------------------------------------------
    def forward(self, data: Tensor, idx: Tensor | None = None) -> None:
        s = self.s
        inner = inner_plate(s)
        with data_plate(s, idx) as ind:
            self.seen.append(ind)
            xb = data if s.plate == "full" else data[ind]  # [B, (P,) D]
            vals: dict[int, Tensor] = {}
            for j in range(len(s.dims)):
                loc = self.c[j] + sum((vals[p] @ w.T for p, w in self._edges(j)), torch.zeros((), dtype=s.dtype))
                fn = dist.Normal(loc, self.log_s[j].exp()).to_event(1)
                if j == s.inner_latent:
                    with inner:
                        vals[j] = pyro.sample(f"z{j}", fn)
                else:
                    vals[j] = pyro.sample(f"z{j}", fn)
            loc = self.cx + sum((vals[p] @ w.T for p, w in zip(s.x_parents, self.Wx, strict=True)),
                                torch.zeros((), dtype=s.dtype))  # fmt: skip
            fn = dist.Normal(loc, self.log_sx.exp()).to_event(1)
            if s.inner:
                with inner:
                    pyro.sample("x", fn, obs=xb.transpose(0, 1))  # [P, B, D]
            else:
                pyro.sample("x", fn, obs=xb)

    # -- exact answers, per data point -----------------------------------------------------------
    def layout(self) -> tuple[dict, list[int]]:
        """Where each variable sits in the per-point vector v = (global latents, inner copies, x
        copies): ``blocks[("z", j, p)]`` and ``blocks[("x", p)]`` are index lists (p = 0 for sites
        outside the inner plate); the second value lists the x indices in data order."""
        s = self.s
        blocks: dict = {}
        n = 0
        copies = max(s.inner, 1)
        for j, d in enumerate(s.dims):
            if j != s.inner_latent:
                blocks[("z", j, 0)] = list(range(n, n + d))
                n += d
        if s.inner_latent is not None:
            for p in range(copies):
                d = s.dims[s.inner_latent]
                blocks[("z", s.inner_latent, p)] = list(range(n, n + d))
                n += d
        xs = []
        for p in range(copies):
            blocks[("x", p)] = list(range(n, n + s.x_dim))
            xs += blocks[("x", p)]
            n += s.x_dim
        return blocks, xs

    def joint(self) -> tuple[Tensor, Tensor]:
        """Mean ``[n]`` and covariance ``[n, n]`` of one data point's v (float64, differentiable
        in the model's parameters)."""
        s = self.s
        blocks, _ = self.layout()
        n = sum(len(b) for b in blocks.values())
        A = torch.zeros(n, n, dtype=torch.float64)
        c = torch.zeros(n, dtype=torch.float64)
        sd = torch.zeros(n, dtype=torch.float64)
        copies = max(s.inner, 1)

        def at(j: int, p: int) -> list[int]:
            return blocks[("z", j, p if j == s.inner_latent else 0)]

        for j in range(len(s.dims)):
            for p in range(copies if j == s.inner_latent else 1):
                rows = at(j, p)
                c = c.index_put((torch.tensor(rows),), self.c[j].double())
                sd = sd.index_put((torch.tensor(rows),), self.log_s[j].double().exp())
                for q, w in self._edges(j):
                    A = _put(A, rows, at(q, p), w.double())
        for p in range(copies):
            rows = blocks[("x", p)]
            c = c.index_put((torch.tensor(rows),), self.cx.double())
            sd = sd.index_put((torch.tensor(rows),), self.log_sx.double().exp())
            for q, w in zip(s.x_parents, self.Wx, strict=True):
                A = _put(A, rows, at(q, p), w.double())
        inv = torch.linalg.inv(torch.eye(n, dtype=torch.float64) - A)
        return inv @ c, inv @ torch.diag(sd**2) @ inv.T

    def log_px(self, x: Tensor) -> Tensor:
        """log p(x_i) for data points ``x`` ``[B, (P,) D]``: ``[B]`` float64."""
        mu, cov = self.joint()
        _, xs = self.layout()
        return dist.MultivariateNormal(mu[xs], cov[xs][:, xs]).log_prob(x.double().reshape(x.shape[0], -1))

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """p(z | x_i): mean ``[B, m]`` and covariance ``[m, m]`` over the latent part of v."""
        mu, cov = self.joint()
        _, xs = self.layout()
        zs = [i for i in range(len(mu)) if i not in xs]
        gain = cov[zs][:, xs] @ torch.linalg.inv(cov[xs][:, xs])
        mean = mu[zs] + (x.double().reshape(x.shape[0], -1) - mu[xs]) @ gain.T
        return mean, cov[zs][:, zs] - gain @ cov[xs][:, zs]

    @torch.no_grad()
    def sample(self, n: int, seed: int = 1) -> Tensor:
        """``n`` data points from the model: ``[n, (P,) D]``."""
        mu, cov = self.joint()
        _, xs = self.layout()
        g = torch.Generator().manual_seed(seed)
        L = torch.linalg.cholesky(cov[xs][:, xs])
        x = mu[xs] + torch.randn(n, len(xs), generator=g, dtype=torch.float64) @ L.T
        shape = (n, self.s.inner, self.s.x_dim) if self.s.inner else (n, self.s.x_dim)
        return x.reshape(shape).to(self.s.dtype)


def _put(A: Tensor, rows: list[int], cols: list[int], block: Tensor) -> Tensor:
    r = torch.tensor(rows).unsqueeze(-1).expand(len(rows), len(cols))
    k = torch.tensor(cols).unsqueeze(0).expand(len(rows), len(cols))
    return A.index_put((r, k), block)


def data_plate(s: Structure, idx: Tensor | None) -> pyro.plate:
    if s.plate == "full":
        return pyro.plate("data", s.batch, dim=-1)
    if s.plate == "idx":
        return pyro.plate("data", s.num_data, subsample=idx, dim=-1)
    return pyro.plate("data", s.num_data, subsample_size=s.batch, dim=-1)


def inner_plate(s: Structure) -> pyro.plate | None:
    """The plate at dim -2 inside the data plate; one object a run, entered for each site in it."""
    return pyro.plate("inner", s.inner, dim=-2) if s.inner else None


class DAGGuide(nn.Module):
    """q(z | x) = prod_j q(z_j | x, z_<j) in ``structure.guide_order``; each factor a Gaussian
    (multivariate for sites of size > 1) whose mean is linear in x and the earlier sites. The
    inner-plate site sees its own copy of x and the global sites."""

    def __init__(self, s: Structure) -> None:
        super().__init__()
        self.s = s
        dt = s.dtype
        self.F = nn.ParameterDict()
        self.G = nn.ParameterDict()
        self.h = nn.ParameterDict()
        self.T = nn.ParameterDict()  # lower triangle; log of the diagonal
        for t, j in enumerate(s.guide_order):
            d = s.dims[j]
            x_size = s.x_dim if j == s.inner_latent else max(s.inner, 1) * s.x_dim
            self.F[str(j)] = _p(torch.zeros(d, x_size, dtype=dt))
            self.h[str(j)] = _p(torch.zeros(d, dtype=dt))
            self.T[str(j)] = _p(torch.zeros(d, d, dtype=dt))
            for k in s.guide_order[:t]:
                self.G[f"{j}_{k}"] = _p(torch.zeros(d, s.dims[k], dtype=dt))
        self.seen: list[Tensor] = []

    def scale_tril(self, j: int) -> Tensor:
        T = self.T[str(j)]
        return torch.tril(T, -1) + torch.diag_embed(torch.diagonal(T).exp())

    def forward(self, data: Tensor, idx: Tensor | None = None) -> None:
        s = self.s
        inner = inner_plate(s)
        with data_plate(s, idx) as ind:
            self.seen.append(ind)
            xb = data if s.plate == "full" else data[ind]  # [B, (P,) D]
            flat = xb.reshape(xb.shape[0], -1)  # [B, P * D]: the whole point
            vals: dict[int, Tensor] = {}
            for t, j in enumerate(s.guide_order):
                own = xb.transpose(0, 1) if j == s.inner_latent else flat  # [P, B, D] or [B, P * D]
                loc = own @ self.F[str(j)].T + self.h[str(j)]
                for k in s.guide_order[:t]:
                    loc = loc + vals[k] @ self.G[f"{j}_{k}"].T
                if s.dims[j] == 1:  # a diagonal Gaussian, so that closed-form KLs are used too
                    fn = dist.Normal(loc, self.scale_tril(j).reshape(1)).to_event(1)
                else:
                    fn = dist.MultivariateNormal(loc, scale_tril=self.scale_tril(j), validate_args=False)
                if j == s.inner_latent:
                    with inner:
                        vals[j] = pyro.sample(f"z{j}", fn)
                else:
                    vals[j] = pyro.sample(f"z{j}", fn)

    # -- exact answers ----------------------------------------------------------------------------
    def affine(self, model: DAGModel) -> tuple[Tensor, Tensor, Tensor]:
        """q(z | x) over the latent part of the model's per-point vector, as z = M x + m + L e:
        returns (M ``[m, n_x]``, m ``[m]``, covariance ``[m, m]``), float64, differentiable."""
        s = self.s
        blocks, xs = model.layout()
        zs = sorted(i for b, ix in blocks.items() if b[0] == "z" for i in ix)
        pos = {v: n for n, v in enumerate(zs)}
        m = len(zs)
        G = torch.zeros(m, m, dtype=torch.float64)
        F = torch.zeros(m, len(xs), dtype=torch.float64)
        h = torch.zeros(m, dtype=torch.float64)
        T = torch.zeros(m, m, dtype=torch.float64)
        copies = max(s.inner, 1)
        for t, j in enumerate(s.guide_order):
            for p in range(copies if j == s.inner_latent else 1):
                rows = [pos[i] for i in blocks[("z", j, p)]]
                x_cols = list(range(p * s.x_dim, (p + 1) * s.x_dim)) if j == s.inner_latent else list(range(len(xs)))
                F = _put(F, rows, x_cols, self.F[str(j)].double())
                h = h.index_put((torch.tensor(rows),), self.h[str(j)].double())
                T = _put(T, rows, rows, self.scale_tril(j).double())
                for k in s.guide_order[:t]:
                    G = _put(G, rows, [pos[i] for i in blocks[("z", k, 0)]], self.G[f"{j}_{k}"].double())
        inv = torch.linalg.inv(torch.eye(m, dtype=torch.float64) - G)
        return inv @ F, inv @ h, inv @ T @ T.T @ inv.T

    @torch.no_grad()
    def set_exact(self, model: DAGModel, perturb: float = 0.0, seed: int = 5) -> DAGGuide:
        """Set the parameters to the exact posterior's factors (plus ``perturb`` times noise)."""
        s = self.s
        mu, cov = model.joint()
        blocks, xs = model.layout()
        g = torch.Generator().manual_seed(seed)
        for t, j in enumerate(s.guide_order):
            own = blocks[("z", j, 0)]
            before = [i for k in s.guide_order[:t] for i in blocks[("z", k, 0)]]
            given = before + xs
            gain = cov[own][:, given] @ torch.linalg.inv(cov[given][:, given])
            cond = cov[own][:, own] - gain @ cov[given][:, own]
            shift = mu[own] - gain @ mu[given]
            x_gain = gain[:, len(before) :]
            if j == s.inner_latent:  # the first copy depends on its own x row only
                if s.inner > 1:
                    assert x_gain[:, s.x_dim :].abs().max().item() < 1e-8
                x_gain = x_gain[:, : s.x_dim]
            L = torch.linalg.cholesky(cond)
            T = torch.tril(L, -1) + torch.diag_embed(torch.diagonal(L).log())
            values = {"F": x_gain, "h": shift, "T": T}
            for key, value in values.items():
                noise = perturb * torch.randn(value.shape, generator=g, dtype=torch.float64)
                getattr(self, key)[str(j)].copy_(value + (torch.tril(noise) if key == "T" else noise))
            n = 0
            for k in s.guide_order[:t]:
                d = s.dims[k]
                noise = perturb * torch.randn(s.dims[j], d, generator=g, dtype=torch.float64)
                self.G[f"{j}_{k}"].copy_(gain[:, n : n + d] + noise)
                n += d
        return self

    def elbo(self, model: DAGModel, x: Tensor) -> Tensor:
        """ELBO(x_i) = log p(x_i) - KL(q(z | x_i) || p(z | x_i)), ``[B]``, in closed form."""
        M, m, C = self.affine(model)
        post_mean, post_cov = model.posterior(x)
        q_mean = x.double().reshape(x.shape[0], -1) @ M.T + m
        q = dist.MultivariateNormal(q_mean, covariance_matrix=C)
        p = dist.MultivariateNormal(post_mean, covariance_matrix=post_cov)
        return model.log_px(x) - torch.distributions.kl_divergence(q, p)
