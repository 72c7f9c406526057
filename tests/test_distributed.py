"""Data-parallel training: 2 gloo processes (torchrun) against one process on the same global batch."""

import json
import os
import signal
import subprocess
import sys
import time

import pyro
import pytest
import torch

from pyrovae import cli, distributed, estimators
from pyrovae.config import from_dict
from pyrovae.data import InMemoryData
from pyrovae.run import build_vae, checkpoint, load_images

# several processes of their own (torchrun, a local Ray): one xdist worker runs these files' tests in turn
pytestmark = pytest.mark.xdist_group("processes")

SMALL = ["--hidden", "32", "--z-dim", "4", "--batch-size", "100", "--quiet"]


def torchrun(*args, procs=2):
    """``torchrun --nproc-per-node procs -m pyrovae ...`` on this machine's CPU (gloo)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs),
           "-m", "pyrovae", *map(str, args)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(("name", "k"), [("elbo", 1), ("dreg", 3)])
def test_the_first_step_equals_one_process_on_the_global_batch_with_the_same_noise(tmp_path, name, k):
    run = tmp_path / "run"
    flags = ["--estimator", name, "--num-particles", k, "--max-steps", 1, "--eval-num-samples", 0, *SMALL]
    torchrun("train", "--out", run, *flags)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["step"] == 1 and len(state["rng_ranks"]) == 2

    # one process: the same model, the first global batch of epoch 1, each shard's points with the noise
    # its rank drew, the loss of the global batch (scale N / B) and one Adam step
    cfg = from_dict({"estimator": name, "num_particles": k, "hidden": [32], "z_dim": 4, "batch_size": 100})
    torch.manual_seed(cfg.seed)
    images = load_images(cfg)
    vae = build_vae(cfg, images)
    data = InMemoryData(images, vae.likelihood, cfg.binarization, "cpu", cfg.seed)
    est = estimators.make(name, num_particles=k)
    optimizer = torch.optim.Adam(vae.parameters(), lr=cfg.lr, foreach=True)
    batch = distributed.epoch_order(data.num_train, cfg.seed, 1, torch.device("cpu"))[: cfg.batch_size]
    with pyro.settings.context(module_local_params=True), pyro.validation_enabled(False):
        for rank, part in enumerate(torch.tensor_split(batch, 2)):
            torch.manual_seed(distributed.rank_seed(cfg.seed, 1, rank))
            x = data._take(data.train, part)
            loss = est.differentiable_loss(vae.model, vae.guide, x, num_data=data.num_train)
            (loss * (x.shape[0] / cfg.batch_size)).backward()
    grads = {n: p.grad.clone() for n, p in vae.named_parameters()}
    optimizer.step()

    names = [n for n, _ in vae.named_parameters()]
    moments = state["optimizer"]["state"]
    for i, n in enumerate(names):  # Adam's first moment after one step is (1 - beta1) * gradient
        g = moments[i]["exp_avg"] / (1 - cfg.adam_beta1)
        assert torch.allclose(g, grads[n], rtol=1e-5, atol=1e-6 * grads[n].abs().max().item()), n
    for n, p in vae.state_dict().items():
        assert (state["model"][n] - p).abs().max().item() < 1e-6, n


def test_a_few_epochs_on_two_processes_end_within_noise_of_one(tmp_path):
    flags = ["--epochs", 3, "--eval-num-samples", 0, *SMALL]
    torchrun("train", "--out", tmp_path / "two", *flags)
    for seed in (0, 1):
        assert cli.main(["train", "--out", str(tmp_path / f"one{seed}"), "--seed", str(seed), *map(str, flags)]) == 0
    two, one0, one1 = (metrics(tmp_path / r)[-1]["test_bound"] for r in ("two", "one0", "one1"))
    spread = abs(one0 - one1)  # what another seed changes
    assert abs(two - one0) <= 3 * spread + 1.0, (two, one0, one1)
    assert metrics(tmp_path / "two")[-1]["step"] == 3 * 45  # 4,500 points in global batches of 100


def test_resume_with_another_number_of_processes_and_a_sharded_evaluation(tmp_path):
    run = tmp_path / "run"
    torchrun("train", "--out", run, "--epochs", 1, "--eval-num-samples", 0, *SMALL)
    first = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    # one process continues the two-process run
    assert cli.main(["train", "--out", str(run), "--resume", "--epochs", "2", "--eval-num-samples", "0",
                     "--quiet"]) == 0  # fmt: skip
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 2 and "rng_ranks" not in state
    assert any(not torch.equal(first[n], state["model"][n]) for n in first)
    # and two processes continue that, then evaluate with the test points sharded over the ranks
    torchrun("train", "--out", run, "--resume", "--epochs", "3", "--eval-num-samples", "200", "--quiet")
    m = metrics(run)
    assert [r["epoch"] for r in m] == [0, 1, 2, 3] and m[-1]["step"] == 3 * 45
    assert m[-1]["test_bound"] > m[1]["test_bound"]
    sharded = json.loads((run / "evaluation.json").read_text())
    assert sharded["num_points"] == 500
    # one process evaluates the same checkpoint: the same numbers up to Monte Carlo noise
    assert cli.main(["evaluate", str(run), "--num-samples", "200"]) == 0
    single = json.loads((run / "evaluation.json").read_text())
    # (the IWAE bound at the training K = 1 is one draw a point: its mean over 500 points moves by ~0.5)
    for key, tol in (("log_likelihood", 0.5), ("elbo", 0.5), ("iwae_bound", 2.5)):
        assert abs(sharded[key] - single[key]) < tol, (key, sharded[key], single[key])
    assert sharded["active_units"] == single["active_units"]
    assert checkpoint.load(run / "checkpoint.pt")["epoch"] == 3


def test_a_run_interrupted_mid_epoch_resumes_with_the_numbers_of_one_never_stopped(tmp_path):
    """SIGTERM to torchrun mid-epoch: every rank stops at the same step, rank 0 checkpoints every
    rank's RNG and the epoch's sums, and the resumed epoch ends where an uninterrupted one does."""
    flags = ["--epochs", 1, "--batch-size", 10, "--hidden", 32, "--z-dim", 4, "--eval-num-samples", 0, "--quiet"]
    torchrun("train", "--out", tmp_path / "straight", *flags)
    run = tmp_path / "cut"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "pyrovae",
           "train", "--out", str(run), *map(str, flags)]  # fmt: skip
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.time() + 120
    while not (run / "metrics.jsonl").exists() or not (run / "metrics.jsonl").read_text():  # the loop has begun
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.02)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=120)[1]
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert "partial" in state and 0 < state["partial"]["batches"] < 450, err[-2000:]
    assert "interrupted by SIGTERM" in err
    torchrun("train", "--out", run, "--resume", "--quiet")
    straight, resumed = metrics(tmp_path / "straight")[-1], metrics(run)[-1]
    assert resumed["step"] == straight["step"] == 450
    assert resumed["train_loss"] == pytest.approx(straight["train_loss"], rel=1e-6)
    assert resumed["test_bound"] == pytest.approx(straight["test_bound"], rel=1e-6)


def test_pyros_batch_level_elbos_are_refused_and_a_rank_may_score_no_point(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "pyrovae",
           "train", "--out", str(tmp_path / "renyi"), "--estimator", "pyro.RenyiELBO", *SMALL]  # fmt: skip
    done = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    assert done.returncode != 0
    assert "pyrovae: error: data-parallel training needs an estimator whose loss sums over data points" in done.stderr
    assert not (tmp_path / "renyi").exists()
    # one validation point for two ranks: one of them scores nothing, and the run goes on
    torchrun("train", "--out", tmp_path / "v", "--epochs", 1, "--validation", 1, "--eval-num-samples", 0, *SMALL)
    assert metrics(tmp_path / "v")[-1]["valid_bound"] < 0
