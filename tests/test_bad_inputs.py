"""Every bad input is one line on stderr and exit status 2, and changes no file.

One table, tried as a new user would: wrong names and option types, unusable data files, an
``--out`` that cannot be written, checkpoints that are not whole or not pyrovae's, and resumes
that cannot be. Each case runs ``pyrovae.cli.main`` in-process on a copy of a finished run and
checks the exit status, the one line, no traceback, and every file's bytes before and after.
"""

import builtins
import errno
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pyrovae import cli

TINY = ["--epochs", "1", "--max-steps", "2", "--hidden", "8", "--z-dim", "2", "--eval-num-samples", "0",
        "--batch-size", "500", "--quiet"]  # fmt: skip


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A run of one short epoch, trained once for the module: each test works on a copy."""
    run = tmp_path_factory.mktemp("finished") / "run"
    assert cli.main(["train", "--out", str(run), *TINY]) == 0
    return run


@pytest.fixture
def ws(tmp_path, finished):
    """A workspace: ``run/`` (a finished run), ``early/`` (a run killed before its first
    checkpoint), ``afile`` (a plain file) and .npz files, good and bad."""
    shutil.copytree(finished, tmp_path / "run")
    (tmp_path / "early").mkdir()
    shutil.copy(finished / "config.toml", tmp_path / "early" / "config.toml")
    (tmp_path / "afile").write_text("not a folder\n")
    rng = np.random.default_rng(0)
    binary = (rng.uniform(size=(20, 16)) < 0.5).astype(np.float32)
    npz = {
        "grey": {"train": binary * 0.5, "test": binary[:5] * 0.5},
        "empty_train": {"train": binary[:0], "test": binary},
        "empty_test": {"train": binary, "test": binary[:0]},
        "flat": {"train": binary.ravel(), "test": binary[:5].ravel()},
        "no_test": {"train": binary},
        "mixed": {"train": (binary * 255).astype(np.uint8), "test": binary[:5]},
    }
    for name, arrays in npz.items():
        np.savez(tmp_path / f"{name}.npz", **arrays)
    return tmp_path


def edit_checkpoint(path, change):
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)


class Hostile:
    """Pickles as a call to os.system: a file that runs code under a plain unpickler."""

    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def _bad_moment(state):
    state["optimizer"]["state"][0]["exp_avg"] = torch.zeros(3)


def _strip_optimizer(state):
    del state["optimizer"]


def _bad_rng(state):
    state["rng"]["torch"] = torch.zeros(5, dtype=torch.uint8)


def _hostile(state):
    state["extra"] = Hostile()


def _truncate(path):
    path.write_bytes(path.read_bytes()[:1000])


def _new_z_dim(run):
    config = run / "config.toml"
    config.write_text(config.read_text().replace("z_dim = 2", "z_dim = 4"))


def _ckpt(change):
    return lambda ws: edit_checkpoint(ws / "run" / "checkpoint.pt", change)


def _train_sbn(run):
    """A run of a sigmoid belief net (Bernoulli latents), which AIS cannot move by HMC."""
    argv = ["train", "--out", str(run), "--latent", "bernoulli", "--latents", "3", "--hidden=", *TINY[:-5],
            "--eval-num-samples", "0", "--quiet"]  # fmt: skip
    assert cli.main(argv) == 0


RESUME = ["train", "--out", "{ws}/run", "--resume", "--epochs", "2", "--quiet"]
AIS = ["evaluate", "{ws}/run", "--method", "ais", "--points", "2"]
EVALUATE = ["evaluate", "{ws}/run", "--num-samples", "2"]
NPZ = ["train", "--out", "{ws}/new", "--dataset", "npz", "--data-path"]

# (id, argv with {ws} for the workspace, what to do to the workspace first, a piece of the line)
CASES = [
    # option values of the wrong type, for any registered estimator or likelihood, and compare's specs
    ("renyi-alpha", ["train", "--out", "{ws}/new", "--estimator", "renyi", "--estimator-option", "alpha=abc"],
     None, "estimator 'renyi': option alpha needs a finite number (float), got 'abc'"),
    ("kl-weight", ["train", "--out", "{ws}/new", "--estimator-option", "kl_weight=abc"],
     None, "estimator 'elbo': option kl_weight needs a finite number (float), got 'abc'"),
    ("kl-weight-inf", ["train", "--out", "{ws}/new", "--estimator-option", "kl_weight=inf"],
     None, "option kl_weight needs a finite number (float), got inf"),
    ("ciwae-beta", ["train", "--out", "{ws}/new", "--estimator", "ciwae", "--estimator-option", "beta=abc"],
     None, "estimator 'ciwae': option beta needs a finite number (float), got 'abc'"),
    ("gaussian-init-scale", ["train", "--out", "{ws}/new", "--likelihood", "gaussian", "--likelihood-option",
                             "init_scale=abc"],
     None, "likelihood 'gaussian': option init_scale needs a finite number (float), got 'abc'"),
    ("logistic-num-bins", ["train", "--out", "{ws}/new", "--likelihood", "discretized_logistic",
                           "--likelihood-option", "num_bins=abc"],
     None, "likelihood 'discretized_logistic': option num_bins needs an integer (int), got 'abc'"),
    ("logistic-num-bins-float", ["train", "--out", "{ws}/new", "--likelihood", "discretized_logistic",
                                 "--likelihood-option", "num_bins=2.5"],
     None, "option num_bins needs an integer (int), got 2.5"),
    ("logistic-one-bin", ["train", "--out", "{ws}/new", "--likelihood", "discretized_logistic",
                          "--likelihood-option", "num_bins=1"],
     None, "num_bins must be >= 2"),
    ("compare-spec", ["compare", "--out", "{ws}/cmp", "--estimators", "renyi:5:alpha=abc"],
     None, "estimator 'renyi': option alpha needs a finite number (float), got 'abc'"),
    ("compare-k", ["compare", "--out", "{ws}/cmp", "--estimators", "iwae:five"], None, "K must be an integer"),
    # names, keys and flags (these passed before)
    ("likelihood", ["train", "--out", "{ws}/new", "--likelihood", "gausian"],
     None, "unknown likelihood 'gausian'; valid likelihoods: bernoulli, "),
    ("estimator", ["train", "--out", "{ws}/new", "--estimator", "iwea"],
     None, "unknown estimator 'iwea'; valid estimators: "),
    ("option-name", ["train", "--out", "{ws}/new", "--likelihood-option", "sigma=1"],
     None, "likelihood 'bernoulli' has no option 'sigma'"),
    ("binarization", ["train", "--out", "{ws}/new", "--binarization", "soft"],
     None, "unknown binarization 'soft'; valid: dynamic, fixed"),
    ("activation", ["train", "--out", "{ws}/new", "--activation", "gelu"],
     None, "unknown activation 'gelu'; valid: elu, relu, softplus, tanh"),
    ("config-typo", ["train", "--out", "{ws}/new", "--config", "{ws}/typo.toml"],
     lambda ws: (ws / "typo.toml").write_text("num_particle = 5\n"), "unknown config key 'num_particle'"),
    ("flag-type", ["train", "--out", "{ws}/new", "--epochs", "abc"],
     None, "argument --epochs: invalid int value: 'abc'"),
    ("flag-range", ["train", "--out", "{ws}/new", "--epochs", "0"], None, "epochs must be >= 1, got 0"),
    ("no-command", [], None, "the following arguments are required"),
    # data files
    ("npz-empty-train", [*NPZ, "{ws}/empty_train.npz"], None, "train is empty (shape (0, 16))"),
    ("npz-empty-test", [*NPZ, "{ws}/empty_test.npz"], None, "test is empty (shape (0, 16))"),
    ("npz-1d", [*NPZ, "{ws}/flat.npz"], None, "train has shape (320,); it needs one data point a row, [N, D]"),
    ("npz-no-test", [*NPZ, "{ws}/no_test.npz"], None, "lacks the array(s) test"),
    ("npz-mixed", [*NPZ, "{ws}/mixed.npz"], None, "train is uint8 but test is float32"),
    ("npz-missing", [*NPZ, "{ws}/nothing.npz"], None, "cannot read"),
    ("npz-support", [*NPZ, "{ws}/grey.npz"], None, "likelihood 'bernoulli': needs binary data (0 or 1)"),
    # where the run goes
    ("out-is-a-file", ["train", "--out", "{ws}/afile"], None, "afile is a file, not a folder"),
    ("out-under-a-file", ["train", "--out", "{ws}/afile/run"], None, "afile is a file, not a folder"),
    ("out-holds-a-run", ["train", "--out", "{ws}/run"], None, "already holds a run; resume it"),
    ("compare-out-is-a-file", ["compare", "--out", "{ws}/afile", "--estimators", "elbo"],
     None, "afile is a file, not a folder"),
    ("config-is-a-folder", ["train", "--out", "{ws}/new", "--config", "{ws}/run"], None, "cannot read config file"),
    # resuming
    ("resume-nothing", ["train", "--out", "{ws}/new", "--resume"], None, "cannot resume: "),
    ("resume-before-checkpoint", ["train", "--out", "{ws}/early", "--resume"],
     None, "stopped before its first checkpoint; start it afresh"),
    ("resume-changed-lr", [*RESUME, "--lr", "0.1"], None, "cannot resume with lr=0.1: the run used 0.001"),
    ("resume-fewer-epochs", RESUME, _ckpt(lambda s: s.update(epoch=3)),
     "cannot resume with epochs=2: the run has done 3"),
    # checkpoints
    ("ckpt-truncated", RESUME, lambda ws: _truncate(ws / "run" / "checkpoint.pt"), "is unreadable"),
    ("ckpt-truncated-evaluate", EVALUATE, lambda ws: _truncate(ws / "run" / "checkpoint.pt"), "is unreadable"),
    ("ckpt-missing-keys", RESUME, _ckpt(_strip_optimizer), "lacks optimizer: it is not a whole pyrovae checkpoint"),
    ("ckpt-missing-keys-evaluate", EVALUATE, _ckpt(_strip_optimizer), "lacks optimizer"),
    ("ckpt-optimizer-state", RESUME, _ckpt(_bad_moment), "exp_avg of parameter 0 is (3,)"),
    ("ckpt-optimizer-lr", RESUME, _ckpt(lambda s: s["optimizer"]["param_groups"][0].update(lr="abc")),
     "its optimizer has lr='abc'"),
    ("ckpt-rng-state", RESUME, _ckpt(_bad_rng), "its RNG state is not torch's"),
    ("ckpt-hostile", RESUME, _ckpt(_hostile), "holds a Python object (posix.system) besides tensors"),
    ("ckpt-hostile-evaluate", EVALUATE, _ckpt(_hostile), "pyrovae did not write it, and does not load such files"),
    ("ckpt-architecture", RESUME, lambda ws: _new_z_dim(ws / "run"), "does not fit this run's model"),
    ("ckpt-architecture-evaluate", EVALUATE, lambda ws: _new_z_dim(ws / "run"), "shape: "),
    # evaluate
    ("evaluate-not-a-run", ["evaluate", "{ws}/early"], None, "no checkpoint at"),
    ("evaluate-nothing", ["evaluate", "{ws}/nothing"], None, "is not a pyrovae run directory"),
    ("evaluate-samples", ["evaluate", "{ws}/run", "--num-samples", "0"], None, "--num-samples must be >= 1"),
    # evaluate --method ais
    ("ais-steps", AIS + ["--ais-steps", "0"], None, "AIS num_steps must be an integer >= 1, got 0"),
    ("ais-chains", AIS + ["--ais-chains", "0"], None, "AIS num_chains must be an integer >= 1, got 0"),
    ("ais-leapfrog", AIS + ["--hmc-steps", "0"], None, "AIS hmc_steps must be an integer >= 1, got 0"),
    ("ais-step-size", AIS + ["--step-size", "0"], None, "AIS step_size must be a number > 0, got 0.0"),
    ("ais-step-size-negative", AIS + ["--step-size", "-0.5"], None, "AIS step_size must be a number > 0, got -0.5"),
    ("ais-points", AIS + ["--points", "0"], None, "--points must be >= 1, got 0"),
    ("ais-init", AIS + ["--ais-init", "posterior"], None, "invalid choice: 'posterior' (choose from 'guide', 'prior')"),
    ("ais-flag-without-ais", ["evaluate", "{ws}/run", "--points", "3"], None, "--points go with --method ais"),
    ("ais-discrete", ["evaluate", "{ws}/sbn", "--method", "ais", "--points", "2", "--ais-steps", "2"],
     lambda ws: _train_sbn(ws / "sbn"), "latent site 'z1' is discrete"),
]  # fmt: skip


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root``: a file's bytes, None for a folder."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def one_line(capsys) -> str:
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert out == "", out
    return lines[0]


@pytest.mark.parametrize("argv, prepare, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_bad_input_is_one_line_and_changes_nothing(ws, capsys, argv, prepare, message, monkeypatch):
    monkeypatch.chdir(ws)  # where a hostile file would have written PWNED
    if prepare is not None:
        prepare(ws)
    before = snapshot(ws)
    capsys.readouterr()
    assert cli.main([a.format(ws=ws) for a in argv]) == 2
    line = one_line(capsys)
    assert line.startswith("pyrovae: error: ") and message in line, line
    assert "weights_only" not in line  # torch's advice to load without the safe loader, never repeated
    assert snapshot(ws) == before


@pytest.fixture
def read_only(monkeypatch):
    """``read_only(folder)``: nothing can be written under ``folder`` from now on. chmod does it
    for a user; root ignores modes, so there every write under it fails as a read-only file
    system would (EROFS), at the calls pyrovae writes through."""

    def make(folder: Path) -> None:
        folder.chmod(0o555)
        if os.geteuid() != 0:
            return
        root = folder.resolve()

        def under(path) -> bool:
            if isinstance(path, int):
                return False
            path = Path(os.fsdecode(path)).resolve()
            return path == root or root in path.parents

        def refuse(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

        real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir
        writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

        def fake_open(file, mode="r", *a, **k):
            if under(file) and any(c in mode for c in "wax+"):
                refuse(file)
            return real_open(file, mode, *a, **k)

        def fake_os_open(path, flags, *a, **k):
            if under(path) and flags & writes:
                refuse(path)
            return real_os_open(path, flags, *a, **k)

        def fake_mkdir(path, *a, **k):
            if under(path):
                refuse(path)
            return real_mkdir(path, *a, **k)

        monkeypatch.setattr(builtins, "open", fake_open)
        monkeypatch.setattr(io, "open", fake_open)
        monkeypatch.setattr(os, "open", fake_os_open)
        monkeypatch.setattr(os, "mkdir", fake_mkdir)

    yield make


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--out", "{ws}/empty", *TINY],
        ["train", "--out", "{ws}/empty/sub", *TINY],
        ["train", "--out", "{ws}/run", "--resume", "--epochs", "2", "--quiet"],
        ["evaluate", "{ws}/run", "--num-samples", "2"],
        ["evaluate", "{ws}/run", "--method", "ais", "--points", "2", "--ais-steps", "2"],
        ["compare", "--out", "{ws}/empty", "--estimators", "elbo", "--steps", "2"],
    ],
    ids=["train", "train-below", "resume", "evaluate", "evaluate-ais", "compare"],
)
def test_a_read_only_run_directory_is_one_line(ws, capsys, read_only, argv):
    (ws / "empty").mkdir()
    before = snapshot(ws)
    for folder in (ws / "run", ws / "empty"):
        read_only(folder)
    try:
        capsys.readouterr()
        assert cli.main([a.format(ws=ws) for a in argv]) == 2
        line = one_line(capsys)
    finally:
        for folder in (ws / "run", ws / "empty"):
            folder.chmod(0o755)
    assert line.startswith("pyrovae: error: cannot write in the run directory "), line
    assert snapshot(ws) == before
