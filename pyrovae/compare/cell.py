"""One cell of a comparison: train, then every diagnostic, then ``result.json`` (written last)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import torch

from ..data import InMemoryData
from ..diagnostics import amortization_gaps, gradient_snr, importance_diagnostics
from ..evaluation.metrics import evaluate_model
from ..evaluation.plots import save_grid
from ..evaluation.report import ais_against_is
from ..tracking import open_tracker
from ..training import train
from ..vae import VAE

RESULT_FILE = "result.json"


def _spread(n: int, count: int, device: torch.device) -> torch.Tensor:
    """``count`` indices spread evenly over ``n`` points (every digit, not the first class)."""
    return torch.linspace(0, n - 1, min(count, n), device=device).round().long()


def _snr(settings: dict[str, Any], vae: VAE, estimator: Any, dataset: InMemoryData) -> dict[str, Any]:
    x = dataset.test[_spread(dataset.num_test, settings["snr_batch"], dataset.device)]
    groups = {"encoder": list(vae.guide.parameters()), "decoder": list(vae.model.parameters())}
    draws = settings["snr_draws"]
    blocks = max(b for b in range(1, 41) if draws % b == 0)
    res = gradient_snr(estimator, vae.model, vae.guide, x, groups=groups, num_draws=draws,
                       num_blocks=blocks, num_data=dataset.num_train)  # fmt: skip
    return {g: s.to_dict() for g, s in res.items()}


def run_cell(cell_dir: str | Path, config: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """Train one cell into ``cell_dir/run`` and write ``cell_dir/result.json``.

    ``settings``: the grid's diagnostic settings (``eval_num_samples``, ``psis_samples``,
    ``psis_points``, ``snr_draws``, ``snr_batch``, ``snr_epochs``, ``gap_points``, ``gap_steps``,
    ``ais_points``, ``ais_steps``, ``ais_chains``, ``ais_hmc_steps``) and the cell's description
    (``cell``). ``result.json`` is written atomically as the very last
    step, so its presence is what makes a cell done.
    """
    cell_dir = Path(cell_dir)
    start = time.perf_counter()
    snr_log: list[dict[str, Any]] = []

    def measure(record: dict[str, Any], vae: VAE, estimator: Any, dataset: InMemoryData) -> None:
        if record["epoch"] in settings["snr_epochs"]:
            snr_log.append({"epoch": record["epoch"], "step": record["step"],
                            **_snr(settings, vae, estimator, dataset)})  # fmt: skip

    result = train(config, cell_dir / "run", evaluate=False, after_epoch=measure)
    vae, cfg = result.vae, result.config
    device = next(vae.parameters()).device
    from ..estimators import make
    from ..training import load_images

    dataset = InMemoryData(load_images(cfg), vae.likelihood, cfg.binarization, device, cfg.seed)
    estimator = make(cfg.estimator, num_particles=cfg.num_particles, **cfg.estimator_options)
    vae.eval()
    with pyro.settings.context(module_local_params=True), pyro.validation_enabled(False):
        last = result.metrics[-1]
        if not snr_log or snr_log[-1]["epoch"] != last["epoch"]:
            snr_log.append({"epoch": last["epoch"], "step": last["step"],
                            **_snr(settings, vae, estimator, dataset)})  # fmt: skip
        t = time.perf_counter()
        evaluation = evaluate_model(
            vae.model, vae.guide, dataset.test_batches(cfg.eval_batch_size),
            num_particles=getattr(estimator, "num_draws", cfg.num_particles),
            num_samples=settings["eval_num_samples"], chunk_size=cfg.eval_chunk_size, per_point=True,
        )  # fmt: skip
        points = evaluation.pop("points")
        idx = _spread(dataset.num_test, settings["psis_points"], device)
        khat, ess = [], []
        for chunk in idx.split(50):
            d = importance_diagnostics(vae.model, vae.guide, dataset.test[chunk],
                                       num_samples=settings["psis_samples"])  # fmt: skip
            khat.append(d["khat"])
            ess.append(d["ess"])
        khat, ess = np.concatenate(khat), np.concatenate(ess)
        gaps: dict[str, Any] = {}  # a guide without per-point parameters (a flow, a hierarchy) has no gaps: "-"
        gap_idx = _spread(dataset.num_test, settings["gap_points"], device)
        if hasattr(vae.guide, "local_parameters") and settings["gap_points"]:
            gaps = amortization_gaps(vae.model, vae.guide, dataset.test[gap_idx], steps=settings["gap_steps"],
                                     num_samples=min(settings["eval_num_samples"], 1000))  # fmt: skip
        else:
            gap_idx = gap_idx[:0]
        ais_result: dict[str, Any] = {}
        ais_idx = _spread(dataset.num_test, settings.get("ais_points", 0), device)
        if settings.get("ais_points", 0):  # beside the IS estimate of the same points, computed above
            is_points = torch.tensor(points["log_likelihood"], device=device)[ais_idx]
            ais_result = ais_against_is(
                vae, dataset.test[ais_idx], num_samples=settings["eval_num_samples"], chunk_size=cfg.eval_chunk_size,
                batch_size=cfg.eval_batch_size, is_points=is_points, num_steps=settings["ais_steps"],
                num_chains=settings["ais_chains"], hmc_steps=settings["ais_hmc_steps"],
            )  # fmt: skip
        diag_seconds = time.perf_counter() - t
        with torch.no_grad():
            save_grid(cell_dir / "samples.png", vae.sample(64) / (255.0 if dataset.kind == "counts" else 1.0),
                      dataset.images.image_shape)  # fmt: skip

    epochs = [m for m in result.metrics if m["epoch"] > 0]
    finite_khat = khat[np.isfinite(khat)]
    out = {
        "cell": settings["cell"],
        "config": cfg.to_dict(),
        "metrics": result.metrics,
        "evaluation": evaluation,
        "epochs": epochs[-1]["epoch"] if epochs else 0,
        "steps": epochs[-1]["step"] if epochs else 0,
        "seconds_per_epoch": float(np.mean([m["seconds"] for m in epochs])) if epochs else 0.0,
        "train_seconds": float(sum(m["seconds"] for m in epochs)),
        "snr": snr_log,
        "psis": {
            "khat_median": float(np.median(khat)),
            "khat_above_0.7": float((khat > 0.7).mean()),
            "khat_mean_finite": float(finite_khat.mean()) if finite_khat.size else None,
            "ess_mean": float(ess.mean()),
            "samples": settings["psis_samples"],
        },  # fmt: skip
        "gaps": {k: float(v.mean()) for k, v in gaps.items()},
        "ais": {k: v for k, v in ais_result.items() if k != "points"},
        "points": {
            **points,
            "khat": khat.tolist(),
            "ess": ess.tolist(),
            "psis_index": idx.cpu().tolist(),
            "gap_index": gap_idx.cpu().tolist(),
            **{f"gap_{k}": v.cpu().tolist() for k, v in gaps.items()},
            **({"ais_index": ais_idx.cpu().tolist(), "ais": ais_result["points"]["ais"]} if ais_result else {}),
        },  # fmt: skip
        "diagnostics_seconds": diag_seconds,
        "seconds": time.perf_counter() - start,
    }
    if cfg.tracking:  # the cell's diagnostics beside its training curves, in the same tracked run
        with open_tracker(cfg.tracking, cell_dir / "run", uri=cfg.tracking_uri, resume=True) as tracker:
            for record in snr_log:
                tracker.log_scalars(
                    {"snr": {g: record[g]["mean_snr"] for g in ("encoder", "decoder")}}, record["epoch"]
                )
            tracker.log_scalars({"psis": out["psis"], "gaps": out["gaps"], "ais": out["ais"]}, out["epochs"])
    tmp = cell_dir / (RESULT_FILE + ".tmp")
    tmp.write_text(json.dumps(out) + "\n")
    os.replace(tmp, cell_dir / RESULT_FILE)
    return out
