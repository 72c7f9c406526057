"""``pyrovae evaluate RUN --method ais``: AIS beside IS on the same test points, into ais.json."""

import json

import pytest

from pyrovae import cli

TINY = ["--epochs", "1", "--hidden", "32", "--z-dim", "4", "--eval-num-samples", "0", "--quiet"]


def test_evaluate_with_ais_writes_both_estimates_on_the_same_points(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", "--out", str(run), *TINY]) == 0
    capsys.readouterr()
    argv = ["evaluate", str(run), "--method", "ais", "--points", "12", "--ais-steps", "30", "--ais-chains", "4",
            "--hmc-steps", "2", "--num-samples", "200"]  # fmt: skip
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    r = json.loads((run / "ais.json").read_text())
    assert r["num_points"] == 12 and r["is_samples"] == 200
    assert r["ais"] == {"num_steps": 30, "num_chains": 4, "hmc_steps": 2}
    ais, imp = r["points"]["ais"], r["points"]["is"]
    assert len(ais) == len(imp) == 12
    assert r["log_likelihood_ais"] == pytest.approx(sum(ais) / 12, abs=1e-4)
    assert r["log_likelihood_is"] == pytest.approx(sum(imp) / 12, abs=1e-4)
    assert r["is_minus_ais"] == pytest.approx(r["log_likelihood_is"] - r["log_likelihood_ais"], abs=1e-4)
    assert 0 < r["acceptance"] <= 1
    assert f"{r['log_likelihood_ais']:.2f} nats" in out and f"IS - AIS = {r['is_minus_ais']:+.2f} nats" in out
    assert "first 12 test points" in out
    assert not (run / "evaluation.json").exists()  # the full evaluation is --method is
