"""The config: TOML in, TOML out, CLI flags over the file, and every bad value caught at once."""

import pytest

from pyrovae import ConfigError, cli
from pyrovae.config import Config, from_dict, load, to_toml
from pyrovae.run import check_config


def test_toml_round_trip(tmp_path):
    cfg = from_dict({"likelihood": "gaussian", "likelihood_options": {"scale": "per_dim"},
                     "hidden": [64, 32], "lr": 0.01, "estimator": "iwae", "num_particles": 5})  # fmt: skip
    path = tmp_path / "c.toml"
    path.write_text(to_toml(cfg))
    assert load(path) == cfg


def test_flags_override_the_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('estimator = "iwae"\nnum_particles = 5\n')
    args = cli.parser().parse_args(["train", "--config", str(path), "--num-particles", "7",
                                    "--likelihood-option", "scale=0.5", "--hidden", "8,4"])  # fmt: skip
    cfg = cli._config(args)
    assert (cfg.estimator, cfg.num_particles, cfg.hidden) == ("iwae", 7, [8, 4])
    assert cfg.likelihood_options == {"scale": 0.5}


@pytest.mark.parametrize(
    "values, message",
    [
        ({"num_particle": 5}, "unknown config key 'num_particle'; valid keys: preset, dataset"),
        ({"num_particles": "five"}, "config key 'num_particles' needs a int, got 'five'"),
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"estimator": "dreg2"}, "unknown estimator 'dreg2'"),
        ({"estimator_options": {"alpha": 0.5}}, "estimator 'elbo' has no option 'alpha'"),
        ({"architecture": "resnet"}, "unknown architecture 'resnet'; valid: mlp, conv"),
        ({"activation": "gelu"}, "unknown activation 'gelu'; valid: elu, relu, softplus, tanh"),
        ({"estimator_options": {"kl_warmup": 1.5}}, "option kl_warmup needs an integer"),
    ],
)
def test_bad_values_fail_at_once(values, message):
    with pytest.raises(ConfigError, match=message):
        check_config(from_dict(values))


def test_defaults_are_valid():
    check_config(Config())
