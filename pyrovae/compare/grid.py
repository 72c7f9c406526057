"""A comparison grid: estimators x K x likelihoods x seeds, one budget and one config for all."""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import estimators, likelihoods
from ..config import FIELDS, from_dict, parse_value, toml_value, tomllib
from ..errors import ConfigError
from ..evaluation.ais import check_options
from ..registry import conform, describe
from ..run import check_config
from ..textfile import read_text
from .ray_backend import import_ray

BUDGETS = {"epochs": "epochs", "steps": "max_steps", "seconds": "max_seconds"}
# the smallest value of each count (SNR needs two draws for a variance; PSIS k-hat 100 samples)
LOWEST = {
    "eval_num_samples": 1,
    "psis_samples": 100,
    "psis_points": 1,
    "snr_draws": 2,
    "snr_batch": 1,
    "bias_draws": 0,
    "gap_points": 0,
    "gap_steps": 1,
    "ais_points": 0,
    "workers": 1,
}
BACKENDS = ("process", "ray")
# how the grid runs, not what it compares: a comparison directory may resume under other values
EXECUTION_KEYS = ("workers", "backend", "address", "cell_cpus", "cell_gpus")
EXECUTION_BASE_KEYS = ("device", "compile", "log_every")
UNLIMITED_EPOCHS = 1_000_000  # with a steps or seconds budget the budget ends training


