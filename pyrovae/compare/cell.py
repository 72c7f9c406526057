"""One cell of a comparison: train, then every diagnostic, then ``result.json`` (written last)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import torch

from ..config import from_dict
from ..data import InMemoryData
from ..diagnostics import amortization_gaps, gradient_bias, gradient_snr, importance_diagnostics
from ..errors import ConfigError
from ..evaluation import ais_against_is, evaluate_model
from ..evaluation.plots import save_grid
from ..plugins import add_roots
from ..run import Parts, TrainResult, plugins_of, train
from ..run.atomic import json_text, write_atomic
from ..run.identity import plugin_changes
from ..tracking import open_tracker
from ..vae import VAE

RESULT_FILE = "result.json"
SNR_FILE = "snr.jsonl"
Settings = dict[str, Any]


def spread(n: int, count: int, device: torch.device) -> torch.Tensor:
    """``count`` indices spread evenly over ``n`` points (every digit, not the first class)."""
    return torch.linspace(0, n - 1, min(count, n), device=device).round().long()


def run_cell(
    cell_dir: str | Path, config: dict[str, Any], settings: Settings, *, resume: bool = False
) -> dict[str, Any]:
    """Train one cell into ``cell_dir/run`` (``resume``: from the checkpoint a stop left) and write
    ``cell_dir/result.json``.

    ``settings``: the grid's diagnostic settings (``eval_num_samples``, ``psis_samples``,
    ``psis_points``, ``snr_draws``, ``snr_batch``, ``snr_epochs``, ``gap_points``, ``gap_steps``,
    ``ais_points``, ``ais_steps``, ``ais_chains``, ``ais_hmc_steps``) and the cell's description
    (``cell``). ``result.json`` is written atomically as the very last step, so its presence is
    what makes a cell done.
    """
    cell_dir = Path(cell_dir)
    start = time.perf_counter()
    plugins = check_plugins(config, settings)
    snr_log = read_snr(cell_dir) if resume else []
    result = train(
        config,
        cell_dir / "run",
        resume=resume,
        evaluate=False,
        after_epoch=snr_at_epochs(settings, snr_log, cell_dir / SNR_FILE),
    )
    snr_log = [s for s in snr_log if s["epoch"] <= result.metrics[-1]["epoch"]]  # a stop after a measure
    parts = result.parts
    parts.vae.eval()
    with pyro.settings.context(module_local_params=True), pyro.validation_enabled(False):
        last = result.metrics[-1]
        if not snr_log or snr_log[-1]["epoch"] != last["epoch"]:
            snr_log.append(
                {
                    "epoch": last["epoch"],
                    "step": last["step"],
                    **snr(settings, parts.vae, parts.estimator, parts.dataset),
                }
            )
        t = time.perf_counter()
        found = {"bias": bias(settings, parts.vae, parts.estimator, parts.dataset), **diagnose(settings, parts)}
        found["diagnostics_seconds"] = time.perf_counter() - t
        with torch.no_grad():
            scale = 255.0 if parts.dataset.kind == "counts" else 1.0
            save_grid(cell_dir / "samples.png", parts.vae.sample(64) / scale, parts.dataset.images.image_shape)
    out = {
        "cell": settings["cell"],
        "plugins": plugins,
        "config": result.config.to_dict(),
        "objective": objective_name(parts.estimator),
        **summary(result, found, snr_log),
        "seconds": time.perf_counter() - start,
    }
    if result.config.tracking:  # the cell's diagnostics beside its training curves, in the same tracked run
        track(result, out, snr_log)
    write_atomic(cell_dir / RESULT_FILE, json_text(out) + "\n")
    return out


def objective_name(estimator: Any) -> str:
    """What the estimator's loss is the negation of: "bound", its own name for an estimate of
    log p(x) ("JVI estimate", "SUMO estimate"), or "objective" (not a bound, e.g. Renyi alpha < 0)."""
    if getattr(estimator, "reports_bound", True):
        return "bound"
    return str(getattr(estimator, "what", "objective"))


def check_plugins(config: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The plugins the cell's config names, imported here (from the comparison's folders, so that a
    worker on another node finds a loose module), and one line unless they are the code the
    comparison planned with (``settings["plugins"]``)."""
    add_roots(settings.get("plugin_roots", []))
    found = plugins_of(from_dict(config))
    changes = plugin_changes(settings.get("plugins", {}), found)
    if changes:
        raise ConfigError(
            f"cell {settings['cell']['id']}: this worker imports other plugin code than the comparison "
            f"({'; '.join(changes)}); every worker needs the same version of the plugin"
        )
    return found


