"""Active units read E_q[z | x]: exact or Rao-Blackwellized where a family can, never a noisy code."""

import torch

from pyrovae import VAE
from pyrovae.evaluation import evaluate_model
from pyrovae.evaluation.metrics import active_units


def two_layers(latent="gaussian"):
    torch.manual_seed(0)
    return VAE(30, latents=[6, 4], hidden=[8], latent=latent).double()


def data(n=50):
    return (torch.rand(n, 30, dtype=torch.float64) > 0.5).double()


def test_hierarchy_first_layer_exact_and_the_second_the_mean_over_the_first():
    vae, x = two_layers(), data(5)
    g = vae.guide
    torch.manual_seed(1)
    m = g.posterior_mean(x, num_samples=4000)
    assert torch.allclose(m["z1"], g.layers[0].mean(g._input(x)))
    torch.manual_seed(2)  # the Monte Carlo mean of many draws of the whole chain agrees within its error
    draws = []
    for _ in range(20):
        z1 = g.site_distribution("z1", x, {}).sample((1000,))
        draws.append(g.site_distribution("z2", x, {"z1": z1}).sample().mean(0))
    draws = torch.stack(draws)  # [20, B, d2]
    se = draws.std(0) / 20**0.5
    assert ((m["z2"] - draws.mean(0)).abs() < 5 * se + 1e-3).all()


def test_a_unit_that_ignores_its_parent_has_exactly_its_mean_and_is_inactive():
    vae, x = two_layers(), data(200)
    head = vae.guide.layers[1].head  # q(z2 | z1): mean of unit 0 set to a constant
    with torch.no_grad():
        for layer in (head.loc,):
            layer.weight[0].zero_()
            layer.bias[0] = 0.3
    m = vae.guide.posterior_mean(x)
    assert torch.allclose(m["z2"][:, 0], torch.full((200,), 0.3, dtype=torch.float64), rtol=0, atol=1e-12)
    # a Monte Carlo mean of 100 draws would give this unit a variance near sigma^2 / 100 instead
    assert active_units(m["z2"][:, :1], threshold=1e-12) == 0


def test_bernoulli_layers_average_over_binary_parents_not_probabilities():
    vae, x = two_layers("bernoulli"), data(3)
    g = vae.guide
    torch.manual_seed(3)
    m = g.posterior_mean(x, num_samples=20000)
    z1 = g.site_distribution("z1", x, {}).sample((20000,))  # binary parents, as q draws them
    exact_given_draws = torch.sigmoid(g.layers[1].head(g.layers[1]._features(z1))).mean(0)
    assert torch.allclose(m["z2"], exact_given_draws, atol=0.02)
    assert torch.allclose(m["z1"], torch.sigmoid(g.layers[0].head(g.layers[0]._features(x))))


def test_flow_guide_mean_is_the_draws_mean_and_the_base_mean_at_the_identity_flow():
    torch.manual_seed(0)
    vae = VAE(30, z_dim=4, hidden=[8], guide="iaf", flow_hidden=[8]).double()
    vae.guide.zero_init()
    x = data(4)
    torch.manual_seed(1)
    m = vae.guide.posterior_mean(x, num_samples=20000)["z"]
    loc, scale, _ = vae.guide.encoder(x)
    assert ((m - loc).abs() < 5 * scale / 20000**0.5).all()


def test_evaluation_counts_active_units_of_every_layer():
    vae, x = two_layers(), data(60)
    torch.manual_seed(4)
    ev = evaluate_model(vae.model, vae.guide, [x], num_samples=20, chunk_size=10)
    torch.manual_seed(4)
    means = torch.cat(list(vae.guide.posterior_mean(x).values()), dim=-1)
    assert 0 <= ev["active_units"] <= 10
    assert means.shape == (60, 10)
