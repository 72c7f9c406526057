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
from pyrovae.run.ownership import LOCK, MARKER

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
    for name in ("config.toml", MARKER):  # a run killed before its first checkpoint
        shutil.copy(finished / name, tmp_path / "early" / name)
    (tmp_path / "user").mkdir()  # a user's folder, not pyrovae's
    (tmp_path / "user" / "notes.txt").write_text("a user's notes\n")
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


def _file(name, content):
    """Prepare: write ``content`` (text or bytes) to ``name`` in the workspace."""
    data = content.encode() if isinstance(content, str) else content
    return lambda ws: (ws / name).write_bytes(data)


def _append(name, data):
    return lambda ws: (ws / name).write_bytes((ws / name).read_bytes() + data)


def _edit_config(old, new):
    def edit(ws):
        config = ws / "run" / "config.toml"
        assert old in config.read_text()
        config.write_text(config.read_text().replace(old, new))

    return edit


def _other_runs_checkpoint(ws):
    assert cli.main(["train", "--out", str(ws / "other"), *TINY]) == 0
    shutil.copy(ws / "other" / "checkpoint.pt", ws / "run" / "checkpoint.pt")


def _replaced_npz(ws):
    """A run on an .npz file whose values are then replaced (same shapes, same name)."""
    binary = (np.random.default_rng(1).uniform(size=(20, 16)) < 0.5).astype(np.float32)
    np.savez(ws / "data.npz", train=binary, test=binary[:5])
    assert cli.main([*NPZ[:2], str(ws / "npzrun"), *NPZ[3:], str(ws / "data.npz"), *TINY]) == 0
    np.savez(ws / "data.npz", train=1 - binary, test=binary[:5])


def _npz_header(shape):
    """An .npz whose one array's header claims ``shape`` over a few bytes of data."""
    import zipfile

    def write(ws):
        header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}".encode()
        header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
        body = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + bytes(64)
        with zipfile.ZipFile(ws / "huge.npz", "w") as z:
            z.writestr("train.npy", body)
            z.writestr("test.npy", body)

    return write


def _npz_objects(ws):
    np.savez(ws / "objects.npz", train=np.array([Hostile()], dtype=object), test=np.zeros((2, 2)))


def _cosine_run(ws):
    assert cli.main(["train", "--out", str(ws / "cosine"), "--lr-schedule", "cosine", *TINY]) == 0


def _scheduler_state(ws):
    _cosine_run(ws)
    edit_checkpoint(ws / "cosine" / "checkpoint.pt", lambda s: s["scheduler"].update(last_epoch="one"))


