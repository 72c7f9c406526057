"""The transport fields that generalized DReG uses solve the continuity equation of their prior."""

from __future__ import annotations

import pyro.distributions as dist
import pytest
import torch
from torch import Tensor

from pyrovae.estimators.transport import transport
from pyrovae.families.gaussian_mixture import DiagonalGaussianMixture

DTYPE = torch.float64


def params_1d() -> dict[str, Tensor]:
    return {
        "logits": torch.tensor([0.3, -0.5, 0.1], dtype=DTYPE),
        "loc": torch.tensor([[-1.0], [0.4], [1.7]], dtype=DTYPE, requires_grad=True),
        "scale": torch.tensor([[0.6], [1.3], [0.4]], dtype=DTYPE, requires_grad=True),
    }


def generic(p: dict[str, Tensor]) -> dist.MixtureSameFamily:
    return dist.MixtureSameFamily(dist.Categorical(logits=p["logits"]), dist.Normal(p["loc"], p["scale"]).to_event(1))


def diagonal(p: dict[str, Tensor]) -> DiagonalGaussianMixture:
    return DiagonalGaussianMixture(p["logits"], p["loc"], p["scale"])


def normal(p: dict[str, Tensor]) -> dist.Independent:
    return dist.Normal(p["loc"][0], p["scale"][0]).to_event(1)


def flux(build, p: dict[str, Tensor], name: str, i: int, z: Tensor) -> tuple[Tensor, Tensor]:
    """(d r(z) / d theta_i, r(z) v_i(z)) at points ``z [N, 1]``, theta = ``p[name]``, by autograd."""
    r = build(p)
    density = r.log_prob(z).exp()  # [N]
    view = transport(r, z).view  # [N, 1]
    theta = p[name]
    d_r = torch.stack([torch.autograd.grad(density[n], theta, retain_graph=True)[0][i, 0] for n in range(len(z))])
    v = torch.stack([torch.autograd.grad(view[n, 0], theta, retain_graph=True)[0][i, 0] for n in range(len(z))])
    return d_r, density.detach() * v


@pytest.mark.parametrize("build", [generic, diagonal, normal])
def test_the_field_solves_the_continuity_equation(build):
    """d r(z) / d theta = -d/dz (r(z) v(z)) at 41 points in 1-D, for every component parameter theta
    (v(z) = d view / d theta by autograd, d/dz by a central difference, h = 1e-5): the identity that
    turns the prior's score term into a path term (Bauer & Mnih 2021) holds exactly when this does."""
    p = params_1d()
    z, h = torch.linspace(-3, 3, 41, dtype=DTYPE).unsqueeze(-1), 1e-5  # [N, 1]
    for name in ("loc", "scale"):
        for i in range(1 if build is normal else 3):
            d_r, _ = flux(build, p, name, i, z)
            div = (flux(build, p, name, i, z + h)[1] - flux(build, p, name, i, z - h)[1]) / (2 * h)
            assert torch.allclose(d_r, -div, rtol=1e-6, atol=1e-9), (name, i, d_r, -div)
            assert d_r.abs().max() > 1e-3  # the parameter moves the density


def test_the_mixture_by_matrix_products_is_the_elementwise_field():
    """DiagonalGaussianMixture's field (matrix products over [N, C]) has the generic mixture's
    value and parameter gradients, in 3-D with 4 components, points in [2, 5]."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, generator=g, dtype=DTYPE)
    loc = torch.randn(4, 3, generator=g, dtype=DTYPE).requires_grad_()
    scale = (0.5 + torch.rand(4, 3, generator=g, dtype=DTYPE)).requires_grad_()
    z = torch.randn(2, 5, 3, generator=g, dtype=DTYPE)
    weight = torch.randn(2, 5, 3, generator=g, dtype=DTYPE)
    out = []
    for r in (DiagonalGaussianMixture(logits, loc, scale), generic({"logits": logits, "loc": loc, "scale": scale})):
        moved = transport(r.expand((5,)), z)
        assert torch.allclose(moved.view, z)
        out.append(torch.autograd.grad((weight * moved.view).sum(), (loc, scale)))
    for a, b in zip(*out, strict=True):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_no_field_for_a_fixed_prior_or_an_unknown_family():
    """N(0, I) has no parameter to move and a Laplace no known field: both give None (GDReG keeps
    IWAE's term there)."""
    z = torch.zeros(3, 2, dtype=DTYPE)
    assert transport(dist.Normal(torch.zeros(2, dtype=DTYPE), 1.0).to_event(1), z) is None
    loc = torch.zeros(2, dtype=DTYPE, requires_grad=True)
    assert transport(dist.Laplace(loc, 1.0).to_event(1), z) is None
