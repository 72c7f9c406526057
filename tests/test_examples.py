"""The examples run, briefly, and print numbers that obey the bounds."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "examples"))

import quickstart  # noqa: E402
import your_own_model  # noqa: E402
from own_estimator import tutorial  # noqa: E402


def test_quickstart_one_short_epoch():
    out = quickstart.main(["--epochs", "1", "--num-samples", "20", "--test-points", "50"])
    assert set(out) == {"svi_iwae5", "torch_elbo"}
    assert all(-250 < v < -80 for v in out.values())


def test_your_own_model_bounds_are_ordered():
    out = your_own_model.main(["--steps", "150"])
    assert out["ELBO"] <= out["IWAE(8)"] <= out["exact log p(x)"] + 0.01
    assert abs(out["IS log p(x), K=2000"] - out["exact log p(x)"]) < 0.05


def test_the_tutorial_checks_its_estimator_and_compares_it_on_a_grid(tmp_path):
    out = tutorial.main(["--small", "--steps", "5", "--seeds", "0", "--out", str(tmp_path / "grid")])
    assert out["check"].passed
    assert [r["label"] for r in out["rows"]] == ["vargrad:VarGrad K=5", "elbo K=1", "iwae K=5", "dreg K=5"]
    assert all(float(r["test_elbo"]) <= float(r["test_iwae_bound"]) + 1e-6 for r in out["rows"][2:])
    assert "| estimator | `vargrad:VarGrad` | (a loose module) | - |" in out["report"]