RESUME = ["train", "--out", "{ws}/run", "--resume", "--epochs", "2", "--quiet"]
AIS = ["evaluate", "{ws}/run", "--method", "ais", "--points", "2"]
EVALUATE = ["evaluate", "{ws}/run", "--num-samples", "2"]
NPZ = ["train", "--out", "{ws}/new", "--dataset", "npz", "--data-path"]
NEW = ["train", "--out", "{ws}/new"]
GRID = ["compare", "--out", "{ws}/cmp", "--config", "{ws}/grid.toml"]
CMP = ["compare", "--out", "{ws}/cmp", "--estimators", "elbo", "--steps", "2"]

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
    ("config-is-a-folder", ["train", "--out", "{ws}/new", "--config", "{ws}/run"], None, "run is a folder, not a file"),
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
    ("ckpt-architecture", RESUME, lambda ws: _new_z_dim(ws / "run"),
     "was changed since the run started (z_dim 2 -> 4)"),
    ("ckpt-architecture-evaluate", EVALUATE, lambda ws: _new_z_dim(ws / "run"),
     "cannot evaluate {ws}/run: its config.toml was changed since the run started (z_dim 2 -> 4)"),
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
    # numbers: type, range and finiteness, checked where they are read (issue 19)
    ("grid-epochs-fraction", GRID, _file("grid.toml", "[budget]\nepochs = 1.7\n"),
     "budget epochs needs an integer >= 1, got 1.7"),
    ("grid-epochs-inf", GRID, _file("grid.toml", "[budget]\nepochs = inf\n"),
     "budget epochs needs a finite number, got inf"),
    ("grid-workers-string", GRID, _file("grid.toml", 'workers = "2"\n'),
     "comparison key 'workers' needs an integer (int), got '2'"),
    ("grid-seeds-int", GRID, _file("grid.toml", "seeds = 5\n"), "comparison key 'seeds' needs a list"),
    ("grid-estimators-int", GRID, _file("grid.toml", "estimators = [1]\n"), "comparison key 'estimators' needs"),
    ("grid-likelihoods-string", GRID, _file("grid.toml", 'likelihoods = "bernoulli"\n'),
     "comparison key 'likelihoods' needs a list"),
    ("grid-seeds-twice", GRID, _file("grid.toml", "seeds = [0, 0]\n"), "seed 0 is listed twice; list each once"),
    ("grid-snr-epochs", GRID, _file("grid.toml", "snr_epochs = [5]\n[budget]\nepochs = 2\n"),
     "snr_epochs must be epochs of the run (1 .. 2 with budget epochs), got [5]"),
    ("grid-psis-points", GRID, _file("grid.toml", "psis_points = 0\n"), "psis_points must be >= 1, got 0"),
    ("grid-snr-batch", GRID, _file("grid.toml", "snr_batch = 0\n"), "snr_batch must be >= "),
    ("grid-not-utf8", GRID, _file("grid.toml", b"# caf\xe9\n"), "is not UTF-8"),
    ("compare-seconds-nan", ["compare", "--out", "{ws}/cmp", "--seconds", "nan"], None,
     "budget seconds needs a finite number, got nan"),
    ("compare-seconds-inf", ["compare", "--out", "{ws}/cmp", "--seconds", "inf"], None,
     "budget seconds needs a finite number, got inf"),
    ("compare-gap-points", [*CMP, "--gap-points", "-3"], None, "gap_points must be >= "),
    ("compare-snr-draws", [*CMP, "--snr-draws", "0"], None, "snr_draws must be >= "),
    ("compare-eval-samples", [*CMP, "--eval-num-samples", "0"], None, "eval_num_samples must be >= "),
    ("adam-eps-inf", [*NEW, "--adam-eps", "inf"], None, "adam_eps"),
    ("max-seconds-nan", [*NEW, "--max-seconds", "nan"], None, "max_seconds"),
    ("seed-past-64-bits", [*NEW, "--seed", str(2**64)], None, "seed"),
    ("num-particles-memory", [*NEW, "--num-particles", "10000000"], None,
     "GiB (a step's activations: 10,000,000 particles x 100 points), more than the"),
    ("z-dim-memory", [*NEW, "--z-dim", "1000000000"], None, "GiB (an evaluation chunk: "),
    ("device-meta", [*NEW, "--device", "meta"], None, "device 'meta'"),
    ("device-xla", [*NEW, "--device", "xla"], None, "device 'xla'"),
    ("pyro-renyi-alpha-1", [*NEW, "--estimator", "pyro.RenyiELBO", "--estimator-option", "alpha=1"], None, "alpha"),
    ("pyro-rws-k1", [*NEW, "--estimator", "pyro.ReweightedWakeSleep", "--num-particles", "1"], None,
     "pyro.infer.ReweightedWakeSleep: Reweighted Wake Sleep needs to be run with more than one particle"),
    ("pyro-jit", [*NEW, "--estimator", "pyro.JitTrace_ELBO"], None,
     "Pyro's JIT ELBOs trace the loss with torch.jit, which cannot hold the VAE's network weights; use "
     "'pyro.Trace_ELBO'"),
    ("pyro-trace-k0", [*NEW, "--estimator", "pyro.Trace_ELBO", "--num-particles", "0"], None, "num_particles"),
    # files: read as UTF-8, hashed or sized before they are parsed
    ("config-not-utf8", [*NEW, "--config", "{ws}/latin.toml"], _file("latin.toml", b"# caf\xe9\n"), "is not UTF-8"),
    ("config-dev-zero", [*NEW, "--config", "/dev/zero"], None, "/dev/zero"),
    ("run-config-not-utf8", RESUME, _append("run/config.toml", b"# \xff\n"), "is not UTF-8"),
    ("metrics-not-utf8", RESUME, _append("run/metrics.jsonl", b"\xff\n"), "is not UTF-8"),
    ("data-path-not-utf8", [*NPZ, "{ws}/caf\udce9.npz"], None, "UTF-8"),
    ("npz-header-huge", [*NPZ, "{ws}/huge.npz"], _npz_header((10**9, 784)), "(1000000000, 784)"),
    ("npz-objects", [*NPZ, "{ws}/objects.npz"], _npz_objects, "object"),
    # tracking and Ray: checked with a short timeout before any file is written
    ("tensorboard-uri-file", [*NEW, "--tracking", "tensorboard", "--tracking-uri", "{ws}/afile"],
     None, "is a file, not a folder for TensorBoard"),
    ("mlflow-unreachable", [*NEW, "--tracking", "mlflow", "--tracking-uri", "http://127.0.0.1:1"],
     None, "cannot reach the MLflow tracking server at http://127.0.0.1:1"),
    ("ray-unreachable", ["compare", "--out", "{ws}/cmp", "--backend", "ray", "--address", "127.0.0.1:1"],
     None, "cannot reach the Ray cluster at 127.0.0.1:1"),
    # a folder that is not pyrovae's, or not of this kind
    ("out-user-folder", [*NEW[:2], "{ws}/user", *TINY],
     None, "is a folder pyrovae did not create (it holds notes.txt)"),
    ("compare-out-user-folder", ["compare", "--out", "{ws}/user", "--estimators", "elbo"],
     None, "is a folder pyrovae did not create (it holds notes.txt)"),
    ("compare-out-a-run", ["compare", "--out", "{ws}/run", "--estimators", "elbo"],
     None, "is a pyrovae run directory, not a comparison directory"),
    ("evaluate-user-folder", ["evaluate", "{ws}/user"], None, "is not a pyrovae run directory"),
    # resuming a run that is no longer the one that started
    ("resume-edited-estimator", RESUME, _edit_config('estimator = "elbo"', 'estimator = "iwae"'),
     'its config.toml was changed since the run started (estimator "elbo" -> "iwae")'),
    ("resume-edited-seed", RESUME, _edit_config("seed = 0", "seed = 7"), "(seed 0 -> 7)"),
    ("evaluate-edited-config", EVALUATE, _edit_config("seed = 0", "seed = 7"), "cannot evaluate"),
    ("resume-other-checkpoint", RESUME, _other_runs_checkpoint, "its checkpoint.pt belongs to another run"),
    ("resume-replaced-data", ["train", "--out", "{ws}/npzrun", "--resume", "--epochs", "2", "--quiet"],
     _replaced_npz, "changed since the run started (another fingerprint)"),
    ("resume-cosine-more-epochs", ["train", "--out", "{ws}/cosine", "--resume", "--epochs", "3", "--quiet"],
     _cosine_run, "cosine"),
    ("ckpt-scheduler-state", ["train", "--out", "{ws}/cosine", "--resume", "--epochs", "1", "--max-steps", "4",
                              "--quiet"],
     _scheduler_state, "its learning-rate schedule is not at epoch 1"),
]  # fmt: skip


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root``: a file's bytes, None for a folder; the lock file of a folder
    pyrovae made is left out (each writer puts its PID there), a lock file elsewhere is not."""
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
        if not (p.name == LOCK and (p.parent / MARKER).is_file())
    }


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
    assert line.startswith("pyrovae: error: ") and message.replace("{ws}", str(ws)) in line, line
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
    kind = "comparison" if argv[0] == "compare" else "run"
    assert line.startswith(f"pyrovae: error: cannot write in the {kind} directory "), line
    assert snapshot(ws) == before
