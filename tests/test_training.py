"""Training runs: the CLI, the run directory, resume, and nothing lost on a crash or a NaN."""

import json

import pytest
import torch

from pyrovae import TrainingDiverged, checkpoint, cli, estimators, likelihoods, training

SMALL = ["--hidden", "64", "--z-dim", "8", "--eval-num-samples", "0", "--quiet"]


def run_cli(*args):
    return cli.main([str(a) for a in args])


def metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("name", likelihoods.names())
def test_one_epoch_through_the_cli_lowers_the_loss_for_every_likelihood(tmp_path, name):
    assert run_cli("train", "--likelihood", name, "--epochs", 1, "--out", tmp_path / name, *SMALL) == 0
    m = metrics(tmp_path / name)
    assert [r["epoch"] for r in m] == [0, 1]
    assert m[1]["test_bound"] > m[0]["test_bound"]


def test_the_run_directory(tmp_path):
    out = tmp_path / "run"
    args = ["--epochs", 2, "--hidden", "64", "--z-dim", "8", "--eval-num-samples", "20", "--quiet"]
    assert run_cli("train", "--out", out, "--estimator", "iwae", "--num-particles", 3, *args) == 0
    assert (out / "config.toml").read_text().count('estimator = "iwae"') == 1
    m = metrics(out)
    assert [r["epoch"] for r in m] == [0, 1, 2]
    assert all({"train_loss", "test_bound", "seconds"} <= set(r) for r in m[1:])
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 2 and isinstance(state["rng"]["torch"], torch.Tensor)
    ev = json.loads((out / "evaluation.json").read_text())
    # the IS estimate at K=20 beats the IWAE(3) bound, which beats the ELBO, all in expectation
    assert ev["log_likelihood"] > ev["elbo"]
    assert ev["elbo"] == pytest.approx(ev["reconstruction"] - ev["kl"])
    assert 0 <= ev["active_units"] <= 8 and ev["num_points"] == 500
    for png in ("samples.png", "reconstructions.png"):
        assert (out / png).stat().st_size > 1000


def test_resume_continues_the_same_run(tmp_path):
    common = ["--epochs", 2, *SMALL]
    assert run_cli("train", "--out", tmp_path / "straight", *common) == 0
    assert run_cli("train", "--out", tmp_path / "split", "--epochs", 1, *SMALL[:-1]) == 0
    assert run_cli("train", "--out", tmp_path / "split", "--resume", "--epochs", 2, "--quiet") == 0
    a, b = metrics(tmp_path / "straight"), metrics(tmp_path / "split")
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in a]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in b]


