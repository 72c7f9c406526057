"""Runs in TensorBoard and MLflow, read back with each tool's own reader."""

import json

import pytest

from pyrovae import cli

TINY = ["--epochs", "2", "--hidden", "16", "--z-dim", "3", "--eval-num-samples", "10", "--batch-size", "500",
        "--quiet"]  # fmt: skip


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_tensorboard_event_files_hold_the_runs_numbers_images_and_config(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    assert cli.main(["train", "--out", str(run), "--tracking", "tensorboard", *TINY]) == 0
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    events.Reload()
    metrics = _metrics(run)
    logged = events.Scalars("train_loss")
    assert [s.step for s in logged] == [m["epoch"] for m in metrics if "train_loss" in m] == [1, 2]
    assert [s.value for s in logged] == pytest.approx([m["train_loss"] for m in metrics if "train_loss" in m])
    assert [s.step for s in events.Scalars("test_bound")] == [0, 1, 2]
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert events.Scalars("eval/log_likelihood")[-1].value == pytest.approx(evaluation["log_likelihood"])
    assert {"samples", "reconstructions"} <= set(events.Tags()["images"])
    assert events.Images("samples")[-1].width > 28
    config = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert 'tracking = "tensorboard"' in config and "z_dim = 3" in config


def test_an_mlflow_run_holds_the_same_and_a_resume_continues_it(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    run = tmp_path / "run"
    assert cli.main(["train", "--out", str(run), "--tracking", "mlflow", *TINY]) == 0
    assert cli.main(["train", "--out", str(run), "--resume", "--epochs", "3", "--quiet"]) == 0
    client = MlflowClient(tracking_uri=f"sqlite:///{run.resolve()}/mlflow/mlflow.db")
    run_id = (run / "mlflow_run_id").read_text().strip()
    got = client.get_run(run_id)
    assert got.info.status == "FINISHED"
    assert got.data.params["z_dim"] == "3" and got.data.params["tracking"] == "mlflow"
    history = client.get_metric_history(run_id, "train_loss")
    history = sorted((m.step, m.value) for m in history)
    assert [step for step, _ in history] == [1, 2, 3]  # the resumed epoch went to the same MLflow run
    assert [v for _, v in history] == pytest.approx([m["train_loss"] for m in _metrics(run) if "train_loss" in m])
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.toml", "images"} <= artifacts
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert got.data.metrics["eval/log_likelihood"] == pytest.approx(evaluation["log_likelihood"])


@pytest.mark.parametrize(("name", "module"), [("tensorboard", "tensorboard"), ("mlflow", "mlflow")])
def test_a_missing_extra_is_one_line_that_names_the_pip_command(tmp_path, capsys, monkeypatch, name, module):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda m, *a: None if m == module else real(m, *a))
    assert cli.main(["train", "--out", str(tmp_path / "run"), "--tracking", name, *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err == f'pyrovae: error: tracking = "{name}" needs {module}, an optional extra: pip install "pyrovae[{name}]"'
    )
    assert not (tmp_path / "run").exists()


def test_an_unknown_tracker_names_the_valid_ones(tmp_path, capsys):
    assert cli.main(["train", "--out", str(tmp_path / "run"), "--tracking", "wandb", *TINY]) == 2
    assert "unknown tracking 'wandb'; valid: tensorboard, mlflow" in capsys.readouterr().err
