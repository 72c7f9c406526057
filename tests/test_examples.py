"""The examples run, briefly, and print numbers that obey the bounds."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "examples"))

import quickstart  # noqa: E402
import your_own_model  # noqa: E402


def test_quickstart_one_short_epoch():
    out = quickstart.main(["--epochs", "1", "--num-samples", "20", "--test-points", "50"])
    assert set(out) == {"svi_iwae5", "torch_elbo"}
    assert all(-250 < v < -80 for v in out.values())


def test_your_own_model_bounds_are_ordered():
    out = your_own_model.main(["--steps", "150"])
    assert out["ELBO"] <= out["IWAE(8)"] <= out["exact log p(x)"] + 0.01
    assert abs(out["IS log p(x), K=2000"] - out["exact log p(x)"]) < 0.05
