"""The run configuration: one flat dataclass, read from TOML and mirrored by CLI flags.

A leaf: it knows the keys, their defaults and types, and TOML. Whether a name is registered, an
option valid or a combination possible is checked where the run's parts are assembled
(:func:`pyrovae.run.check_config`).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .presets import load_preset
from .textfile import read_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _key(default: Any, help: str) -> Any:
    """A config key: its default and one line saying what it does (its CLI flag's help)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class Config:
    preset: str = _key(
        "",
        "a paper's protocol to start from (architecture, optimizer, schedule, data, evaluation): a "
        "preset name or a TOML file; the config file and flags override it",
    )
    # data
    dataset: str = _key(
        "digits",
        "the data: digits (5,000 MNIST images shipped with pyrovae); mnist, "
        "mnist_static, fashion_mnist, omniglot, cifar10 (downloaded once and SHA-256 checked at "
        "every load); or npz (your own file, see data_path)",
    )
    data_path: str = _key(
        "",
        "downloaded data sets: the folder holding their files (default "
        "$PYROVAE_DATA/<dataset> or ~/.cache/pyrovae/<dataset>); npz: the .npz file",
    )
    binarization: str = _key(
        "dynamic", "for binary likelihoods: redraw the binary pixels every epoch (dynamic) or draw them once (fixed)"
    )
    # model
    likelihood: str = _key("bernoulli", "p(x | z), a registered likelihood")
    likelihood_options: dict[str, Any] = _key({}, "options of the likelihood")
    architecture: str = _key("mlp", "encoder and decoder: fully connected (mlp), convolutional (conv), or a plugin's")
    hidden: list[int] = _key([400], "hidden layer sizes of the MLP encoder (the decoder mirrors them)")
    activation: str = _key("relu", "the nonlinearity between layers")
    z_dim: int = _key(50, "size of the latent code z")
    # model family (pyrovae/families): the latent layers, the guide and the prior
    latents: list[int] = _key(
        [],
        "stochastic layers' sizes, bottom (next to x) to top, e.g. [100, 50] for Burda et "
        "al.'s two layers; empty: one layer of z_dim",
    )
    latent: str = _key(
        "gaussian",
        "the latent units: gaussian, or bernoulli (a sigmoid belief net; train with "
        "estimators that take score functions: elbo, iwae, vimco, rws)",
    )
    guide: str = _key(
        "gaussian",
        "q(z | x): a diagonal gaussian, or that gaussian followed by conditional "
        "autoregressive flows: iaf (Kingma et al. 2016) or spline (neural spline flows)",
    )
    flow_layers: int = _key(2, "flow guides: the number of flow steps")
    flow_hidden: list[int] = _key([200], "flow guides: hidden layer sizes of each step's autoregressive net")
    prior: str = _key(
        "gaussian",
        "p(z): N(0, I) (gaussian), the VampPrior (vamp: a mixture of the guide at learned "
        "pseudo-inputs, Tomczak & Welling 2018) or a learned mixture of gaussians (mog)",
    )
    prior_components: int = _key(500, "vamp and mog priors: the number of mixture components (pseudo-inputs)")
    # estimator
    estimator: str = _key("elbo", "the training objective and its gradient estimator")
    num_particles: int = _key(1, "K, particles (samples of z) per data point")
    estimator_options: dict[str, Any] = _key({}, "options of the estimator")
    # optimization
    epochs: int = _key(200, "passes over the training set")
    max_steps: int = _key(0, "stop after this many gradient steps, mid-epoch if need be (0: no limit)")
    max_seconds: float = _key(0.0, "stop after this much training time (0: no limit)")
    batch_size: int = _key(100, "data points a gradient step")
    lr: float = _key(1e-3, "Adam's learning rate (at the start of the schedule)")
    lr_schedule: str = _key(
        "constant",
        "the learning rate over epochs: constant, burda2016 (3^i epochs at "
        "lr 10^(-i/7), i = 0..7: 3,280 epochs) or cosine (to 0 over epochs)",
    )
    adam_beta1: float = _key(0.9, "Adam's beta1")
    adam_beta2: float = _key(0.999, "Adam's beta2")
    adam_eps: float = _key(1e-8, "Adam's epsilon")
    seed: int = _key(0, "seed of torch's RNG: weights, shuffles, binarization, particles")
    device: str = _key("auto", "torch device: auto (CUDA when present), cpu, cuda or cuda:N")
    log_every: int = _key(50, "steps between host syncs: the loss read, the NaN check, the progress bar")
    compile: str = _key("off", "torch.compile the loss (reduce-overhead captures CUDA graphs)")
    validation: int = _key(
        0,
        "training points held out as a validation set (a fixed split, the same every run); "
        "mnist_static comes with its own",
    )
    patience: int = _key(
        0,
        "early stopping: stop once the validation bound has not improved for this many "
        "evaluations, and evaluate the best model (0: off)",
    )
    # evaluation
    test_every: int = _key(1, "epochs between test- and validation-bound evaluations (the last epoch always has one)")
    eval_num_samples: int = _key(5000, "K of the importance-sampled test log-likelihood after training (0 skips it)")
    eval_chunk_size: int = _key(250, "particles at a time in that estimate (memory)")
    eval_batch_size: int = _key(100, "test points at a time in evaluation")
    # tracking (optional extras)
    tracking: str = _key(
        "",
        "where the run also shows up: tensorboard (event files in <run>/tensorboard) or mlflow "
        "(an MLflow run; by default a local store in <run>/mlflow); empty: nowhere else",
    )
    tracking_uri: str = _key(
        "",
        "tensorboard: the log folder; mlflow: the tracking URI (e.g. http://host:5000 or "
        "sqlite:///mlflow.db); empty: inside the run directory",
    )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in fields(Config)}