def snr_at_epochs(settings: Settings, log: list[dict[str, Any]], path: Path) -> Callable[..., None]:
    """The training callback that measures the gradient SNR at the grid's ``snr_epochs``, each
    measure kept in ``path`` too, so that a cell resumed after a stop still has the earlier ones."""

    def measure(record: dict[str, Any], vae: VAE, estimator: Any, dataset: InMemoryData) -> None:
        if record["epoch"] in settings["snr_epochs"]:
            line = {"epoch": record["epoch"], "step": record["step"], **snr(settings, vae, estimator, dataset)}
            log.append(line)
            with path.open("a", encoding="utf-8") as f:
                f.write(json_text(line) + "\n")

    return measure


def read_snr(cell_dir: Path) -> list[dict[str, Any]]:
    """The SNR measures a stopped cell took before it stopped (lines torn by a kill skipped)."""
    path = cell_dir / SNR_FILE
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def snr(settings: Settings, vae: VAE, estimator: Any, dataset: InMemoryData) -> dict[str, Any]:
    x = dataset.test[spread(dataset.num_test, settings["snr_batch"], dataset.device)]
    groups = {"encoder": list(vae.guide.parameters()), "decoder": list(vae.model.parameters())}
    draws = settings["snr_draws"]
    blocks = max(b for b in range(1, 41) if draws % b == 0)
    res = gradient_snr(
        estimator,
        vae.model,
        vae.guide,
        x,
        groups=groups,
        num_draws=draws,
        num_blocks=blocks,
        num_data=dataset.num_train,
    )
    return {g: s.to_dict() for g, s in res.items()}


def bias(settings: Settings, vae: VAE, estimator: Any, dataset: InMemoryData) -> dict[str, Any]:
    """The gradient-bias test at the end of training, on the SNR's fixed batch: {} when off."""
    draws = settings.get("bias_draws", 0)
    if not draws:
        return {}
    x = dataset.test[spread(dataset.num_test, settings["snr_batch"], dataset.device)]
    groups = {"encoder": list(vae.guide.parameters()), "decoder": list(vae.model.parameters())}
    try:
        res = gradient_bias(
            estimator, vae.model, vae.guide, x, groups=groups, num_draws=draws, num_data=dataset.num_train
        )
    except ConfigError as e:  # an estimator that names no reference: said in the result, not a failed cell
        return {"refused": str(e)}
    return {g: b.to_dict() for g, b in res.items()}


def diagnose(settings: Settings, parts: Parts) -> dict[str, Any]:
    """The test evaluation (with per-point values), PSIS k-hat and ESS, the gaps and AIS."""
    cfg, vae, dataset = parts.config, parts.vae, parts.dataset
    evaluation = evaluate_model(
        vae.model,
        vae.guide,
        dataset.test_batches(cfg.eval_batch_size),
        num_particles=getattr(parts.estimator, "num_draws", cfg.num_particles),
        num_samples=settings["eval_num_samples"],
        chunk_size=cfg.eval_chunk_size,
        per_point=True,
    )
    points = evaluation.pop("points")
    found = {"evaluation": evaluation, "points": points, **psis(settings, parts), **gaps(settings, parts)}
    found.update(ais(settings, parts, points))
    return found


