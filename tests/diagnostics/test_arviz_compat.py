"""The one adapter over ArviZ's PSIS, for arviz 0.x (Python 3.11) and arviz 1.x (Python >= 3.12)."""

import json
import os
import subprocess
import types
from pathlib import Path

import numpy as np
import pytest

from pyrovae.diagnostics import arviz_compat

ADAPTER = Path(arviz_compat.__file__)


def _log_weights():
    rng = np.random.default_rng(0)
    light = rng.normal(0, 0.3, (3, 1000))
    heavy = np.log(rng.pareto(1.25, (3, 1000)) + 1.0)
    return np.concatenate([light, heavy])


def test_the_1x_call_gets_negated_log_weights(monkeypatch):
    """arviz_stats' psislw takes log-likelihood-like values: the adapter must negate."""
    seen = {}

    def psislw(ary, r_eff=1, axis=-1):
        seen["ary"], seen["r_eff"], seen["axis"] = ary, r_eff, axis
        return -ary, np.zeros(ary.shape[0])

    monkeypatch.setattr(arviz_compat, "array_stats", types.SimpleNamespace(psislw=psislw))
    lw = _log_weights()
    smoothed, khat = arviz_compat.psislw(lw)
    assert np.array_equal(seen["ary"], -lw) and seen["r_eff"] == 1.0 and seen["axis"] == -1
    assert np.array_equal(smoothed, lw) and khat.shape == (6,)


@pytest.mark.skipif(not os.environ.get("PYROVAE_ARVIZ1_PYTHON"),
                    reason="set PYROVAE_ARVIZ1_PYTHON to a Python >= 3.12 with arviz >= 1 (.ci/run does)")  # fmt: skip
def test_arviz_1x_gives_the_khat_of_arviz_0x(tmp_path):
    lw = _log_weights()
    np.save(tmp_path / "lw.npy", lw)
    script = f"""
import importlib.util, json, numpy as np, arviz
spec = importlib.util.spec_from_file_location("arviz_compat", {str(ADAPTER)!r})
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
s, k = mod.psislw(np.load({str(tmp_path / "lw.npy")!r}))
print(json.dumps({{"arviz": arviz.__version__, "khat": k.tolist(), "lse": np.log(np.exp(s).sum(-1)).tolist()}}))
"""
    out = subprocess.run([os.environ["PYROVAE_ARVIZ1_PYTHON"], "-c", script], capture_output=True, text=True,
                         check=True)  # fmt: skip
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert int(result["arviz"].split(".")[0]) >= 1
    _, khat_0x = arviz_compat.psislw(lw)  # this interpreter: arviz 0.x
    assert np.allclose(result["khat"], khat_0x, atol=0.05)
    assert np.allclose(result["lse"], 0.0, atol=1e-8)  # normalized smoothed weights, same sign
