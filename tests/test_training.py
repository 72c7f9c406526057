"""Training runs: the CLI, the run directory, resume, and nothing lost on a crash, a NaN or a signal."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from pyrovae import TrainingDiverged, cli, estimators, likelihoods
from pyrovae.errors import TrainingInterrupted
from pyrovae.run import checkpoint, train

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


def test_a_float_data_file_suits_a_likelihood_on_its_support(tmp_path):
    import numpy as np

    grey = np.random.default_rng(0).uniform(0, 1, (20, 16)).astype(np.float32)
    np.savez(tmp_path / "grey.npz", train=grey, test=grey[:5])
    args = ["--dataset", "npz", "--data-path", tmp_path / "grey.npz", "--out", tmp_path / "r"]
    # (bernoulli refuses it: tests/test_bad_inputs.py)
    assert run_cli("train", *args, "--likelihood", "continuous_bernoulli", "--epochs", 1,
                   "--batch-size", 10, *SMALL) == 0  # fmt: skip


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
        train({"epochs": 3, "hidden": [32], "z_dim": 4, "eval_num_samples": 0},
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

    monkeypatch.setattr(estimators, "make", make_poisoned)
    expected = r"by step 70 \(epoch 2\).*last good checkpoint \(epoch 1\) is intact"
    with pytest.raises(TrainingDiverged, match=expected):
        train({"epochs": 3, "hidden": [32], "z_dim": 4, "eval_num_samples": 0,
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
    key = "test_estimate" if name in ("jvi", "sumo") else "test_bound"  # an estimate of log p(x) is no bound
    assert all(key in r for r in m) and not any("test_bound" in r for r in m if key == "test_estimate")
    assert m[1][key] > m[0][key] + 20  # a real step up from the untrained model


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


TINY = {"hidden": [8], "z_dim": 2, "eval_num_samples": 0, "batch_size": 500, "log_every": 4}  # 9 steps an epoch
MAKE = estimators.make


def signal_at(monkeypatch, calls, signum):
    """Estimators that send ``signum`` to this process at their ``calls``-th gradient step."""
    real = MAKE

    def make(*a, **k):
        est = real(*a, **k)
        fn, count = est.differentiable_loss, {"n": 0}

        def loss(*args, **kwargs):
            count["n"] += 1
            if count["n"] == calls:
                os.kill(os.getpid(), signum)
            return fn(*args, **kwargs)

        est.differentiable_loss = loss
        return est

    monkeypatch.setattr(estimators, "make", make)


def test_a_signal_mid_epoch_checkpoints_and_the_resumed_run_is_exact(tmp_path, monkeypatch):
    cfg = {**TINY, "epochs": 2, "estimator_options": {"kl_warmup": 2, "kl_warmup_unit": "epochs"}}
    straight = train(cfg, tmp_path / "straight")
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    split = tmp_path / "split"
    # SIGINT at step 5 (epoch 1), then SIGTERM at step 13 (epoch 2): each mid-epoch
    for calls, signum, where in ((5, signal.SIGINT, "batch 5 of 9 in epoch 1"),
                                 (8, signal.SIGTERM, "batch 4 of 9 in epoch 2")):  # fmt: skip
        signal_at(monkeypatch, calls, signum)
        with pytest.raises(TrainingInterrupted, match=where) as e:
            train(cfg if calls == 5 else None, split, resume=calls != 5)
        assert e.value.signum == signum
        assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
        state = torch.load(split / "checkpoint.pt", weights_only=True)
        assert state["step"] == {5: 5, 8: 13}[calls] and state["partial"]["batches"] == {5: 5, 8: 4}[calls]
    monkeypatch.undo()
    resumed = train(None, split, resume=True)

    def strip(metrics):
        return [{k: v for k, v in m.items() if k != "seconds"} for m in metrics]

    assert strip(resumed.metrics) == strip(straight.metrics)
    a, b = straight.vae.state_dict(), resumed.vae.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert "partial" not in torch.load(split / "checkpoint.pt", weights_only=True)


def test_sigint_through_the_cli_is_one_line_and_exit_130(tmp_path, monkeypatch, capsys):
    signal_at(monkeypatch, 3, signal.SIGINT)
    args = ["--epochs", 2, "--hidden", 8, "--z-dim", 2, "--batch-size", 500, "--eval-num-samples", 0, "--quiet"]
    assert run_cli("train", "--out", tmp_path, *args) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pyrovae: interrupted by SIGINT at step 3 "), err
    assert "resume the run (--resume) to continue" in err[0]


def test_sigterm_from_outside_writes_a_checkpoint_and_the_run_resumes(tmp_path):
    run = tmp_path / "run"
    args = [sys.executable, "-m", "pyrovae", "train", "--out", str(run), "--epochs", "1000", "--hidden", "8",
            "--z-dim", "2", "--batch-size", "500", "--eval-num-samples", "0", "--quiet"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    deadline = time.time() + 60
    while time.time() < deadline and not (run / "metrics.jsonl").exists():  # training has begun
        time.sleep(0.02)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("pyrovae: interrupted by SIGTERM at step "), err
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    done = state["epoch"] + 1
    assert run_cli("train", "--out", run, "--resume", "--epochs", done, "--quiet") == 0
    assert [m["epoch"] for m in metrics(run)] == list(range(done + 1))


def test_the_next_start_clears_what_a_kill_mid_save_left(tmp_path):
    train({**TINY, "epochs": 1}, tmp_path)
    left = [tmp_path / "checkpoint.pt.k1ll3d.tmp", tmp_path / "config.toml.tmp", tmp_path / "metrics.jsonl.tmp"]
    for path in left:
        path.write_bytes(b"partial bytes")
    train({**TINY, "epochs": 2}, tmp_path, resume=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".pyrovae", ".pyrovae-lock", "checkpoint.pt", "config.toml",
                                                          "identity.json", "metrics.jsonl"]  # fmt: skip


def test_resume_says_what_it_changed(tmp_path, capsys):
    train({**TINY, "epochs": 1}, tmp_path)
    lines = []
    train({**TINY, "epochs": 2, "log_every": 3}, tmp_path, resume=True, notice=lines.append)
    assert lines[0] == f"resuming {tmp_path} after epoch 1 (step 9); epochs 1 -> 2, log_every 4 -> 3"
    # the CLI prints it on stderr, unless --quiet
    assert run_cli("train", "--out", tmp_path, "--resume", "--epochs", 3) == 0
    assert f"resuming {tmp_path} after epoch 2 (step 18); epochs 2 -> 3" in capsys.readouterr().err
