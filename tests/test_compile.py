"""torch.compile of the fast-path loss: the same losses and gradients as eager, for the same noise."""

import json

import pyro
import pytest
import torch

import pyrovae
from pyrovae.run import train
from pyrovae.run.step import make_step, step_path


@pytest.mark.parametrize(
    "name, options",
    [("elbo", {}), ("iwae", {}), ("dreg", {}), ("rws", {"wake_phi": "dreg"})],  # the last two stay eager
)
def test_compiled_step_equals_the_eager_step(name, options):
    torch.manual_seed(0)
    x = torch.bernoulli(torch.rand(8, 16))
    with pyro.settings.context(module_local_params=True), pyro.validation_enabled(False):
        vae = pyrovae.VAE(x_dim=16, z_dim=3, hidden=[8])
        est = pyrovae.estimators.make(name, num_particles=3, **options)
        grads = []
        for mode in ("off", "default"):
            step = make_step(est, vae, 40, mode)
            vae.zero_grad(set_to_none=True)
            torch.manual_seed(1)
            loss = step(x)
            grads.append((loss.item(), [p.grad.clone() for p in vae.parameters()]))
    (le, ge), (lc, gc) = grads
    assert lc == pytest.approx(le, rel=1e-5)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(ge, gc, strict=True))


def test_the_compiled_step_compiles_once():
    """Nothing that changes from step to step (the step counter, beta) is read inside the
    compiled code, so it is not recompiled at every step."""
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    x = torch.bernoulli(torch.rand(8, 16))
    with pyro.settings.context(module_local_params=True), pyro.validation_enabled(False):
        vae = pyrovae.VAE(x_dim=16, z_dim=3, hidden=[8])
        est = pyrovae.estimators.make("iwae", num_particles=2, kl_weight=0.5)
        step = make_step(est, vae, 40, "default")
        step(x)
        graphs = counters["stats"]["unique_graphs"]
        for _ in range(5):
            step(x)
    assert counters["stats"]["unique_graphs"] == graphs and est.num_steps == 6


def test_estimators_with_gradient_hooks_stay_eager():
    est = pyrovae.estimators.make("dreg", num_particles=3)
    vae = pyrovae.VAE(x_dim=16, z_dim=3, hidden=[8])
    assert "not compiled: its gradient hooks do not survive torch.compile" in step_path(est, vae, "default")
    assert "torch.compile default" in step_path(pyrovae.estimators.make("iwae"), vae, "default")
    warm = pyrovae.estimators.make("elbo", kl_warmup=10)
    assert "not compiled: its KL warm-up changes beta every step" in step_path(warm, vae, "default")


def test_training_with_compile(tmp_path):
    cfg = {"epochs": 1, "hidden": [16], "z_dim": 4, "eval_num_samples": 0, "compile": "default", "batch_size": 500}
    lines = []
    result = train(cfg, tmp_path, notice=lines.append)
    assert lines == ["training step: fast path, the VAE's log weights without tracing; torch.compile default"]
    m = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert m[1]["test_bound"] > m[0]["test_bound"] and result.metrics[-1]["step"] == 9