def test_resume_refuses_a_changed_setting(tmp_path, capsys):
    assert run_cli("train", "--out", tmp_path, "--epochs", 1, *SMALL) == 0
    assert run_cli("train", "--out", tmp_path, "--resume", "--epochs", 2, "--lr", 0.1) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0]] and "cannot resume with lr=0.1: the run used 0.001" in err[0]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--likelihood", "gausian"], "unknown likelihood 'gausian'; valid likelihoods: bernoulli, "),
        (["--estimator", "iwea"], "unknown estimator 'iwea'; valid estimators: "),
        (["--likelihood-option", "sigma=1"], "likelihood 'bernoulli' has no option 'sigma'"),
        (["--binarization", "soft"], "unknown binarization 'soft'; valid: dynamic, fixed"),
    ],
)
def test_bad_names_give_one_error_line(tmp_path, capsys, args, message):
    assert run_cli("train", "--out", tmp_path, *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_a_config_typo_gives_one_error_line(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('likelihood = "gaussian"\nnum_particle = 5\n')
    assert run_cli("train", "--config", cfg, "--out", tmp_path / "r") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown config key 'num_particle'; valid keys: dataset" in err[0]


def test_data_outside_the_support_gives_one_error_line(tmp_path, capsys):
    import numpy as np

    grey = np.random.default_rng(0).uniform(0, 1, (20, 16)).astype(np.float32)
    np.savez(tmp_path / "grey.npz", train=grey, test=grey[:5])
    args = ["--dataset", "npz", "--data-path", tmp_path / "grey.npz", "--out", tmp_path / "r"]
    assert run_cli("train", *args, "--likelihood", "bernoulli") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "likelihood 'bernoulli': needs binary data (0 or 1)" in err[0], err
    # the same file suits a likelihood on [0, 1]
    assert run_cli("train", *args, "--likelihood", "continuous_bernoulli", "--epochs", 1,
                   "--batch-size", 10, *SMALL) == 0  # fmt: skip


def test_a_truncated_checkpoint_gives_one_error_line(tmp_path, capsys):
    assert run_cli("train", "--out", tmp_path, "--epochs", 1, *SMALL) == 0
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(path.read_bytes()[:1000])
    capsys.readouterr()
    for args in (["evaluate", tmp_path], ["train", "--out", tmp_path, "--resume", "--epochs", 2]):
        assert run_cli(*args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "is unreadable (truncated or corrupt)" in err[0], err


def test_a_checkpoint_of_another_architecture_gives_one_error_line(tmp_path, capsys):
    assert run_cli("train", "--out", tmp_path, "--epochs", 1, *SMALL) == 0
    config = tmp_path / "config.toml"
    assert "z_dim = 8" in config.read_text()
    config.write_text(config.read_text().replace("z_dim = 8", "z_dim = 4"))
    before = (tmp_path / "checkpoint.pt").read_bytes()
    capsys.readouterr()
    for args in (["evaluate", tmp_path], ["train", "--out", tmp_path, "--resume", "--epochs", 2]):
        assert run_cli(*args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "does not fit this run's model" in err[0] and "shape: " in err[0], err
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


def _snapshots(cfg_out):
    """Train with a callback that keeps each epoch's checkpoint bytes."""
    seen = {}

    def keep(record):
        seen[record["epoch"]] = (cfg_out / "checkpoint.pt").read_bytes()

    return seen, keep


def test_a_crash_while_saving_leaves_the_last_checkpoint_whole(tmp_path, monkeypatch):
    seen, keep = _snapshots(tmp_path)
    real_save = torch.save
    calls = {"n": 0}

    def crashing_save(obj, f, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:  # the second epoch's checkpoint
            f.write(b"partial bytes")
            raise OSError("disk full (injected)")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(checkpoint.torch, "save", crashing_save)
    with pytest.raises(OSError, match="injected"):
        training.train({"epochs": 3, "hidden": [32], "z_dim": 4, "eval_num_samples": 0},
                       tmp_path, on_epoch=keep)  # fmt: skip
    assert (tmp_path / "checkpoint.pt").read_bytes() == seen[1]
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir() if "tmp" in p.name) == []


def test_a_nan_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    seen, keep = _snapshots(tmp_path)
    real = estimators.make
    nan_at = 45 + 20  # a step in the second epoch (45 steps an epoch)

    def make_poisoned(*a, **k):
        est = real(*a, **k)
        fn, count = est.differentiable_loss, {"n": 0}

        def poisoned(*args, **kwargs):
            count["n"] += 1
            loss = fn(*args, **kwargs)
            return loss * float("nan") if count["n"] >= nan_at else loss

        est.differentiable_loss = poisoned
        return est

    monkeypatch.setattr(training.estimators, "make", make_poisoned)
    expected = r"by step 70 \(epoch 2\).*last good checkpoint \(epoch 1\) is intact"
    with pytest.raises(TrainingDiverged, match=expected):
        training.train({"epochs": 3, "hidden": [32], "z_dim": 4, "eval_num_samples": 0,
                        "log_every": 10}, tmp_path, on_epoch=keep)  # fmt: skip
    assert (tmp_path / "checkpoint.pt").read_bytes() == seen[1]
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())


@pytest.mark.parametrize("name", estimators.names() + ["pyro.Trace_ELBO", "pyro.RenyiELBO"])
def test_every_estimator_trains_through_the_cli(tmp_path, name):
    assert run_cli("train", "--estimator", name, "--num-particles", 2, "--epochs", 1, "--batch-size", 150,
                   "--out", tmp_path, *SMALL) == 0  # fmt: skip
    m = metrics(tmp_path)
    assert m[1]["test_bound"] > m[0]["test_bound"] + 20  # a real step up from the untrained model


def test_kl_warmup_logs_the_scaled_objective_beside_the_bound(tmp_path):
    args = ["--estimator-option", "kl_warmup=2", "--estimator-option", 'kl_warmup_unit="epochs"']
    assert run_cli("train", "--epochs", 3, "--out", tmp_path, *args, *SMALL) == 0
    m = metrics(tmp_path)[1:]
    assert [r["kl_weight"] for r in m] == [0.0, 0.5, 1.0]
    # with beta < 1 the scaled objective drops the KL's share: lower than the loss
    assert m[0]["train_objective"] < m[0]["train_loss"]
    assert m[2]["train_objective"] == pytest.approx(m[2]["train_loss"], rel=1e-5)


def test_renyi_below_zero_is_logged_as_an_objective(tmp_path):
    args = ["--estimator", "renyi", "--estimator-option", "alpha=-1", "--num-particles", 3]
    assert run_cli("train", "--epochs", 1, "--out", tmp_path, *args, *SMALL) == 0
    assert all("test_objective" in r and "test_bound" not in r for r in metrics(tmp_path))
