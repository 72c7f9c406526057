"""compare's Ray backend: a local Ray by itself, a killed grid resumes, results equal the process backend's."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from pyrovae import ConfigError, cli
from pyrovae.compare import GridSpec, compare
from pyrovae.compare.grid import EXECUTION_BASE_KEYS

ray = pytest.importorskip("ray")

# several processes of their own (torchrun, a local Ray): one xdist worker runs these files' tests in turn
pytestmark = pytest.mark.xdist_group("processes")

ARGS = ["--estimators", "elbo", "iwae:2", "--seeds", "0", "--steps", "300", "--set", "hidden=[16]", "--set",
        "z_dim=4", "--eval-num-samples", "20", "--psis-samples", "100", "--snr-draws", "8", "--gap-points", "4",
        "--gap-steps", "5"]  # fmt: skip
CELLS = ("elbo_K1-bernoulli-seed0", "iwae_K2-bernoulli-seed0")
TIMES = {"seconds", "train_seconds", "seconds_per_epoch", "diagnostics_seconds", "seconds_ais", "seconds_is"}


def _without_times(value):
    """A cell's result without wall-clock times, which differ from run to run, and without where it ran (a
    GPU-less Ray cell records device "cpu", the process backend the grid's "auto")."""
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items() if k not in TIMES and k not in EXECUTION_BASE_KEYS}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


def test_a_killed_ray_grid_resumes_each_cell_done_once_and_equals_the_process_backend(tmp_path):
    out = tmp_path / "ray"
    # each cell takes both CPUs of the local Ray, so the cells run one after the other
    args = [sys.executable, "-m", "pyrovae", "compare", "--out", str(out), "--backend", "ray", "--cell-cpus", "2",
            *ARGS]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300

    def state():
        done = [c for c in CELLS if (out / "cells" / c / "result.json").exists()]
        started = [c for c in CELLS if c not in done and (out / "cells" / c / "run" / "metrics.jsonl").exists()]
        return done, started

    # kill the driver and its local Ray while one cell is done and the other is training
    while True:
        done, started = state()
        if len(done) == 1 and started:
            break
        assert time.time() < deadline and proc.poll() is None, "the grid ended before it could be killed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    (first,), (second,) = state()
    first_done = (out / "cells" / first / "result.json").stat().st_mtime_ns
    assert not (out / "report.md").exists()

    assert cli.main(["compare", "--out", str(out), "--backend", "ray", "--cell-cpus", "2", *ARGS]) == 0
    assert not ray.is_initialized()  # the local Ray it started is stopped again
    assert (out / "cells" / first / "result.json").stat().st_mtime_ns == first_done  # never redone
    metrics = [json.loads(x) for x in (out / "cells" / second / "run" / "metrics.jsonl").read_text().splitlines()]
    # resumed from its checkpoint (started again if killed before one): one stream of epochs, once
    assert [m["epoch"] for m in metrics] == list(range(len(metrics))) and metrics[-1]["step"] == 300

    # the process backend on the same seeds gives the same results (threads as Ray gave each cell)
    proc_out = tmp_path / "process"
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert cli.main(["compare", "--out", str(proc_out), "--workers", "1", *ARGS]) == 0
    finally:
        torch.set_num_threads(threads)
    for cell in CELLS:
        a, b = (json.loads((d / "cells" / cell / "result.json").read_text()) for d in (out, proc_out))
        assert _without_times(a) == _without_times(b), cell
        assert (a["config"]["device"], b["config"]["device"]) == ("cpu", "auto")  # no GPU asked of Ray: none used
    rows = [(d / "results.csv").read_text().splitlines() for d in (out, proc_out)]
    assert len(rows[0]) == len(rows[1]) == 3


def test_a_ray_grid_resumes_under_the_process_backend_and_the_other_way(tmp_path):
    spec = {"budget": {"steps": 5}, "base": {"hidden": [8], "z_dim": 2, "batch_size": 500}, "eval_num_samples": 5,
            "psis_samples": 100, "psis_points": 4, "snr_draws": 4, "snr_batch": 4, "gap_points": 0,
            "estimators": ["elbo"], "seeds": [0]}  # fmt: skip
    compare(GridSpec.from_dict({**spec, "backend": "ray", "cell_cpus": 2}), tmp_path)
    done = (tmp_path / "cells" / "elbo_K1-bernoulli-seed0" / "result.json").stat().st_mtime_ns
    compare(GridSpec.from_dict({**spec, "workers": 2}), tmp_path)  # how it runs is not what it compares
    assert (tmp_path / "cells" / "elbo_K1-bernoulli-seed0" / "result.json").stat().st_mtime_ns == done


def test_without_ray_the_backend_is_one_line_naming_the_pip_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails
    assert cli.main(["compare", "--out", str(tmp_path / "c"), "--backend", "ray", *ARGS]) == 2
    err = capsys.readouterr().err.strip()
    assert err == 'pyrovae: error: compare\'s backend "ray" needs Ray, an optional extra: pip install "pyrovae[ray]"'
    assert not (tmp_path / "c").exists()
    with pytest.raises(ConfigError, match="unknown backend 'dask'; valid: process, ray"):
        GridSpec.from_dict({"backend": "dask"})
