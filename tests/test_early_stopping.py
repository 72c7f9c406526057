"""A validation split carved from the training set, and early stopping on its bound."""

import json

import pytest
import torch

from pyrovae import ConfigError, distributed, training

TINY = {"hidden": [16], "z_dim": 4, "eval_num_samples": 0, "batch_size": 500}


def test_a_validation_split_is_held_out_and_scored(tmp_path):
    result = training.train({**TINY, "epochs": 1, "validation": 400}, tmp_path / "r")
    assert result.metrics[1]["step"] == 9  # 4,100 training points left, batches of 500
    assert result.metrics[1]["valid_bound"] < 0 and "test_bound" in result.metrics[1]


def test_early_stopping_stops_after_patience_and_evaluates_the_best_model(tmp_path, monkeypatch):
    scripted = iter([-100.0, -90.0, -95.0, -96.0, -80.0])  # the validation bound of epochs 1, 2, ...
    real = training.mean_test_bound

    def fake(estimator, vae, dataset, batch_size, part="test", group=distributed.SINGLE):
        if part == "valid":
            return torch.tensor(next(scripted))
        return real(estimator, vae, dataset, batch_size, part, group)

    monkeypatch.setattr(training, "mean_test_bound", fake)
    weights = {}
    result = training.train({**TINY, "epochs": 10, "validation": 400, "patience": 2, "eval_num_samples": 5},
                            tmp_path / "r", after_epoch=lambda r, vae, e, d: weights.setdefault(
                                r["epoch"], {k: v.clone() for k, v in vae.state_dict().items()}))  # fmt: skip
    assert [m["epoch"] for m in result.metrics] == [0, 1, 2, 3, 4]  # epochs 3 and 4 did not beat epoch 2
    assert result.metrics[-1]["early_stopped"] == "no better validation bound since epoch 2"
    best = torch.load(tmp_path / "r" / training.BEST_FILE, weights_only=True)
    assert best["epoch"] == 2 and best["early_stopping"]["best"] == -90.0
    assert all(torch.equal(result.vae.state_dict()[k], v) for k, v in weights[2].items())  # evaluated: epoch 2's
    assert json.loads((tmp_path / "r" / "evaluation.json").read_text())["model_epoch"] == 2


def test_patience_without_a_validation_set_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="patience=3 stops on a validation bound, and .* has no validation set"):
        training.train({**TINY, "epochs": 1, "patience": 3}, tmp_path / "r")
    assert not (tmp_path / "r").exists()
