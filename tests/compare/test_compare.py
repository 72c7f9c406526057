"""pyrovae compare: the grid, the report, and a comparison that survives a SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pyrovae import ConfigError, cli
from pyrovae.compare import EstimatorSpec, GridSpec, compare
from pyrovae.compare.report import markdown_table, rows

TINY = {
    "budget": {"steps": 30},
    "base": {"hidden": [16], "z_dim": 4, "batch_size": 150},
    "eval_num_samples": 20, "psis_samples": 100, "psis_points": 40, "snr_draws": 8, "snr_batch": 8,
    "gap_points": 4, "gap_steps": 5,
}  # fmt: skip


def test_estimator_specs():
    assert EstimatorSpec.parse("iwae:5") == EstimatorSpec("iwae", 5)
    s = EstimatorSpec.parse("renyi:5:alpha=0.5")
    assert (s.name, s.num_particles, dict(s.options), s.label) == ("renyi", 5, {"alpha": 0.5}, "renyi K=5 alpha=0.5")
    assert EstimatorSpec.parse({"name": "miwae", "num_particles": 2, "num_groups": 3}).slug == "miwae_K2_num_groups3"
    with pytest.raises(ConfigError, match="unknown estimator 'iwea'"):
        EstimatorSpec.parse("iwea:5")
    with pytest.raises(ConfigError, match="K must be an integer"):
        EstimatorSpec.parse("iwae:five")


def test_the_grid_is_the_product_with_one_budget_for_all():
    spec = GridSpec.from_dict({"estimators": ["elbo", "iwae:5"], "likelihoods": ["bernoulli", "gaussian"],
                               "seeds": [0, 1, 2], "budget": {"seconds": 30}})  # fmt: skip
    cells = spec.cells()
    assert len(cells) == 12 and len({c.id for c in cells}) == 12
    cfgs = [spec.cell_config(c) for c in cells]
    assert {c["max_seconds"] for c in cfgs} == {30.0} and {c["lr"] for c in cfgs} == {1e-3}
    with pytest.raises(ConfigError, match="budget needs exactly one of epochs, steps, seconds"):
        GridSpec.from_dict({"budget": {"minutes": 3}})
    with pytest.raises(ConfigError, match="base may not set estimator"):
        GridSpec.from_dict({"base": {"estimator": "iwae"}})
    with pytest.raises(
        ConfigError, match=r"unknown comparison key 'hidden' \(hidden: put run settings under \[base\]\)"
    ):
        GridSpec.from_dict({"hidden": [8]})


def test_a_small_comparison_writes_the_whole_report(tmp_path):
    spec = GridSpec.from_dict({**TINY, "estimators": ["elbo", "iwae:3", "dreg:3"], "seeds": [0, 1]})
    compare(spec, tmp_path)
    for name in ("report.md", "results.csv", "results.nc", "learning_curves.png", "snr_vs_k.png", "khat.png",
                 "samples.png", "comparison.toml"):  # fmt: skip
        assert (tmp_path / name).stat().st_size > 0, name
    report = (tmp_path / "report.md").read_text()
    assert "| bernoulli | dreg K=3 | 2 |" in report and "**" in report and "```toml" in report
    rows = (tmp_path / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + 6 and rows[0].startswith("id,estimator,label")
    import xarray as xr

    ds = xr.load_dataset(tmp_path / "results.nc")
    assert ds.sizes["cell"] == 6 and ds.sizes["point"] == 500 and ds.sizes["psis_point"] == 40
    assert set(ds["estimator"].values) == {"elbo", "iwae", "dreg"}
    result = json.loads((tmp_path / "cells" / "dreg_K3-bernoulli-seed1" / "result.json").read_text())
    assert result["steps"] == 30 and len(result["points"]["khat"]) == 40
    assert {"encoder", "decoder"} <= set(result["snr"][-1])
    # a second run finds every cell done and only rewrites the report
    before = (tmp_path / "cells" / "elbo_K1-bernoulli-seed0" / "result.json").stat().st_mtime_ns
    compare(spec, tmp_path)
    assert (tmp_path / "cells" / "elbo_K1-bernoulli-seed0" / "result.json").stat().st_mtime_ns == before
    with pytest.raises(ConfigError, match="holds a different comparison"):
        compare(GridSpec.from_dict({**TINY, "estimators": ["elbo"]}), tmp_path)


def test_ais_points_add_an_ais_column_and_is_minus_ais_on_the_same_points(tmp_path):
    spec = GridSpec.from_dict({**TINY, "estimators": ["elbo"], "seeds": [0], "ais_points": 6, "ais_steps": 8,
                               "ais_chains": 3, "ais_hmc_steps": 2})  # fmt: skip
    compare(spec, tmp_path)
    result = json.loads((tmp_path / "cells" / "elbo_K1-bernoulli-seed0" / "result.json").read_text())
    ais, idx = result["points"]["ais"], result["points"]["ais_index"]
    assert len(ais) == len(idx) == 6 and idx == sorted(set(idx)) and idx[-1] == 499  # spread over the test set
    is_points = [result["points"]["log_likelihood"][i] for i in idx]  # the IS estimate of the same points
    assert result["ais"]["is_minus_ais"] == pytest.approx(sum(is_points) / 6 - sum(ais) / 6, abs=1e-4)
    assert result["ais"]["ais"] == {"num_steps": 8, "num_chains": 3, "hmc_steps": 2}
    report = (tmp_path / "report.md").read_text()
    assert "| log p(x) AIS | IS - AIS |" in report and "AIS log p(x) (HMC, 8 steps, 3 chains" in report
    # without AIS the two columns are left out
    assert "AIS" not in markdown_table(rows([{**result, "ais": {}}]))
    # a specification written before the AIS keys existed reads as the same comparison without AIS
    saved = tmp_path / "comparison.toml"
    saved.write_text("".join(x for x in saved.read_text().splitlines(keepends=True) if not x.startswith("ais_")))
    assert (
        GridSpec.load(saved).to_dict() == GridSpec.from_dict({**TINY, "estimators": ["elbo"], "seeds": [0]}).to_dict()
    )
    with pytest.raises(ConfigError, match="holds a different comparison"):
        compare(spec, tmp_path)


def test_how_a_grid_runs_is_not_what_it_compares():
    spec = {**TINY, "estimators": ["elbo"], "seeds": [0]}
    moved = {**spec, "workers": 3, "base": {**TINY["base"], "device": "cpu", "compile": "default", "log_every": 7}}
    assert GridSpec.from_dict(moved).identity() == GridSpec.from_dict(spec).identity()
    other = {**spec, "base": {**TINY["base"], "z_dim": 5}}
    assert GridSpec.from_dict(other).identity() != GridSpec.from_dict(spec).identity()


def test_cells_run_in_several_processes(tmp_path):
    spec = GridSpec.from_dict({**TINY, "estimators": ["elbo", "stl"], "seeds": [0], "workers": 2})
    compare(spec, tmp_path)
    assert len(list((tmp_path / "cells").glob("*/result.json"))) == 2


def test_a_sigkilled_comparison_resumes_and_never_counts_a_partial_cell(tmp_path):
    args = [sys.executable, "-m", "pyrovae", "compare", "--out", str(tmp_path), "--estimators", "elbo",
            "iwae:2", "--seeds", "0", "--steps", "400", "--set", "hidden=[16]", "--set", "z_dim=4",
            "--eval-num-samples", "20", "--psis-samples", "100", "--snr-draws", "8", "--gap-points", "4",
            "--gap-steps", "5"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    second = tmp_path / "cells" / "iwae_K2-bernoulli-seed0"
    deadline = time.time() + 240
    # kill in the middle of the second cell: its training has written a checkpoint, no result yet
    while time.time() < deadline and not (second / "run" / "metrics.jsonl").exists():
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (tmp_path / "cells" / "elbo_K1-bernoulli-seed0" / "result.json").exists()
    assert second.exists() and not (second / "result.json").exists()
    assert not (tmp_path / "report.md").exists()
    first_done = (tmp_path / "cells" / "elbo_K1-bernoulli-seed0" / "result.json").stat().st_mtime_ns

    assert cli.main(args[3:]) == 0
    assert (second / "result.json").exists()
    # the finished cell was skipped; the partial one resumed from its checkpoint (or started again if
    # it was killed before its first): one stream of epochs to the budget either way
    assert (tmp_path / "cells" / "elbo_K1-bernoulli-seed0" / "result.json").stat().st_mtime_ns == first_done
    metrics = [json.loads(x) for x in (second / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == list(range(len(metrics))) and metrics[-1]["step"] == 400
    assert "iwae K=2" in Path(tmp_path / "report.md").read_text()
