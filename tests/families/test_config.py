"""Model families through the config, the CLI and training: impossible combinations are one line,
every family trains, checkpoints and resumes exactly, and computes its log weights untraced
(the fast path) unless told not to.

Each family runs on a small subset of the embedded digits (100 training and 50 test images).
"""

import json
import math

import numpy as np
import pytest
import torch
from models import takes_fast_path

from pyrovae import VAE, cli, config, data, estimators, families
from pyrovae.errors import ConfigError
from pyrovae.run import build_vae, check_config, load_images, make_estimator, train
from pyrovae.run.step import step_path

# Every family setting the integration tests run, with the estimator it trains with where the
# default (elbo, K=1) does not apply. Sizes are shared: SIZES below.
SETTINGS = {
    "latents=[16,8]": {"latents": [16, 8]},
    "guide=iaf": {"guide": "iaf"},
    "guide=spline": {"guide": "spline"},
    "prior=vamp": {"prior": "vamp", "prior_components": 5},
    "prior=mog": {"prior": "mog"},
    "latent=bernoulli": {"latent": "bernoulli", "estimator": "vimco", "num_particles": 3},
    "latents=[16,8]+guide=iaf": {"latents": [16, 8], "guide": "iaf"},
}
ESTIMATOR_KEYS = ("estimator", "num_particles", "estimator_options")
SIZES = {"hidden": [32], "z_dim": 8, "flow_hidden": [32], "prior_components": 5}


def family_keys(setting: str) -> dict:
    """The setting's family keys alone, without its estimator."""
    return {k: v for k, v in SETTINGS[setting].items() if k not in ESTIMATOR_KEYS}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: the thread pool costs more than it saves
    yield
    torch.set_num_threads(threads)


# (id, config keys, pieces of the one line: the problem and the valid choices)
IMPOSSIBLE = [
    ("unknown-latent", {"latent": "binary"}, ["unknown latent 'binary'", "valid: gaussian, bernoulli"]),
    ("unknown-guide", {"guide": "maf"}, ["unknown guide 'maf'", "valid: gaussian, iaf, spline"]),
    ("unknown-prior", {"prior": "flow"}, ["unknown prior 'flow'", "valid: gaussian, vamp, mog"]),
    ("latents-zero", {"latents": [16, 0]}, ["latents sizes must be >= 1", "[16, 0]"]),
    ("flow-hidden-small", {"guide": "iaf", "z_dim": 8, "flow_hidden": [4]},
     ["flow_hidden sizes (each flow step's MADE widths) must be >= the flowed layer's size (8)", "[4]"]),
    ("flow-hidden-below-bottom-layer", {"latents": [16, 8], "guide": "spline", "flow_hidden": [8]},
     ["flow_hidden sizes (each flow step's MADE widths) must be >= the flowed layer's size (16)", "[8]"]),
    ("prior-components-zero", {"prior": "mog", "prior_components": 0}, ["prior_components must be >= 1", "got 0"]),
    ("bernoulli-iaf", {"latent": "bernoulli", "guide": "iaf"},
     ["bernoulli latents take guide 'gaussian' and prior 'gaussian'", "guide 'iaf'"]),
    ("bernoulli-vamp", {"latent": "bernoulli", "prior": "vamp"},
     ["bernoulli latents take guide 'gaussian' and prior 'gaussian'", "prior 'vamp'"]),
    *[(f"bernoulli-{name}", {"latent": "bernoulli", "estimator": name, "num_particles": 2},
       [f"estimator {name!r} needs reparameterized latents",
        "valid with latent 'bernoulli': elbo, iwae, rws, tvo, vargrad, vimco"])
      for name in ("dreg", "stl", "analytic_elbo")],
    *[(f"analytic-{key}-{value}", {key: value, "estimator": "analytic_elbo"},
       [f"estimator 'analytic_elbo' needs a closed-form KL, which a {key} {value!r} does not have", "use 'elbo'"])
      for key, value in (("guide", "iaf"), ("guide", "spline"), ("prior", "vamp"), ("prior", "mog"))],
    *[(f"{prior}-two-layers", {"prior": prior, "latents": [16, 8]}, [f"prior {prior!r} is one layer's prior"])
      for prior in ("vamp", "mog")],
    ("vamp-iaf", {"prior": "vamp", "guide": "iaf"},
     ["prior 'vamp' with guide 'iaf'", "valid with vamp: guide 'gaussian'"]),
    ("vimco-one-particle", {"estimator": "vimco", "num_particles": 1}, ["vimco's num_particles must be", ">= 2"]),
    ("conv-family", {"architecture": "conv", "guide": "iaf"}, ["use the mlp architecture", "conv"]),
]  # fmt: skip


def flags(values: dict) -> list[str]:
    """The ``pyrovae train`` flags of config keys (lists comma-separated)."""
    out = []
    for key, value in values.items():
        text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
        out += [f"--{key.replace('_', '-')}", text]
    return out


def _ids(case):
    return case.values[0] if hasattr(case, "values") else case[0]


@pytest.mark.parametrize(("name", "values", "pieces"), IMPOSSIBLE, ids=[_ids(c) for c in IMPOSSIBLE])
def test_an_impossible_family_is_one_config_error(name, values, pieces):
    with pytest.raises(ConfigError) as e:
        check_config(config.from_dict(values))
    line = str(e.value)
    assert "\n" not in line
    for piece in pieces:
        assert piece in line, line