def importable(module: str) -> bool:
    """Whether ``module`` names a module Python can find (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


@dataclass(frozen=True)
class EstimatorSpec:
    """An estimator with its K and options, written ``name[:K[:key=value,...]]``."""

    name: str
    num_particles: int = 1
    options: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def parse(cls, spec: str | dict[str, Any]) -> EstimatorSpec:
        if not isinstance(spec, str | dict):
            raise ConfigError(
                "comparison key 'estimators' needs strings (name[:K[:key=value,...]]) or tables with a name, "
                f"got {spec!r}"
            )
        if isinstance(spec, dict):
            spec = dict(spec)
            name = spec.pop("name", None)
            if not isinstance(name, str):
                raise ConfigError(f"an estimator table needs a name, got {spec!r}")
            k = spec.pop("num_particles", 1)
            if not isinstance(k, int) or isinstance(k, bool):
                raise ConfigError(f"estimator {name!r}: num_particles must be an integer, got {k!r}")
            return cls(name, k, tuple(sorted(spec.items()))).validate()
        parts = spec.split(":")
        if len(parts) > 1 and parts[1].isidentifier() and (parts[0] not in estimators.names() or importable(parts[0])):
            # a plugin's import path, module:Name[:K[:...]] (a registered name is followed by K; a
            # module may share a registered name, as the tutorial's vargrad:VarGrad does)
            parts = [f"{parts[0]}:{parts[1]}", *parts[2:]]
        if len(parts) > 3 or not parts[0]:
            raise ConfigError(
                f"estimator spec {spec!r}: write name, name:K or name:K:key=value,... (name may be a "
                "plugin's package.module:Name)"
            )
        try:
            k = int(parts[1]) if len(parts) > 1 and parts[1] else 1
        except ValueError as e:
            raise ConfigError(f"estimator spec {spec!r}: K must be an integer") from e
        options = {}
        for item in filter(None, (parts[2].split(",") if len(parts) > 2 else [])):
            key, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"estimator spec {spec!r}: options are key=value, got {item!r}")
            options[key.strip()] = parse_value(value.strip())
        return cls(parts[0], k, tuple(sorted(options.items()))).validate()

    def validate(self) -> EstimatorSpec:
        estimators.make(self.name, num_particles=self.num_particles, **dict(self.options))
        return self

    @property
    def label(self) -> str:
        """How tables name it: ``iwae K=5``, ``renyi K=5 alpha=0.5``."""
        extra = "".join(f" {k}={v}" for k, v in self.options)
        return f"{self.name} K={self.num_particles}{extra}"

    @property
    def slug(self) -> str:
        extra = "".join(f"_{k}{v}" for k, v in self.options)
        return re.sub(r"[^A-Za-z0-9_.-]", "", f"{safe_name(self.name)}_K{self.num_particles}{extra}")


@dataclass(frozen=True)
class Cell:
    """One run of the grid: an estimator spec, a likelihood, a seed and a variant (config values
    of the grid's ``vary`` axes, e.g. ``(("guide", "iaf"),)``)."""

    estimator: EstimatorSpec
    likelihood: str
    seed: int
    variant: tuple[tuple[str, Any], ...] = ()

    @property
    def id(self) -> str:
        extra = "".join(f"-{k}{_show(v)}" for k, v in self.variant)
        likelihood = safe_name(self.likelihood)
        return re.sub(r"[^A-Za-z0-9_.,-]", "", f"{self.estimator.slug}{extra}-{likelihood}-seed{self.seed}")

    @property
    def variant_dict(self) -> dict[str, Any]:
        """The variant as config values (lists as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.variant}

    @property
    def label(self) -> str:
        """The estimator's label and the variant: ``iwae K=5 guide=iaf latents=[100, 50]``."""
        return self.estimator.label + "".join(f" {k}={_show(v)}" for k, v in self.variant)


def safe_name(name: str) -> str:
    """A name as a folder name takes it: a plugin's ``pkg.mod:Name`` as ``pkg.mod.Name``."""
    return name.replace(":", ".")


def _show(value: Any) -> str:
    """A variant's value as labels show it: ``iaf``, ``[100, 50]``."""
    return value if isinstance(value, str) else toml_value(list(value) if isinstance(value, tuple) else value)


@dataclass
class GridSpec:
    """What to compare and how. Every cell shares ``base`` (any ``pyrovae train`` config key),
    the data, the optimizer and the ``budget``: one of ``{"epochs": N}``, ``{"steps": N}`` (gradient
    steps) or ``{"seconds": S}`` (training wall-clock time)."""

    estimators: list[Any] = field(default_factory=lambda: ["elbo", "iwae:5", "iwae:50", "dreg:5", "dreg:50", "stl"])
    likelihoods: list[str] = field(default_factory=lambda: ["bernoulli"])
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    budget: dict[str, float] = field(default_factory=lambda: {"epochs": 30})
    base: dict[str, Any] = field(default_factory=dict)
    vary: dict[str, list[Any]] = field(default_factory=dict)  # config key -> values: axes of the grid
    eval_num_samples: int = 5000  # K of the test IS log-likelihood
    psis_samples: int = 1000  # K of the PSIS k-hat and importance ESS (>= 100)
    psis_points: int = 500  # test points they cover
    snr_draws: int = 200  # R, gradient draws for the SNR of each cell
    snr_batch: int = 32  # training points in the SNR's fixed batch
    snr_epochs: list[int] = field(default_factory=list)  # epochs to measure SNR at, besides the end
    bias_draws: int = 200  # R, paired gradient draws of the gradient-bias test at the end (0: none; else >= 2)
    gap_points: int = 100  # test points whose q is refined for the amortization gap
    gap_steps: int = 300
    ais_points: int = 0  # test points (spread over the test set) that also get an AIS log p(x); 0: none
    ais_steps: int = 1000  # AIS: intermediate distributions
    ais_chains: int = 16  # AIS: chains per point
    ais_hmc_steps: int = 10  # AIS: leapfrog steps per HMC transition
    workers: int = 1  # cells run in this many processes at once (backend "process")
    backend: str = "process"  # "process": a local pool of `workers` processes; "ray": one Ray task a cell
    address: str = ""  # ray: the cluster's address (host:port or "auto"); empty: a local Ray starts
    cell_cpus: float = 1.0  # ray: CPUs each cell's task asks for (and its torch threads)
    cell_gpus: float = 0.0  # ray: GPUs each cell's task asks for; a fraction lets small cells share one

    def __post_init__(self) -> None:
        """Every value checked once, here, for its type, range and finiteness, and every cell's
        config built: a bad grid is one line before anything runs."""
        self._check_types()
        self._check_numbers()
        self.specs = [EstimatorSpec.parse(e) for e in self.estimators]
        for name in self.likelihoods:
            likelihoods.make(name, x_dim=1)
        self._check_tables()
        check_config(from_dict(self.base))
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown backend {self.backend!r}; valid: {', '.join(BACKENDS)}")
        if self.backend == "ray":  # a missing extra: one line, before anything is written
            import_ray()
        check_options(self.ais_steps, self.ais_chains, self.ais_hmc_steps, 0.05, 0.65, "guide", "sigmoid")
        self._check_unique()
        for cell in self.cells():  # every cell's config, now: an impossible combination fails before any run
            self.cell_config(cell)

    def _check_types(self) -> None:
        hints = typing.get_type_hints(GridSpec)
        if isinstance(self.vary, dict):  # each axis by name: "vary 'guide' needs ..."
            for key, values in self.vary.items():
                if not isinstance(values, list | tuple) or not values:
                    raise ConfigError(f"vary {key!r} needs a non-empty list of values, got {values!r}")
        if isinstance(self.budget, dict):  # "budget seconds needs ...", not the table's type
            for unit, amount in self.budget.items():
                if not conform(amount, float)[0]:
                    raise ConfigError(f"budget {unit} needs a finite number, got {amount!r}")
        for f in dataclasses.fields(self):
            ok, value = conform(getattr(self, f.name), hints[f.name])
            if not ok:
                raise ConfigError(
                    f"comparison key {f.name!r} needs {describe(hints[f.name])}, got {getattr(self, f.name)!r}"
                )
            setattr(self, f.name, value)

    def _check_numbers(self) -> None:
        if len(self.budget) != 1 or next(iter(self.budget)) not in BUDGETS:
            raise ConfigError(
                f"budget needs exactly one of {', '.join(BUDGETS)} (e.g. {{epochs = 30}}), got {self.budget}"
            )
        unit, amount = next(iter(self.budget.items()))
        if not amount > 0 or (unit != "seconds" and amount != int(amount)):
            need = "a number of seconds > 0" if unit == "seconds" else "an integer >= 1"
            raise ConfigError(f"budget {unit} needs {need}, got {amount:g}")
        for key, low in LOWEST.items():
            if getattr(self, key) < low:
                raise ConfigError(f"{key} must be >= {low}, got {getattr(self, key)}")
        if self.bias_draws == 1:
            raise ConfigError("bias_draws must be 0 (no bias test) or >= 2, got 1")
        if not self.cell_cpus > 0 or not self.cell_gpus >= 0:
            raise ConfigError(f"cell_cpus must be > 0 and cell_gpus >= 0, got {self.cell_cpus} and {self.cell_gpus}")
        if any(e < 1 for e in self.snr_epochs) or (unit == "epochs" and any(e > amount for e in self.snr_epochs)):
            raise ConfigError(
                f"snr_epochs must be epochs of the run (1 .. {amount:g} with budget {unit}), got {self.snr_epochs}"
            )
        if not self.estimators or not self.likelihoods or not self.seeds:
            raise ConfigError("estimators, likelihoods and seeds each need at least one value")

    def _check_tables(self) -> None:
        owned = {
            "estimator",
            "num_particles",
            "estimator_options",
            "likelihood",
            "seed",
            "epochs",
            "max_steps",
            "max_seconds",
        }
        for part, keys in (("base", self.base), ("vary", self.vary)):
            clash = sorted(set(keys) & owned)
            if clash:
                raise ConfigError(f"{part} may not set {', '.join(clash)}: the grid and the budget set them")
        for key, values in self.vary.items():
            if not values:
                raise ConfigError(f"vary {key!r} needs a non-empty list of values, got {values!r}")
            if len({toml_value(v) for v in values}) != len(values):
                raise ConfigError(f"vary {key!r} lists a value twice: {values!r}")

    def _check_unique(self) -> None:
        lists: list[tuple[str, list[Any]]] = [
            ("seed", list(self.seeds)),
            ("likelihood", list(self.likelihoods)),
            ("estimator spec", [s.label for s in self.specs]),
        ]
        for what, values in lists:
            twice = [v for v in values if values.count(v) > 1]
            if twice:
                raise ConfigError(f"{what} {twice[0]!r} is listed twice; list each once")

    def variants(self) -> list[tuple[tuple[str, Any], ...]]:
        """Every combination of the ``vary`` axes' values (one empty variant without axes)."""
        keys = list(self.vary)
        frozen = [[tuple(v) if isinstance(v, list) else v for v in values] for values in self.vary.values()]
        return [tuple(zip(keys, values, strict=True)) for values in itertools.product(*frozen)]  # hashable cells

    def cells(self) -> list[Cell]:
        return [
            Cell(e, lik, seed, v)
            for v in self.variants()
            for e in self.specs
            for lik in self.likelihoods
            for seed in self.seeds
        ]

    def cell_config(self, cell: Cell) -> dict[str, Any]:
        """The full ``pyrovae train`` config of a cell."""
        unit, amount = next(iter(self.budget.items()))
        cfg = {
            **self.base,
            **cell.variant_dict,
            "estimator": cell.estimator.name,
            "num_particles": cell.estimator.num_particles,
            "estimator_options": dict(cell.estimator.options),
            "likelihood": cell.likelihood,
            "seed": cell.seed,
            "eval_num_samples": 0,
        }
        if unit == "epochs":
            cfg["epochs"] = int(amount)
        else:
            cfg["epochs"] = UNLIMITED_EPOCHS
            cfg[BUDGETS[unit]] = int(amount) if unit == "steps" else float(amount)
        return check_config(from_dict(cfg)).to_dict()

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def identity(self) -> dict[str, Any]:
        """What makes two specifications the same comparison: every key but how it runs (the
        backend and its resources, and the base config's device, compile mode and log interval)."""
        out = {k: v for k, v in self.to_dict().items() if k not in EXECUTION_KEYS}
        out["base"] = {k: v for k, v in self.base.items() if k not in EXECUTION_BASE_KEYS}
        return out

    def to_toml(self) -> str:
        """The exact specification, as TOML that ``GridSpec.load`` reads back."""
        top = {k: v for k, v in self.to_dict().items() if k not in ("budget", "base", "vary")}
        lines = to_toml_dict(top)
        lines += "\n[budget]\n" + to_toml_dict(self.budget)
        lines += "\n[base]\n" + to_toml_dict(self.base) if self.base else ""
        lines += "\n[vary]\n" + to_toml_dict(self.vary) if self.vary else ""
        return lines

    @classmethod
    def load(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> GridSpec:
        try:
            values = tomllib.loads(read_text(path, "comparison file"))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"comparison file {path} is not valid TOML: {e}") from e
        overrides = dict(overrides or {})
        for table in ("base", "vary"):  # a flag adds to (or changes keys of) the file's table
            if isinstance(values.get(table), dict) and table in overrides:
                overrides[table] = {**values[table], **overrides[table]}
        return cls.from_dict({**values, **overrides})

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GridSpec:
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(valid))
        if unknown:
            hint = [k for k in unknown if k in FIELDS]
            more = f" ({', '.join(hint)}: put run settings under [base])" if hint else ""
            raise ConfigError(
                f"unknown comparison key {', '.join(map(repr, unknown))}{more}; valid keys: {', '.join(valid)}"
            )
        return cls(**values)


def to_toml_dict(values: dict[str, Any]) -> str:
    return "".join(f"{k} = {toml_value(v)}\n" for k, v in values.items())