def psis(settings: Settings, parts: Parts) -> dict[str, Any]:
    """PSIS k-hat and importance ESS of the guide on test points spread over the set."""
    vae, dataset = parts.vae, parts.dataset
    idx = spread(dataset.num_test, settings["psis_points"], dataset.device)
    found = [
        importance_diagnostics(vae.model, vae.guide, dataset.test[chunk], num_samples=settings["psis_samples"])
        for chunk in idx.split(50)
    ]
    khat = np.concatenate([d["khat"] for d in found])
    ess = np.concatenate([d["ess"] for d in found])
    finite = khat[np.isfinite(khat)]
    return {
        "psis": {
            "khat_median": float(np.median(khat)),
            "khat_above_0.7": float((khat > 0.7).mean()),
            "khat_mean_finite": float(finite.mean()) if finite.size else None,
            "ess_mean": float(ess.mean()),
            "samples": settings["psis_samples"],
        },
        "psis_points": {"khat": khat.tolist(), "ess": ess.tolist(), "psis_index": idx.cpu().tolist()},
    }


def gaps(settings: Settings, parts: Parts) -> dict[str, Any]:
    """The approximation and amortization gaps; a guide without per-point parameters (a flow, a
    hierarchy) has none, and the report shows "-"."""
    vae, dataset = parts.vae, parts.dataset
    idx = spread(dataset.num_test, settings["gap_points"], dataset.device)
    if not hasattr(vae.guide, "local_parameters") or not settings["gap_points"]:
        return {"gaps": {}, "gap_points": {"gap_index": []}}
    found = amortization_gaps(
        vae.model,
        vae.guide,
        dataset.test[idx],
        steps=settings["gap_steps"],
        num_samples=min(settings["eval_num_samples"], 1000),
    )
    per_point = {f"gap_{k}": v.cpu().tolist() for k, v in found.items()}
    return {
        "gaps": {k: float(v.mean()) for k, v in found.items()},
        "gap_points": {"gap_index": idx.cpu().tolist(), **per_point},
    }


def ais(settings: Settings, parts: Parts, points: dict[str, Any]) -> dict[str, Any]:
    """AIS log p(x) on test points spread over the set, beside their IS estimate computed above."""
    if not settings.get("ais_points", 0):
        return {"ais": {}, "ais_points": {}}
    cfg, dataset = parts.config, parts.dataset
    idx = spread(dataset.num_test, settings["ais_points"], dataset.device)
    is_points = torch.tensor(points["log_likelihood"], device=dataset.device)[idx]
    found = ais_against_is(
        parts.vae,
        dataset.test[idx],
        num_samples=settings["eval_num_samples"],
        chunk_size=cfg.eval_chunk_size,
        batch_size=cfg.eval_batch_size,
        is_points=is_points,
        num_steps=settings["ais_steps"],
        num_chains=settings["ais_chains"],
        hmc_steps=settings["ais_hmc_steps"],
    )
    return {
        "ais": {k: v for k, v in found.items() if k != "points"},
        "ais_points": {"ais_index": idx.cpu().tolist(), "ais": found["points"]["ais"]},
    }


def summary(result: TrainResult, found: dict[str, Any], snr_log: list[dict[str, Any]]) -> dict[str, Any]:
    """The cell's result: the training curves and budget used, the evaluation and diagnostics."""
    epochs = [m for m in result.metrics if m["epoch"] > 0]
    return {
        "metrics": result.metrics,
        "evaluation": found["evaluation"],
        "epochs": epochs[-1]["epoch"] if epochs else 0,
        "steps": epochs[-1]["step"] if epochs else 0,
        "seconds_per_epoch": float(np.mean([m["seconds"] for m in epochs])) if epochs else 0.0,
        "train_seconds": float(sum(m["seconds"] for m in epochs)),
        "snr": snr_log,
        "bias": found["bias"],
        "psis": found["psis"],
        "gaps": found["gaps"],
        "ais": found["ais"],
        "points": {**found["points"], **found["psis_points"], **found["gap_points"], **found["ais_points"]},
        "diagnostics_seconds": found["diagnostics_seconds"],
    }


def track(result: TrainResult, out: dict[str, Any], snr_log: list[dict[str, Any]]) -> None:
    cfg = result.config
    with open_tracker(cfg.tracking, result.run_dir, uri=cfg.tracking_uri, resume=True) as tracker:
        for record in snr_log:
            tracker.log_scalars({"snr": {g: record[g]["mean_snr"] for g in ("encoder", "decoder")}}, record["epoch"])
        tracker.log_scalars({"psis": out["psis"], "gaps": out["gaps"], "ais": out["ais"]}, out["epochs"])
