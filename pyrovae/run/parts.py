"""A run's parts, assembled from a Config in one place: the data, the model, the estimator, the
optimizer and its schedule. Training, evaluation and every comparison cell build their run here,
and the config is checked here, against the registries and families that define its names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyro
import torch

from .. import data, estimators, likelihoods, tracking
from ..config import Config
from ..errors import ConfigError
from ..families import GUIDES, LATENTS, PRIORS, Family, check_family, plugin_origins
from ..networks import ACTIVATIONS, architecture
from ..vae import VAE, architecture_of
from . import schedules
from .memory import check_memory
from .step import COMPILE_MODES

# Pyro's ELBOs whose loss is a sum over data points, so that shard gradients add up to the global one
LINEAR_PYRO_ELBOS = (
    "Trace_ELBO",
    "TraceMeanField_ELBO",
    "TraceGraph_ELBO",
    "TraceEnum_ELBO",
    "JitTrace_ELBO",
    "JitTraceMeanField_ELBO",
    "JitTraceGraph_ELBO",
    "JitTraceEnum_ELBO",
)
POSITIVE = ("z_dim", "epochs", "batch_size", "log_every", "test_every", "eval_chunk_size", "eval_batch_size")


@dataclass
class Parts:
    """Everything a run is made of, on ``device``; ``optimizer`` and ``scheduler`` only for training."""

    config: Config
    device: torch.device
    images: data.Images
    dataset: data.InMemoryData
    vae: VAE
    estimator: pyro.infer.ELBO
    optimizer: torch.optim.Optimizer | None = None
    scheduler: torch.optim.lr_scheduler.LambdaLR | None = None


def assemble(cfg: Config, device: torch.device, *, training: bool = True) -> Parts:
    """The parts of the run ``cfg`` describes, on ``device``, from the config's seed (the
    weights' initialization draws from it first)."""
    torch.manual_seed(cfg.seed)
    images = load_images(cfg)
    num_params = likelihoods.make(cfg.likelihood, x_dim=1, **cfg.likelihood_options).num_params
    check_memory(cfg, images.x_dim, num_params, device)  # sizes that cannot fit: before allocating
    vae = build_vae(cfg, images).to(device)
    dataset = data.InMemoryData(images, vae.likelihood, cfg.binarization, device, cfg.seed)
    parts = Parts(cfg, device, images, dataset, vae, make_estimator(cfg))
    if training:
        parts.optimizer = make_optimizer(cfg, vae, device)
        parts.scheduler = schedules.make(cfg.lr_schedule, parts.optimizer, cfg.epochs)  # steps once an epoch
    return parts


def load_images(cfg: Config) -> data.Images:
    """The config's data set, with ``validation`` training points held out when it asks for them."""
    images = data.load("digits") if cfg.dataset == "digits" else data.load(cfg.dataset, path=cfg.data_path or None)
    return data.split_validation(images, cfg.validation) if cfg.validation else images


def build_vae(cfg: Config, images: data.Images) -> VAE:
    return VAE(
        x_dim=images.x_dim,
        z_dim=cfg.z_dim,
        likelihood=cfg.likelihood,
        likelihood_options=cfg.likelihood_options,
        hidden=cfg.hidden,
        activation=cfg.activation,
        architecture=cfg.architecture,
        image_shape=images.image_shape,
        family=Family.of(cfg),
    )


def make_estimator(cfg: Config) -> pyro.infer.ELBO:
    """The config's estimator with its K and options (one of Pyro's for ``pyro.<class>``, not a
    JIT one: torch.jit cannot trace a VAE whose weights are module parameters, not param sites)."""
    if cfg.estimator.startswith("pyro.Jit"):
        plain = cfg.estimator.replace("pyro.Jit", "pyro.", 1)
        raise ConfigError(
            f"estimator {cfg.estimator!r}: Pyro's JIT ELBOs trace the loss with torch.jit, which cannot "
            f"hold the VAE's network weights; use {plain!r} (the same loss), or a pyrovae estimator "
            "with --compile default"
        )
    return estimators.make(cfg.estimator, num_particles=cfg.num_particles, **cfg.estimator_options)


def make_optimizer(cfg: Config, vae: VAE, device: torch.device) -> torch.optim.Optimizer:
    """One multi-tensor Adam over every parameter: fused kernels on CUDA, foreach on the CPU."""
    fused = device.type == "cuda"
    return torch.optim.Adam(
        vae.parameters(),
        lr=cfg.lr,
        betas=(cfg.adam_beta1, cfg.adam_beta2),
        eps=cfg.adam_eps,
        fused=fused,
        foreach=None if fused else True,
    )


DEVICE_TYPES = ("cpu", "cuda")  # where pyrovae trains; torch knows more (meta, xla, ...) that it does not


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from e
    if device.type not in DEVICE_TYPES:
        raise ConfigError(f"device {name!r} is not one pyrovae trains on; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but CUDA is not available here")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r} asked for, but this machine has {torch.cuda.device_count()} GPU(s)")
    return device


def plugins_of(cfg: Config) -> dict[str, dict[str, Any]]:
    """The plugins the config names (:mod:`pyrovae.plugins`), by config key: each one's import path,
    where it came from and its version, as run identities and comparison reports record them."""
    found = {}
    for key, origin in (
        ("estimator", _estimator_origin(cfg.estimator)),
        ("likelihood", likelihoods.origin(cfg.likelihood)),
        ("architecture", architecture.origin(cfg.architecture)),
        *plugin_origins(Family.of(cfg)).items(),
    ):
        if origin is not None:
            found[key] = origin.to_dict()
    return found