@pytest.mark.parametrize(("name", "values", "pieces"), IMPOSSIBLE, ids=[_ids(c) for c in IMPOSSIBLE])
def test_an_impossible_family_through_the_cli_is_one_line_and_writes_nothing(name, values, pieces, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", *flags(values), "--out", str(out), "--quiet"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pyrovae: error: "), captured.err
    assert all(piece in err[0] for piece in pieces), err[0]
    assert "Traceback" not in captured.err and not out.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "values",
    [
        pytest.param({"z_dim": 300}, id="z_dim-300"),
        pytest.param({"latents": [300]}, id="latents-300"),
        pytest.param({"latent": "bernoulli", "z_dim": 300}, id="bernoulli-300"),
    ],
)
def test_flow_sizes_do_not_constrain_a_run_without_a_flow(values):
    check_config(config.from_dict(values))


def test_list_prints_every_family(capsys):
    assert cli.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name, (what, keys) in families.FAMILIES.items():
        line = next((ln for ln in lines if ln.strip().startswith(name + " ")), None)
        assert line is not None, f"{name} is not listed"
        assert what in line and all(key in line for key in keys), line


@pytest.fixture(scope="module")
def digits_subset(tmp_path_factory):
    """100 training and 50 test digits (every class), as an .npz file of 8-bit pixels."""
    images = data.load("digits")
    path = tmp_path_factory.mktemp("digits") / "small.npz"
    np.savez(path, train=images.train[::45], test=images.test[::10])
    return path


def run_config(setting: str, path, **extra) -> dict:
    return {"dataset": "npz", "data_path": str(path), **SIZES, **SETTINGS[setting], "batch_size": 25,
            "eval_num_samples": 10, "eval_chunk_size": 10, **extra}  # fmt: skip


def finite_numbers(value) -> list[float]:
    """Every number inside a (nested) evaluation record."""
    if isinstance(value, dict):
        return [v for item in value.values() for v in finite_numbers(item)]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [float(value)]
    return []


def strip_seconds(metrics: list[dict]) -> list[dict]:
    return [{k: v for k, v in m.items() if k != "seconds"} for m in metrics]


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_every_family_trains_checkpoints_and_resumes_exactly(setting, digits_subset, tmp_path):
    cfg = run_config(setting, digits_subset)
    straight = train({**cfg, "epochs": 2}, tmp_path / "straight")
    last = straight.metrics[-1]
    assert [m["epoch"] for m in straight.metrics] == [0, 1, 2] and last["step"] == 8
    assert math.isfinite(last["test_bound"]) and math.isfinite(last["train_loss"])
    ev = straight.evaluation
    assert ev is not None and {"log_likelihood", "elbo", "iwae_bound", "kl", "reconstruction"} <= set(ev)
    numbers = finite_numbers(ev)
    assert numbers and all(math.isfinite(v) for v in numbers), ev
    assert json.loads((tmp_path / "straight" / "evaluation.json").read_text())["elbo"] == ev["elbo"]

    state = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 2
    fresh = build_vae(straight.config, load_images(straight.config))
    fresh.load_state_dict(state["model"])  # strict: the family's every parameter and buffer
    saved = straight.vae.state_dict()
    assert all(torch.equal(v, saved[k]) for k, v in fresh.state_dict().items())

    train({**cfg, "epochs": 1}, tmp_path / "split")
    resumed = train({**cfg, "epochs": 2}, tmp_path / "split", resume=True)
    assert strip_seconds(resumed.metrics) == strip_seconds(straight.metrics)
    a, b = straight.vae.state_dict(), resumed.vae.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.evaluation == {**straight.evaluation, "seconds": resumed.evaluation["seconds"]}


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_every_family_takes_the_fast_path_and_is_traced_when_it_must_be(setting):
    """Every family computes its log weights untraced (the VAE's shape: flow guides, learned
    priors; the layered ones: stochastic layers, Bernoulli units), with the loss tracing gives; a
    model whose forward is replaced, or fast_path=false, takes the generic path and says why."""
    cfg = check_config(config.from_dict({**SIZES, **SETTINGS[setting]}))
    vae = VAE(x_dim=12, z_dim=cfg.z_dim, hidden=cfg.hidden, family=families.Family.of(cfg)).double()
    est = make_estimator(cfg)
    x = torch.bernoulli(torch.full((3, 12), 0.5, dtype=torch.float64))
    assert takes_fast_path(est, vae.model, vae.guide, (x,), {})
    assert step_path(est, vae).startswith("training step: fast path")
    torch.manual_seed(0)
    fast = est.loss(vae.model, vae.guide, x)
    vae.model.forward = vae.model.forward  # an instance's own forward: what it samples may have changed
    assert not takes_fast_path(est, vae.model, vae.guide, (x,), {})
    assert "generic path" in step_path(est, vae) and "does not compute its log weights directly" in step_path(est, vae)
    torch.manual_seed(0)
    assert est.loss(vae.model, vae.guide, x) == pytest.approx(fast, rel=1e-9)  # traced: the same number
    untraced = estimators.make(cfg.estimator, num_particles=cfg.num_particles, fast_path=False)
    assert step_path(untraced, vae).endswith("(fast_path=false)")


def test_the_vae_checks_its_family_and_names_the_layer_next_to_x():
    from pyrovae import VAE

    assert VAE(20, z_dim=10, latents=[7], guide="iaf", flow_hidden=[8]).z_dim == 7
    assert VAE(20, z_dim=10, latents=[7, 3]).z_dim == 7
    assert VAE(20, z_dim=10, latents=[7]).z_dim == 7
    with pytest.raises(ConfigError, match="latents sizes must be >= 1"):
        VAE(20, latents=[0])
    with pytest.raises(ConfigError, match="unknown guide 'flow'; valid: gaussian, iaf, spline"):
        VAE(20, guide="flow")
