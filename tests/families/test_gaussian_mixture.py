"""The matrix-product mixture of diagonal Gaussians against Pyro's generic MixtureSameFamily."""

import pyro.distributions as dist
import pytest
import torch

from pyrovae.families.gaussian_mixture import DiagonalGaussianMixture, mixture

C, Z_DIM = 7, 4


def parameters(dtype=torch.float64, seed=0, spread=1.0):
    """Logits [C], locs [C, z_dim] away from 0 (so the centre matters), scales over two decades."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(C, generator=gen, dtype=dtype)
    loc = 3.0 + spread * torch.randn(C, Z_DIM, generator=gen, dtype=dtype)
    scale = torch.exp(torch.empty(C, Z_DIM, dtype=dtype).uniform_(-2.5, 0.5, generator=gen))
    return logits, loc, scale


def plain(logits, loc, scale):
    return dist.MixtureSameFamily(dist.Categorical(logits=logits), dist.Normal(loc, scale).to_event(1))


def near_the_components(loc, scale, shape, seed=1):
    """Points drawn around the components (where the expansion cancels most), [*shape, z_dim]."""
    gen = torch.Generator().manual_seed(seed)
    which = torch.randint(C, shape, generator=gen)
    noise = torch.randn(*shape, Z_DIM, generator=gen, dtype=loc.dtype)
    return loc[which] + 2 * scale[which] * noise


@pytest.mark.parametrize("shape", [(5,), (6, 5), (2, 3, 5)])
def test_log_density_is_the_generic_mixtures_in_float64(shape):
    logits, loc, scale = parameters()
    z = near_the_components(loc, scale, shape)
    fast = DiagonalGaussianMixture(logits, loc, scale).expand([5])
    assert fast.batch_shape == (5,) and fast.event_shape == (Z_DIM,)
    expected = plain(logits, loc, scale).expand([5]).log_prob(z)
    assert fast.log_prob(z).shape == expected.shape
    assert torch.allclose(fast.log_prob(z), expected, rtol=0, atol=1e-10)
    far = 10 * torch.randn(*shape, Z_DIM, dtype=torch.float64)  # and far from every component
    assert torch.allclose(fast.log_prob(far), plain(logits, loc, scale).expand([5]).log_prob(far), rtol=1e-13)


def test_broadcasts_a_point_over_the_batch():
    logits, loc, scale = parameters()
    z = near_the_components(loc, scale, ())  # [z_dim]
    got = DiagonalGaussianMixture(logits, loc, scale).expand([3]).log_prob(z)
    assert got.shape == (3,)
    assert torch.allclose(got, plain(logits, loc, scale).log_prob(z).expand(3), rtol=0, atol=1e-12)


def test_float32_is_as_close_to_the_exact_value_as_the_generic_mixture():
    """The product is accumulated in float64: no worse than the direct float32 computation."""
    logits, loc, scale = parameters()
    z = near_the_components(loc, scale, (400,))
    exact = plain(logits, loc, scale).log_prob(z)
    single = [t.float() for t in (logits, loc, scale)]
    fast = DiagonalGaussianMixture(*single).log_prob(z.float())
    assert fast.dtype == torch.float32
    generic_error = (plain(*single).log_prob(z.float()).double() - exact).abs().max()
    assert (fast.double() - exact).abs().max() <= 2 * generic_error + 1e-6


def test_gradients_are_the_generic_mixtures():
    logits, loc, scale = (t.clone().requires_grad_() for t in parameters())
    z = near_the_components(loc.detach(), scale.detach(), (6, 5)).requires_grad_()
    wrt = (logits, loc, scale, z)
    fast = torch.autograd.grad(DiagonalGaussianMixture(logits, loc, scale).log_prob(z).sum(), wrt)
    generic = torch.autograd.grad(plain(logits, loc, scale).log_prob(z).sum(), wrt)
    for a, b in zip(fast, generic, strict=True):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-10)


def test_draws_are_the_generic_mixtures():
    logits, loc, scale = parameters()
    torch.manual_seed(3)
    fast = DiagonalGaussianMixture(logits, loc, scale).expand([5]).sample((4,))
    torch.manual_seed(3)
    generic = plain(logits, loc, scale).expand([5]).sample((4,))
    assert fast.shape == (4, 5, Z_DIM) and torch.equal(fast, generic)


def test_mixture_picks_the_fast_form_for_diagonal_gaussians_only():
    logits, loc, scale = parameters()
    assert isinstance(mixture(logits, dist.Normal(loc, scale).to_event(1)), DiagonalGaussianMixture)
    laplace = mixture(logits, dist.Laplace(loc, scale).to_event(1))
    assert type(laplace) is dist.MixtureSameFamily
    z = near_the_components(loc, scale, (3,))
    expected = plain(logits, loc, scale).log_prob(z)
    assert torch.allclose(mixture(logits, dist.Normal(loc, scale).to_event(1)).log_prob(z), expected, atol=1e-10)


def test_refuses_parameters_of_the_wrong_shape():
    logits, loc, scale = parameters()
    with pytest.raises(ValueError, match=r"logits \[C\]"):
        DiagonalGaussianMixture(logits[:-1], loc, scale)