def _estimator_origin(name: str) -> Any:
    return None if name.startswith(estimators.PYRO_PREFIX) else estimators.origin(name)


# -- checking a config -----------------------------------------------------------------------------
def choices() -> dict[str, list[str]]:
    """The valid values of each key that takes a name from a fixed set, from the registries and
    constants that define them (``estimator`` also takes ``pyro.<ELBO class>``)."""
    return {
        "dataset": sorted(data.DATASETS),
        "binarization": list(data.BINARIZATIONS),
        "likelihood": likelihoods.names(),
        "architecture": architecture.names(),
        "activation": sorted(ACTIVATIONS),
        "estimator": estimators.names(),
        "compile": list(COMPILE_MODES),
        "lr_schedule": list(schedules.SCHEDULES),
        "latent": list(LATENTS),
        "guide": list(GUIDES),
        "prior": list(PRIORS),
        "tracking": [t for t in tracking.TRACKERS if t],
    }


def check_config(cfg: Config) -> Config:
    """Check every name, option, range and combination of ``cfg`` now, so a typo fails before any
    training, in one :class:`ConfigError` line that names the valid choices. Returns ``cfg``."""
    for name, valid in choices().items():
        if name not in ("likelihood", "estimator", "architecture", "guide", "prior", "tracking"):  # checked below
            _one_of(name, getattr(cfg, name), valid)
    if cfg.dataset == "npz" and not cfg.data_path:
        raise ConfigError("dataset 'npz' needs data_path, the .npz file to read")
    likelihoods.make(cfg.likelihood, x_dim=1, **cfg.likelihood_options)
    architecture_of(cfg.architecture)
    estimator = make_estimator(cfg)
    _check_numbers(cfg)
    family = Family.of(cfg)
    check_family(family, cfg.architecture, cfg.z_dim)
    _check_estimator_on_family(cfg, estimator, family)
    if cfg.tracking not in tracking.TRACKERS:
        raise ConfigError(
            f'unknown tracking {cfg.tracking!r}; valid: {", ".join(choices()["tracking"])}, or "" for none'
        )
    return cfg


def _one_of(key: str, value: str, valid: Any) -> None:
    if value not in valid:
        raise ConfigError(f"unknown {key} {value!r}; valid: {', '.join(valid)}")


def _check_numbers(cfg: Config) -> None:
    for name in POSITIVE:
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.max_steps < 0 or cfg.max_seconds < 0:
        raise ConfigError("max_steps and max_seconds must be >= 0 (0: no limit)")
    if cfg.validation < 0 or cfg.patience < 0:
        raise ConfigError(f"validation and patience must be >= 0, got {cfg.validation} and {cfg.patience}")
    if cfg.eval_num_samples < 0:
        raise ConfigError(f"eval_num_samples must be >= 0, got {cfg.eval_num_samples}")
    if not cfg.lr > 0:
        raise ConfigError(f"lr must be positive, got {cfg.lr}")
    if not (0 <= cfg.adam_beta1 < 1 and 0 <= cfg.adam_beta2 < 1 and cfg.adam_eps > 0):
        raise ConfigError(
            f"Adam needs 0 <= beta1, beta2 < 1 and eps > 0, got {cfg.adam_beta1}, {cfg.adam_beta2}, {cfg.adam_eps}"
        )
    if any(h < 1 for h in cfg.hidden):
        raise ConfigError(f"hidden sizes must be >= 1, got {cfg.hidden}")


def _check_estimator_on_family(cfg: Config, estimator: pyro.infer.ELBO, family: Family) -> None:
    """Refuse an estimator the family cannot take: a path-derivative estimator on discrete
    latents, a closed-form KL where the guide or prior has none."""
    if (
        not family.reparameterized
        and isinstance(estimator, estimators.Estimator)
        and not estimator.supports_score_function
    ):
        valid = [n for n in estimators.names() if _takes_score(n, cfg)]
        raise ConfigError(
            f"estimator {cfg.estimator!r} needs reparameterized latents and {family.latent} latents are "
            f"discrete; valid with latent {family.latent!r}: {', '.join(valid)}"
        )
    if isinstance(estimator, estimators.AnalyticELBO) and not family.closed_form_kl:
        what = f"guide {family.guide!r}" if family.guide != "gaussian" else f"prior {family.prior!r}"
        raise ConfigError(
            f"estimator {cfg.estimator!r} needs a closed-form KL, which a {what} does not have; "
            "use 'elbo' (the same bound, Monte Carlo KL)"
        )


def _takes_score(name: str, cfg: Config) -> bool:
    try:
        estimator = estimators.make(name, num_particles=max(cfg.num_particles, 2))
    except ConfigError:
        return False
    return bool(getattr(estimator, "supports_score_function", False))


def check_data_parallel(estimator: pyro.infer.ELBO) -> None:
    """One line unless ``estimator``'s gradient on a global batch is the weighted sum of its
    gradients on the shards: pyrovae's estimators (per-point bounds) and Pyro's sums over points;
    not Pyro's Renyi or tail-adaptive ELBOs (a logsumexp over the whole batch)."""
    if isinstance(estimator, estimators.Estimator) or type(estimator).__name__ in LINEAR_PYRO_ELBOS:
        return
    raise ConfigError(
        f"data-parallel training needs an estimator whose loss sums over data points; pyro.{type(estimator).__name__} "
        f"does not (use pyrovae's own, e.g. renyi, or one of pyro.{', pyro.'.join(LINEAR_PYRO_ELBOS[:4])})"
    )
