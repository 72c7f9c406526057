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

from pyrovae import testing

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

    # exact answers: the conformance kit's, for the same W, b and s
    log_px = testing.LinearGaussianModel.log_px
    posterior = testing.LinearGaussianModel.posterior
    sample = testing.LinearGaussianModel.sample


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

    # the per-point parameters, for the amortization-gap diagnostic
    def local_parameters(self, x: Tensor) -> dict[str, Tensor]:
        d = self.distribution(x).base_dist
        return {"loc": d.loc, "log_scale": d.scale.log().expand_as(d.loc)}

    def local_guide(self, params):
        def guide(x: Tensor, num_data: int | None = None) -> None:
            with data_plate(x.shape[0], num_data):
                pyro.sample("z", dist.Normal(params["loc"], params["log_scale"].exp()).to_event(1))

        return guide


def linear_gaussian(perturb: float = 0.0, widen: float = 0.0, **kw):
    """The model and a guide ``perturb``-ed at random and ``widen``-ed (log sd + widen)."""
    model = LinearGaussianModel(**kw)
    guide = LinearGaussianGuide(model, perturb)
    with torch.no_grad():
        guide.log_sd += widen
    return model, guide


class ChainModel(nn.Module):
    """Two latent sites in a chain: z1 ~ N(0, 1), z2 | z1 ~ N(a z1, t^2), x | z2 ~ N(w z2 + b, s^2 I)."""

    def __init__(self, D: int = 3, a: float = 0.8, t: float = 0.6, s: float = 0.5, seed: int = 3) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(D, generator=g, dtype=DTYPE))
        self.b = nn.Parameter(torch.randn(D, generator=g, dtype=DTYPE) * 0.3)
        self.a, self.t, self.s, self.D = a, t, s, D

    def forward(self, x: Tensor, num_data: int | None = None) -> None:
        B = x.shape[0]
        with data_plate(B, num_data):
            z1 = pyro.sample("z1", dist.Normal(torch.zeros(B, 1, dtype=DTYPE), 1.0).to_event(1))
            z2 = pyro.sample("z2", dist.Normal(self.a * z1, self.t).to_event(1))
            pyro.sample("x", dist.Normal(z2 * self.w + self.b, self.s).to_event(1), obs=x)

    def log_px(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            var_z2 = self.a**2 + self.t**2
            cov = var_z2 * torch.outer(self.w, self.w) + self.s**2 * torch.eye(self.D, dtype=DTYPE)
            return dist.MultivariateNormal(self.b, cov).log_prob(x)

    def exact_guide(self) -> dict[str, Tensor]:
        """Parameters of ChainGuide at which q(z1 | x) q(z2 | z1, x) is the exact posterior."""
        with torch.no_grad():
            prior = torch.tensor([[1.0, self.a], [self.a, self.a**2 + self.t**2]], dtype=DTYPE)
            prec = torch.linalg.inv(prior)
            prec[1, 1] += self.w @ self.w / self.s**2
            S = torch.linalg.inv(prec)
            g = S[:, 1] / self.s**2  # posterior mean = g * w^T (x - b)
            k = S[1, 0] / S[0, 0]
            u1, u2 = g[0] * self.w, (g[1] - k * g[0]) * self.w
            return {
                "u1": u1, "e1": -(u1 @ self.b).reshape(1), "ls1": (0.5 * S[0, 0].log()).reshape(1),
                "u2": u2, "e2": -(u2 @ self.b).reshape(1), "k": k.reshape(1),
                "ls2": (0.5 * (S[1, 1] - S[1, 0] ** 2 / S[0, 0]).log()).reshape(1),
            }  # fmt: skip

    def sample(self, n: int, seed: int = 1) -> Tensor:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            z1 = torch.randn(n, 1, generator=g, dtype=DTYPE)
            z2 = self.a * z1 + self.t * torch.randn(n, 1, generator=g, dtype=DTYPE)
            return z2 * self.w + self.b + self.s * torch.randn(n, self.D, generator=g, dtype=DTYPE)


class ChainGuide(nn.Module):
    """q(z1 | x) = N(x u1 + e1, exp(ls1)^2), q(z2 | z1, x) = N(x u2 + e2 + k z1, exp(ls2)^2)."""

    def __init__(self, model: ChainModel, perturb: float = 0.0, seed: int = 4) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        for name, value in model.exact_guide().items():
            noise = perturb * torch.randn(value.shape, generator=g, dtype=DTYPE)
            setattr(self, name, nn.Parameter(value + noise))

    def forward(self, x: Tensor, num_data: int | None = None) -> None:
        with data_plate(x.shape[0], num_data):
            loc1 = (x @ self.u1).unsqueeze(-1) + self.e1
            z1 = pyro.sample("z1", dist.Normal(loc1, self.ls1.exp()).to_event(1))
            loc2 = (x @ self.u2).unsqueeze(-1) + self.e2 + self.k * z1
            pyro.sample("z2", dist.Normal(loc2, self.ls2.exp()).to_event(1))


def chain(perturb: float = 0.0):
    model = ChainModel()
    return model, ChainGuide(model, perturb)


# -- the same linear-Gaussian model as a pyrovae VAE, so the fast path is checked on it too ---------
from pyrovae import estimators  # noqa: E402
from pyrovae.vae import VAE, VAEGuide, VAEModel  # noqa: E402


class LinearEncoder(nn.Module):
    def __init__(self, A: Tensor, c: Tensor, log_sd: Tensor) -> None:
        super().__init__()
        self.A, self.c, self.log_sd = nn.Parameter(A), nn.Parameter(c), nn.Parameter(log_sd)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        loc = (x - self.c) @ self.A.T
        return loc, self.log_sd.exp().expand_as(loc)


class LinearDecoder(nn.Module):
    def __init__(self, W: Tensor, b: Tensor) -> None:
        super().__init__()
        self.W, self.b = nn.Parameter(W), nn.Parameter(b)

    def forward(self, z: Tensor) -> Tensor:
        return z @ self.W.T + self.b


class LinearGaussianVAEModel(VAEModel):
    """pyrovae's VAEModel with a linear decoder and a fixed-scale Gaussian likelihood, with the
    exact answers of :class:`LinearGaussianModel`."""

    W = property(lambda self: self.decoder.W)
    b = property(lambda self: self.decoder.b)
    s = property(lambda self: self.likelihood.scale.fixed.item())
    d = property(lambda self: self.z_dim)
    D = property(lambda self: self.likelihood.x_dim)
    log_px = LinearGaussianModel.log_px
    posterior = LinearGaussianModel.posterior
    sample = LinearGaussianModel.sample


class LinearGaussianVAEGuide(VAEGuide):
    A = property(lambda self: self.encoder.A)
    c = property(lambda self: self.encoder.c)
    log_sd = property(lambda self: self.encoder.log_sd)


class TracedLinearGaussianVAEModel(LinearGaussianVAEModel):
    """The same VAE model with its own ``forward`` (the inherited one, called through): it does
    not say how to compute what it samples directly, so everything traces it."""

    def forward(self, *args, **kwargs):
        return super().forward(*args, **kwargs)


class TracedLinearGaussianVAEGuide(LinearGaussianVAEGuide):
    def forward(self, *args, **kwargs):
        return super().forward(*args, **kwargs)


def linear_gaussian_vae(perturb: float = 0.0, widen: float = 0.0, traced: bool = False, **kw):
    """The same model and guide as :func:`linear_gaussian`, as pyrovae's VAE (float64; the noise
    scale is a power of two so that the likelihood's float32 buffer holds it exactly). ``traced``:
    subclasses that override ``forward``, so that estimators, the log-likelihood and the
    diagnostics all take the traced path."""
    plain, plain_guide = linear_gaussian(perturb, widen, **{"s": 0.5, **kw})
    vae = VAE(x_dim=plain.D, z_dim=plain.d, likelihood="gaussian", likelihood_options={"scale": plain.s},
              encoder=nn.Identity(), decoder=nn.Identity())  # fmt: skip
    model_cls = TracedLinearGaussianVAEModel if traced else LinearGaussianVAEModel
    guide_cls = TracedLinearGaussianVAEGuide if traced else LinearGaussianVAEGuide
    model = model_cls(LinearDecoder(plain.W.detach().clone(), plain.b.detach().clone()),
                      vae.likelihood, plain.d, f"{vae.name}.model")  # fmt: skip
    guide = guide_cls(
        LinearEncoder(*(t.detach().clone() for t in (plain_guide.A, plain_guide.c, plain_guide.log_sd))),
        f"{vae.name}.guide",
    )
    return model.double(), guide.double()


def takes_fast_path(estimator, model, guide, args, kwargs) -> bool:
    """Whether ``estimator`` computes this call's log weights on the fast path (untraced)."""
    return estimator.fast_path and estimators.fast_path(model, guide, args, kwargs) is not None
