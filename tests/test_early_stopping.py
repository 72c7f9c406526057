"""A validation split carved from the training set, and early stopping on its bound."""

import json

import pytest
import torch

from pyrovae import ConfigError
from pyrovae.run import RunDir, train

TINY = {"hidden": [16], "z_dim": 4, "eval_num_samples": 0, "batch_size": 500}


def test_a_validation_split_is_held_out_and_scored(tmp_path):
    result = train({**TINY, "epochs": 1, "validation": 400}, tmp_path / "r")
    assert result.metrics[1]["step"] == 9  # 4,100 training points left, batches of 500
    assert result.metrics[1]["valid_bound"] < 0 and "test_bound" in result.metrics[1]


def test_early_stopping_stops_after_patience_and_evaluates_the_best_model(tmp_path):
    """A large learning rate makes the validation bound stall: the run stops ``patience``
    evaluations after its best one, keeps that model in best.pt and evaluates it."""
    weights = {}
    result = train({**TINY, "epochs": 30, "validation": 400, "patience": 2, "lr": 0.1, "eval_num_samples": 5},
                   tmp_path / "r", after_epoch=lambda r, vae, e, d: weights.setdefault(
                       r["epoch"], {k: v.clone() for k, v in vae.state_dict().items()}))  # fmt: skip
    valid = {m["epoch"]: m["valid_bound"] for m in result.metrics if "valid_bound" in m}
    best = max(valid, key=valid.get)
    last = result.metrics[-1]["epoch"]
    assert last < 30 and last == best + 2  # stopped early, two evaluations after the best
    assert all(valid[e] <= valid[best] for e in valid if e > best)
    assert result.metrics[-1]["early_stopped"] == f"no better validation bound since epoch {best}"
    saved = torch.load(tmp_path / "r" / RunDir.BEST, weights_only=True)
    assert saved["epoch"] == best and saved["early_stopping"]["best"] == valid[best]
    assert all(torch.equal(result.vae.state_dict()[k], v) for k, v in weights[best].items())  # evaluated: the best
    assert json.loads((tmp_path / "r" / "evaluation.json").read_text())["model_epoch"] == best


def test_patience_without_a_validation_set_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="patience=3 stops on a validation bound, and .* has no validation set"):
        train({**TINY, "epochs": 1, "patience": 3}, tmp_path / "r")
    assert not (tmp_path / "r").exists()
