"""pyrovae.VAE as a Pyro model/guide pair, in both of Pyro's idioms."""

import pyro
import pyro.poutine as poutine
import pytest
import torch
from torch import nn

import pyrovae
from pyrovae import ConfigError, ModelStructureError


def test_sites_and_shapes():
    vae = pyrovae.VAE(x_dim=12, z_dim=3, hidden=[16])
    x = torch.bernoulli(torch.rand(5, 12))
    guide_trace = poutine.trace(vae.guide).get_trace(x, num_data=50)
    model_trace = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x, num_data=50)
    z, obs = model_trace.nodes["z"], model_trace.nodes["x"]
    assert z["value"].shape == (5, 3) and z["fn"].event_shape == (3,)
    assert obs["is_observed"] and obs["fn"].event_shape == (12,)
    for site in (z, obs, guide_trace.nodes["z"]):
        assert [(f.name, f.dim) for f in site["cond_indep_stack"]] == [("data", -1)]
        assert site["scale"] == pytest.approx(10.0)  # N / B
    # the prior is N(0, I)
    assert torch.equal(z["fn"].base_dist.loc, torch.zeros(5, 3))
    assert torch.equal(z["fn"].base_dist.scale, torch.ones(5, 3))


def test_generates_without_data():
    vae = pyrovae.VAE(x_dim=12, z_dim=3, hidden=[16])
    x = vae.model(batch_size=4)
    assert x.shape == (4, 12) and set(x.unique().tolist()) <= {0.0, 1.0}
    assert vae.sample(6).shape == (6, 12)


def test_global_param_store_idiom_trains():
    vae = pyrovae.VAE(x_dim=20, z_dim=2, hidden=[16])
    x = torch.bernoulli(torch.rand(64, 20) * 0.2)
    svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}),
                         loss=pyrovae.estimators.make("iwae", num_particles=5))  # fmt: skip
    losses = [svi.step(x) for _ in range(60)]
    assert sum(losses[-5:]) < sum(losses[:5])
    names = set(pyro.get_param_store().keys())
    assert {f"{vae.name}.model$$$decoder.net.0.weight", f"{vae.name}.guide$$$encoder.head.loc.bias"} <= names


def test_module_local_idiom_trains_with_a_torch_optimizer():
    vae = pyrovae.VAE(x_dim=20, z_dim=2, hidden=[16])
    x = torch.bernoulli(torch.rand(64, 20) * 0.2)
    with pyro.settings.context(module_local_params=True):
        loss_fn = pyrovae.estimators.make("elbo")(vae.model, vae.guide)
        assert {id(p) for p in loss_fn.parameters()} == {id(p) for p in vae.parameters()}
        opt = torch.optim.Adam(loss_fn.parameters(), lr=1e-2)
        first = loss_fn(x).item()
        for _ in range(60):
            opt.zero_grad()
            loss_fn(x).backward()
            opt.step()
        assert loss_fn(x).item() < first
    assert len(pyro.get_param_store().keys()) == 0  # nothing leaked into the global store


def test_two_vaes_never_share_parameters_silently():
    x = torch.bernoulli(torch.rand(8, 10))
    a, b = pyrovae.VAE(x_dim=10, z_dim=2, hidden=[8]), pyrovae.VAE(x_dim=10, z_dim=2, hidden=[8])
    est = pyrovae.estimators.make("elbo")
    est.loss(a.model, a.guide, x)
    est.loss(b.model, b.guide, x)  # distinct default names: each its own parameters
    store = pyro.get_param_store()
    assert store[f"{a.name}.model$$$decoder.net.0.weight"] is a.model.decoder.net[0].weight
    assert store[f"{b.name}.model$$$decoder.net.0.weight"] is b.model.decoder.net[0].weight
    c = pyrovae.VAE(x_dim=10, z_dim=2, hidden=[8], name=a.name)  # a clash the user asked for
    with pytest.raises(ModelStructureError, match="two modules share the name"):
        est.loss(c.model, c.guide, x)


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_decoders_map_each_particle_on_its_own(architecture):
    """z ``[K, B, z_dim]`` (a particle plate) decodes as K separate batches would."""
    torch.manual_seed(0)
    vae = pyrovae.VAE(x_dim=64, z_dim=4, hidden=[8], architecture=architecture, image_shape=(1, 8, 8),
                      likelihood="gaussian", likelihood_options={"scale": "decoder"})  # fmt: skip
    z = torch.randn(5, 3, 4)
    together = vae.model.decoder(z)
    assert torch.allclose(together, torch.stack([vae.model.decoder(z[k]) for k in range(5)]), atol=1e-6)
    x = torch.rand(3, 64)
    loss = pyrovae.estimators.make("iwae", num_particles=5).differentiable_loss(vae.model, vae.guide, x)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in vae.parameters())


def test_own_encoder_and_decoder():
    class Enc(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(6, 4)

        def forward(self, x):
            h = self.lin(x)
            return h[:, :2], h[:, 2:].exp()

    enc, dec = Enc(), nn.Linear(2, 6)
    vae = pyrovae.VAE(x_dim=6, z_dim=2, likelihood="gaussian", encoder=enc, decoder=dec)
    assert vae.guide.encoder is enc and vae.model.decoder is dec
    x = torch.rand(4, 6)
    assert torch.equal(vae.reconstruct(x), vae.likelihood.mean(dec(enc(x)[0])))


def test_bad_construction_fails_clearly():
    with pytest.raises(ConfigError, match="unknown architecture 'cnn'; valid: mlp, conv"):
        pyrovae.VAE(x_dim=4, architecture="cnn")
    with pytest.raises(ConfigError, match="architecture 'conv' needs image_shape"):
        pyrovae.VAE(x_dim=4, architecture="conv")
    with pytest.raises(ConfigError, match="unknown activation 'gelu'"):
        pyrovae.VAE(x_dim=4, activation="gelu")


def test_data_on_another_device_is_named():
    vae = pyrovae.VAE(x_dim=4, z_dim=2, hidden=[4])
    vae.model.prior_loc = vae.model.prior_loc.to("meta")  # stands in for a GPU
    with pytest.raises(ValueError, match="the data is on cpu but the VAE's parameters are on meta"):
        vae.model(torch.zeros(2, 4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_runs_on_cuda():
    vae = pyrovae.VAE(x_dim=10, z_dim=2, hidden=[8]).to("cuda")
    x = torch.bernoulli(torch.rand(8, 10, device="cuda"))
    loss = pyrovae.estimators.make("iwae", num_particles=3).differentiable_loss(vae.model, vae.guide, x)
    assert loss.device.type == "cuda"
    assert pyrovae.log_likelihood(vae.model, vae.guide, x, num_samples=50).device.type == "cuda"


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_eight_bit_levels_reach_the_encoder_scaled_to_unit_range(architecture):
    torch.manual_seed(0)
    vae = pyrovae.VAE(x_dim=64, z_dim=3, hidden=[8], architecture=architecture, image_shape=(1, 8, 8),
                      likelihood="discretized_logistic")  # fmt: skip
    x = torch.randint(0, 256, (4, 64)).float()
    enc = vae.guide.encoder
    assert enc.input_scale == pytest.approx(1 / 255)
    enc.input_scale = 1.0
    unscaled = enc(x / 255)
    enc.input_scale = 1 / 255
    assert all(torch.allclose(a, b) for a, b in zip(enc(x), unscaled, strict=True))
    assert pyrovae.VAE(x_dim=64, z_dim=3, hidden=[8]).guide.encoder.input_scale == 1.0  # binary data as it is