INT_RANGE = (-(2**63), 2**63 - 1)  # what torch takes (a seed, a count)


def _coerce(key: str, value: Any) -> Any:
    """Check a value against the field's default, once, where it is read: its type (converted where
    that is lossless, an int where a float is wanted), an int within 64 bits, a finite float, text
    that is valid UTF-8 (a file name from a byte string that is not cannot be written back)."""
    default = getattr(Config(), key)
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, list):
        ok = isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    else:
        ok = isinstance(value, dict)
    if not ok:
        raise ConfigError(f"config key {key!r} needs a {type(default).__name__}, got {value!r}")
    _check_value(key, value)
    return value


def _check_value(key: str, value: Any) -> None:
    numbers = value if isinstance(value, list) else [value]
    for v in numbers:
        if isinstance(v, int) and not isinstance(v, bool) and not INT_RANGE[0] <= v <= INT_RANGE[1]:
            raise ConfigError(f"config key {key!r} needs an integer within 64 bits, got {v}")
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"config key {key!r} needs a finite number, got {v}")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ConfigError(f"config key {key!r} is not valid UTF-8 text: {value!r}") from e


def from_dict(values: dict[str, Any], base: Config | None = None) -> Config:
    """A Config from ``base`` (or the defaults) with ``values`` applied; unknown keys fail. A
    ``preset`` in ``values`` that ``base`` does not already carry is applied first, under the
    other values (defaults < preset < values)."""
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ConfigError(f"unknown config key {', '.join(map(repr, unknown))}; valid keys: {', '.join(FIELDS)}")
    cfg = dataclasses.replace(base or Config())
    preset = values.get("preset")
    if preset and preset != cfg.preset:
        cfg = from_dict(load_preset(_coerce("preset", preset)), cfg)  # a preset holds no "preset" key
    for key, value in values.items():
        setattr(cfg, key, _coerce(key, value))
    return cfg


def load(path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """Read a TOML config file, then apply ``overrides`` (from CLI flags)."""
    path = Path(path)
    try:
        values = tomllib.loads(read_text(path, "config file"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from e
    return from_dict({**values, **(overrides or {})})  # one merge, so a preset sits under both


def parse_value(text: str) -> Any:
    """A CLI value as TOML would read it (numbers, booleans, strings, lists), else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


ESCAPES = {"\\": "\\\\", '"': '\\"', "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and every control character escaped."""
    return '"' + "".join(ESCAPES.get(c, c if c.isprintable() or c == " " else f"\\u{ord(c):04x}") for c in text) + '"'


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        keys = {k: k if BARE_KEY.fullmatch(k) else toml_string(k) for k in value}
        return "{" + ", ".join(f"{keys[k]} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(cfg: Config) -> str:
    return "".join(f"{k} = {toml_value(v)}\n" for k, v in cfg.to_dict().items())
