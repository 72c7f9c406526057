"""The papers' presets and the learning-rate schedules: values, precedence, exact resume."""

import json
import math

import pytest
import torch

from pyrovae import ConfigError, cli, config, presets
from pyrovae.run import check_config, schedules, train


def test_burda2016_lasts_3_to_the_i_epochs_at_lr_10_to_the_minus_i_over_7():
    stages = [schedules.burda2016(e) for e in range(schedules.burda2016_epochs() + 5)]
    assert schedules.burda2016_epochs() == 3280
    start = 0
    for i in range(8):  # stage i: epochs [start, start + 3^i)
        assert stages[start : start + 3**i] == [pytest.approx(10 ** (-i / 7))] * 3**i
        start += 3**i
    assert stages[3280:] == [pytest.approx(0.1)] * 5  # after the schedule: the last rate stays


def test_cosine_goes_from_the_rate_to_zero_over_the_epochs():
    f = schedules.cosine(10)
    assert f(0) == 1.0 and f(5) == pytest.approx(0.5) and f(10) == pytest.approx(0.0) and f(12) == pytest.approx(0.0)


def test_a_preset_sits_between_the_defaults_and_the_file_and_flags(tmp_path):
    cfg = config.from_dict({"preset": "burda2016-1layer"})
    assert (cfg.hidden, cfg.activation, cfg.z_dim, cfg.batch_size, cfg.epochs) == ([200, 200], "tanh", 50, 20, 3280)
    assert (cfg.lr_schedule, cfg.adam_eps, cfg.dataset, cfg.eval_num_samples) == ("burda2016", 1e-4, "mnist", 5000)
    assert cfg.estimator == "elbo"  # a default the preset leaves alone
    file = tmp_path / "c.toml"
    file.write_text('preset = "burda2016-1layer"\nepochs = 50\nz_dim = 20\n')
    cfg = config.load(file, {"z_dim": 10, "estimator": "iwae"})  # flags over the file over the preset
    assert (cfg.epochs, cfg.z_dim, cfg.estimator, cfg.hidden) == (50, 10, "iwae", [200, 200])
    own = tmp_path / "mine.toml"
    own.write_text('hidden = [32]\nlr_schedule = "cosine"\n')
    cfg = config.from_dict({"preset": str(own), "lr": 0.01})
    assert (cfg.hidden, cfg.lr_schedule, cfg.lr, cfg.preset) == ([32], "cosine", 0.01, str(own))


def test_every_shipped_preset_is_a_valid_config():
    assert presets.names() == ["burda2016-1layer", "cifar10-conv", "rainforth2018"]
    for name in presets.names():
        check_config(config.from_dict({"preset": name}))


@pytest.mark.parametrize(
    "preset, message",
    [("burda2017", "unknown preset 'burda2017'; valid: burda2016-1layer, cifar10-conv, rainforth2018"),
     ("missing.toml", "preset file missing.toml does not exist")],
)  # fmt: skip
def test_a_bad_preset_is_one_clear_error(preset, message):
    with pytest.raises(ConfigError, match=message):
        config.from_dict({"preset": preset})


TINY = {"hidden": [16], "z_dim": 4, "eval_num_samples": 0, "batch_size": 500, "test_every": 1}


def test_a_schedule_resumes_exactly_and_is_in_the_checkpoint(tmp_path):
    cfg = {**TINY, "lr_schedule": "burda2016", "epochs": 5, "adam_eps": 1e-4}
    straight = train(cfg, tmp_path / "straight")
    train({**cfg, "epochs": 2}, tmp_path / "split")
    resumed = train({**cfg, "epochs": 5}, tmp_path / "split", resume=True)
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in straight.metrics]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in resumed.metrics]
    lrs = [r["lr"] for r in straight.metrics[1:]]  # the rate each epoch trained at
    assert lrs == pytest.approx([1e-3, 1e-3 * 10 ** (-1 / 7), 1e-3 * 10 ** (-1 / 7), 1e-3 * 10 ** (-1 / 7),
                                 1e-3 * 10 ** (-2 / 7)])  # fmt: skip
    state = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    assert state["scheduler"]["last_epoch"] == 5
    assert state["optimizer"]["param_groups"][0]["eps"] == 1e-4
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-3 * 10 ** (-2 / 7))


def test_a_checkpoint_whose_rate_is_not_its_schedule_s_is_refused(tmp_path):
    cfg = {**TINY, "lr_schedule": "burda2016", "epochs": 2}
    train(cfg, tmp_path / "run")
    path = tmp_path / "run" / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    state["optimizer"]["param_groups"][0]["lr"] = 0.5
    torch.save(state, path)
    with pytest.raises(Exception, match="is not its schedule's"):
        train({**cfg, "epochs": 3}, tmp_path / "run", resume=True)


def test_eight_bit_data_reports_bits_per_dimension(tmp_path, capsys):
    args = ["train", "--out", str(tmp_path / "r"), "--likelihood", "discretized_logistic", "--epochs", "1",
            "--hidden", "16", "--z-dim", "4", "--eval-num-samples", "10", "--quiet"]  # fmt: skip
    assert cli.main(args) == 0
    ev = json.loads((tmp_path / "r" / "evaluation.json").read_text())
    for key in ("log_likelihood", "elbo", "iwae_bound"):
        assert ev["bits_per_dim"][key] == pytest.approx(-ev[key] / (784 * math.log(2)))
    assert 0 < ev["bits_per_dim"]["log_likelihood"] < 8  # an 8-bit level costs at most 8 bits
    out = capsys.readouterr().out
    assert f"({ev['bits_per_dim']['log_likelihood']:.3f} bits/dim)" in out


def test_binary_data_reports_nats_only(tmp_path):
    assert cli.main(["train", "--out", str(tmp_path / "r"), "--epochs", "1", "--hidden", "16", "--z-dim", "4",
                     "--eval-num-samples", "10", "--quiet"]) == 0  # fmt: skip
    assert "bits_per_dim" not in json.loads((tmp_path / "r" / "evaluation.json").read_text())
