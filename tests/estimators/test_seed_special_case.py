"""The derivation pyrovae starts from: a Gaussian encoder, a fixed-scale Gaussian decoder.

negated analytic ELBO = 1/2 sum(exp(log s2) - 1 - log s2 + mu^2) + ||x - x'||^2 / (2 s^2)
                        + (D / 2) log(2 pi s^2), for one sample z and x' = decoder(z).
"""

import math

import pytest
import torch
from torch import nn

import pyrovae


class GivenEncoder(nn.Module):
    """Returns fixed (mu, sigma = exp(log s2 / 2)) for every batch."""

    def __init__(self, mu, log_s2):
        super().__init__()
        self.mu, self.log_s2 = nn.Parameter(mu), nn.Parameter(log_s2)

    def forward(self, x):
        return self.mu, torch.exp(0.5 * self.log_s2)


def seed_formula(mu, log_s2, x, x_prime, s):
    kl = 0.5 * (log_s2.exp() - 1 - log_s2 + mu**2).sum(-1)
    D = x.shape[-1]
    rec = ((x - x_prime) ** 2).sum(-1) / (2 * s**2) + D / 2 * math.log(2 * math.pi * s**2)
    return (kl + rec).sum()


@pytest.mark.parametrize("s", [1.0, 0.3])
def test_constant_decoder(s):
    torch.manual_seed(0)
    B, Z, D = 5, 3, 7
    mu, log_s2 = torch.randn(B, Z), torch.randn(B, Z)
    x, x_prime = torch.rand(B, D), torch.rand(D)
    decoder = nn.Linear(Z, D)
    with torch.no_grad():
        decoder.weight.zero_()
        decoder.bias.copy_(x_prime)
    vae = pyrovae.VAE(
        x_dim=D,
        z_dim=Z,
        likelihood="gaussian",
        likelihood_options={"scale": s},
        encoder=GivenEncoder(mu, log_s2),
        decoder=decoder,
    )
    loss = pyrovae.estimators.make("analytic_elbo").loss(vae.model, vae.guide, x)
    assert loss == pytest.approx(seed_formula(mu, log_s2, x, x_prime, s).item(), rel=1e-6)


def test_decoder_of_the_sampled_code():
    torch.manual_seed(1)
    B, Z, D, s = 4, 2, 6, 0.5
    mu, log_s2 = torch.randn(B, Z), torch.randn(B, Z)
    x = torch.rand(B, D)
    decoder = nn.Linear(Z, D)
    vae = pyrovae.VAE(
        x_dim=D,
        z_dim=Z,
        likelihood="gaussian",
        likelihood_options={"scale": s},
        encoder=GivenEncoder(mu, log_s2),
        decoder=decoder,
    )
    est = pyrovae.estimators.make("analytic_elbo")
    torch.manual_seed(5)
    loss = est.loss(vae.model, vae.guide, x)
    torch.manual_seed(5)
    z = est.log_weights(vae.model, vae.guide, (x,), {}, for_gradient=False).latents["z"]
    expected = seed_formula(mu, log_s2, x, decoder(z[0]).detach(), s)
    assert loss == pytest.approx(expected.item(), rel=1e-6)
