"""Nothing of the user's is lost or mixed, tried for real: separate ``pyrovae`` processes on one
folder at once, a comparison's parent killed with SIGKILL, Ctrl-C on a grid of two workers. Each
process is checked by PID: a refused writer names the holder, no cell process outlives its grid,
and the next command resumes what a stop left.

The lock a process holds is read from the folder's ``.pyrovae-lock`` (the holder's PID) and
tested with ``flock``: a held lock is one a live process has.
"""

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pyrovae import cli
from pyrovae.compare import runner
from pyrovae.config import load as load_config
from pyrovae.run.atomic import json_text
from pyrovae.run.ownership import LOCK

PY = [sys.executable, "-m", "pyrovae"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
SMALL = ["--hidden", "8", "--z-dim", "2", "--eval-num-samples", "0", "--quiet"]
CELL = ["--set", "hidden=[16]", "--set", "z_dim=4", "--eval-num-samples", "10", "--psis-samples", "100",
        "--snr-draws", "4", "--gap-points", "2", "--gap-steps", "2"]  # fmt: skip


def start(*args: object) -> subprocess.Popen:
    """``pyrovae args`` in a new process group (so a test can signal it as a terminal would)."""
    return subprocess.Popen(
        [*PY, *map(str, args)], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    """Its exit status and stderr."""
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def holder(folder: Path) -> int | None:
    """The PID holding ``folder``'s lock, or None while no process holds it."""
    try:
        with open(folder / LOCK) as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                text = f.read().strip()
                return int(text) if text.isdigit() else None
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
            return None
    except FileNotFoundError:
        return None


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, ended but not yet reaped by its parent, is not running)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def wait_for(condition, timeout: float = 240, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        time.sleep(0.02)


def epochs(run: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def stopped():
    """``stopped(pid)``: SIGSTOP it (it keeps its lock, mid-run) until the test ends."""
    pids: list[int] = []

    def stop(pid: int) -> None:
        os.kill(pid, signal.SIGSTOP)
        pids.append(pid)

    yield stop
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # the test may have killed it
            os.kill(pid, signal.SIGCONT)


@pytest.fixture
def reap():
    """Every process a test starts is gone when it ends, whatever the test asserted."""
    procs: list[subprocess.Popen] = []
    yield procs.append
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc, flock and process groups")
class TestTwoWriters:
    def test_a_second_train_on_a_run_in_use_is_refused_naming_the_holder(self, tmp_path, stopped, reap):
        out = tmp_path / "run"
        a = start("train", "--out", out, "--epochs", "3", "--batch-size", "20", "--seed", "1", *SMALL)
        reap(a)
        wait_for(lambda: holder(out) == a.pid or a.poll() is not None, what="the first run's lock")
        stopped(a.pid)  # mid-run, lock held, for as long as the second takes
        b = subprocess.run([*PY, "train", "--out", str(out), "--epochs", "1", "--seed", "2", *SMALL],
                           env=ENV, capture_output=True, text=True, timeout=300)  # fmt: skip
        assert b.returncode == 2 and b.stdout == ""
        assert b.stderr.strip() == (f"pyrovae: error: the run directory {out} is in use by pyrovae process {a.pid}; "
                                    "wait for it to end or choose another folder")  # fmt: skip
        os.kill(a.pid, signal.SIGCONT)
        assert finish(a) == (0, "")
        assert load_config(out / "config.toml").seed == 1 and epochs(out) == [0, 1, 2, 3]  # A's run, A's alone
        c = subprocess.run([*PY, "train", "--out", str(out), "--seed", "2", *SMALL], env=ENV, capture_output=True,
                           text=True, timeout=300)  # fmt: skip
        assert c.returncode == 2 and "already holds a run; resume it" in c.stderr
        assert load_config(out / "config.toml").seed == 1 and epochs(out) == [0, 1, 2, 3]

    def test_two_trains_started_together_on_a_new_folder_one_wins_whole(self, tmp_path, reap):
        """The reproducer: the second started 0.5 s after the first, on a folder neither has made yet."""
        out = tmp_path / "run"
        a = start("train", "--out", out, "--epochs", "2", "--batch-size", "100", "--seed", "1", *SMALL)
        reap(a)
        time.sleep(0.5)
        b = start("train", "--out", out, "--epochs", "2", "--batch-size", "100", "--seed", "2", *SMALL)
        reap(b)
        results = {1: finish(a), 2: finish(b)}
        winners = [seed for seed, (code, _) in results.items() if code == 0]
        assert len(winners) == 1, results
        code, err = results[3 - winners[0]]
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert "is in use by pyrovae process" in err or "already holds a run" in err
        assert load_config(out / "config.toml").seed == winners[0] and epochs(out) == [0, 1, 2]
        state = torch.load(out / "checkpoint.pt", weights_only=True)
        assert state["run_id"] == json.loads((out / "identity.json").read_text())["run_id"]

    def test_a_second_compare_on_a_grid_in_use_is_refused(self, tmp_path, stopped, reap):
        out = tmp_path / "grid"
        args = ["compare", "--out", out, "--estimators", "elbo", "--seeds", "0", "--steps", "20", *CELL]
        a = start(*args)
        reap(a)
        wait_for(lambda: holder(out) == a.pid or a.poll() is not None, what="the first comparison's lock")
        stopped(a.pid)
        b = subprocess.run([*PY, *map(str, args)], env=ENV, capture_output=True, text=True, timeout=300)
        assert b.returncode == 2
        assert b.stderr.strip() == (f"pyrovae: error: the comparison directory {out} is in use by pyrovae process "
                                    f"{a.pid}; wait for it to end or choose another folder")  # fmt: skip
        os.kill(a.pid, signal.SIGCONT)
        assert finish(a)[0] == 0 and (out / "report.md").exists()


class Planned(Exception):
    """Raised in place of running the cells: the plan was all a test wanted."""


def _resumed_on_rerun(args: list, monkeypatch, run: bool = True) -> dict[str, bool | None]:
    """Run the same comparison again, in this process with one worker (how a grid runs is not part
    of what it is): what each cell was (True: resumed from its checkpoint, False: started, None: done).
    With ``run=False`` only the plan is made, no cell runs."""
    seen: dict[str, bool | None] = {}
    real = runner._prepare

    def spy(cell_dir: Path) -> bool | None:
        seen[cell_dir.name] = real(cell_dir)
        return seen[cell_dir.name]

    def planned(*args: object) -> None:
        raise Planned

    monkeypatch.setattr(runner, "_prepare", spy)
    if not run:
        monkeypatch.setattr(runner, "_run_cells", planned)
    argv = [str(a) for a in args]
    argv[argv.index("--workers") + 1] = "1"
    if run:
        assert cli.main(argv) == 0
    else:
        with pytest.raises(Planned):
            cli.main(argv)
    return seen


def _logged(run: Path) -> bool:
    metrics = run / "metrics.jsonl"
    return metrics.exists() and metrics.stat().st_size > 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc, flock, PR_SET_PDEATHSIG")
class TestAGridStops:
    STEPS = 3000  # some seconds of training a cell: time to signal it mid-run

    def _grid(self, out: Path, estimators: list[str], seeds: list[int]) -> tuple[list, list[Path]]:
        args = ["compare", "--out", out, "--estimators", *estimators, "--seeds", *seeds, "--steps", self.STEPS,
                "--workers", "2", *CELL, "--set", "batch_size=20"]  # fmt: skip
        # in the grid's order (estimator, then seed): with two workers the first two start, the rest wait
        names = {"elbo": "elbo_K1", "iwae:2": "iwae_K2"}
        runs = [out / "cells" / f"{names[e]}-bernoulli-seed{s}" / "run" for e in estimators for s in seeds]
        return args, runs

    @staticmethod
    def _training(proc: subprocess.Popen, runs: list[Path]) -> None:
        """Until each run's process holds its lock and has logged its first line (the untrained
        model's bound, written inside the training loop, where a signal is answered with a
        checkpoint; before the loop a signal stops a run that has none, which starts again)."""
        training = lambda: all(holder(r) and _logged(r) for r in runs)  # noqa: E731
        wait_for(lambda: training() or proc.poll() is not None, what="cells past their first epoch")
        assert proc.poll() is None, finish(proc)

    def test_its_cells_die_with_a_killed_parent_and_the_next_compare_resumes_them(self, tmp_path, reap, monkeypatch):
        out = tmp_path / "grid"
        args, runs = self._grid(out, ["elbo", "iwae:2"], [0])
        proc = start(*args)
        reap(proc)
        self._training(proc, runs)
        workers = [holder(r) for r in runs]
        assert proc.pid not in workers and len(set(workers)) == 2  # two cell processes, both the grid's
        os.kill(proc.pid, signal.SIGKILL)  # the parent alone: its cells must follow it
        proc.wait()
        wait_for(lambda: not any(alive(w) for w in workers), timeout=90, what="the orphaned cells to end")
        assert not (out / "report.md").exists() and not any((r.parent / "result.json").exists() for r in runs)
        assert all((r / "checkpoint.pt").exists() for r in runs)  # each saved a checkpoint as it stopped
        # the next compare resumes both (tests/compare/test_compare.py runs such a resume to the budget)
        assert _resumed_on_rerun(args, monkeypatch, run=False) == {r.parent.name: True for r in runs}
        for r in runs:  # each checkpoint is a mid-run state of its own cell
            assert 0 < torch.load(r / "checkpoint.pt", weights_only=True)["step"] < self.STEPS

    def test_ctrl_c_stops_the_running_and_the_queued_cells_and_exits(self, tmp_path, reap, monkeypatch):
        out = tmp_path / "grid"
        args, runs = self._grid(out, ["elbo"], [0, 1, 2])  # three cells, two workers: two run, one waits
        proc = start(*args)
        reap(proc)
        self._training(proc, runs[:2])
        workers = [holder(r) for r in runs[:2]]
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole process group
        code, err = finish(proc, timeout=120)
        assert code == 130, err
        assert err.strip().splitlines()[-1] == (
            "pyrovae: comparison interrupted by SIGINT: finished cells are kept and the running ones saved a "
            "checkpoint; run the same pyrovae compare command again to resume"
        )
        assert not any(alive(w) for w in workers)
        assert all((r / "checkpoint.pt").exists() for r in runs[:2])
        assert not any(r.exists() for r in runs[2:])  # the queued cells never started
        # the next compare resumes the two and starts the third
        seen = _resumed_on_rerun(args, monkeypatch, run=False)
        assert seen == {**{r.parent.name: True for r in runs[:2]}, **{r.parent.name: False for r in runs[2:]}}


def test_evaluate_scores_the_best_checkpoint_and_names_it(tmp_path, capsys):
    """Under early stopping the run reports best.pt: evaluate scores that model, says so, and
    every file it writes names it (it used to score the last checkpoint)."""
    out = tmp_path / "run"
    argv = ["train", "--out", str(out), "--hidden", "16", "--z-dim", "4", "--batch-size", "500", "--epochs", "30",
            "--lr", "0.1", "--quiet"]  # fmt: skip
    config = tmp_path / "c.toml"
    config.write_text("validation = 400\npatience = 2\neval_num_samples = 5\n")
    assert cli.main([*argv, "--config", str(config)]) == 0
    best = torch.load(out / "best.pt", weights_only=True)["epoch"]
    last = torch.load(out / "checkpoint.pt", weights_only=True)["epoch"]
    assert best < last
    capsys.readouterr()
    assert cli.main(["evaluate", str(out), "--num-samples", "5"]) == 0
    assert f"scored best.pt, the model of epoch {best}" in capsys.readouterr().out
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["checkpoint"] == "best.pt" and evaluation["model_epoch"] == best
    assert cli.main(["evaluate", str(out), "--method", "ais", "--points", "2", "--ais-steps", "3"]) == 0
    ais = json.loads((out / "ais.json").read_text())
    assert ais["checkpoint"] == "best.pt" and ais["model_epoch"] == best


def test_a_data_path_with_a_newline_is_escaped_and_the_run_resumes(tmp_path, capsys):
    data = tmp_path / 'odd "name"\nwith a newline.npz'
    binary = (np.random.default_rng(0).uniform(size=(40, 16)) < 0.5).astype(np.float32)
    np.savez(data, train=binary, test=binary[:8])
    out = tmp_path / "run"
    base = ["--out", str(out), "--epochs", "1", "--batch-size", "10", *SMALL]
    assert cli.main(["train", *base, "--dataset", "npz", "--data-path", str(data)]) == 0
    assert load_config(out / "config.toml").data_path == str(data)  # written escaped, read back the same
    assert cli.main(["train", "--out", str(out), "--resume", "--epochs", "2", "--quiet"]) == 0
    assert cli.main(["evaluate", str(out), "--num-samples", "2"]) == 0
    assert epochs(out) == [0, 1, 2]


def test_json_is_written_with_nan_as_null():
    text = json_text({"test_bound": float("nan"), "khat": [float("inf"), 0.5]})
    assert text == '{"test_bound": null, "khat": [null, 0.5]}' and json.loads(text)["test_bound"] is None


@pytest.mark.parametrize("failure", ["torch", "os"])
def test_a_disk_full_during_a_checkpoint_is_one_line_naming_it_and_the_last_is_intact(
    tmp_path, capsys, monkeypatch, failure
):
    """torch's writer reports a full disk as ``RuntimeError: ... unexpected pos``, the file system
    as ENOSPC: either way one line naming the checkpoint, and the last good one is kept."""
    out = tmp_path / "run"
    assert cli.main(["train", "--out", str(out), "--epochs", "1", "--batch-size", "500", *SMALL]) == 0
    before = (out / "checkpoint.pt").read_bytes()

    def full(obj, f, *a, **k):
        f.write(b"PK\x03\x04 part of a checkpoint")
        if failure == "torch":
            raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 4160 vs 4054")
        raise OSError(28, os.strerror(28))

    monkeypatch.setattr(torch, "save", full)
    monkeypatch.setattr("shutil.disk_usage", lambda p: type("U", (), {"free": 0})())
    capsys.readouterr()
    assert cli.main(["train", "--out", str(out), "--resume", "--epochs", "2", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(out / "checkpoint.pt") in err, err
    assert "disk is full" in err or "No space left on device" in err
    assert (out / "checkpoint.pt").read_bytes() == before
    assert not list(out.glob("*.tmp"))
