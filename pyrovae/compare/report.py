"""The comparison report: report.md, results.csv, results.nc (xarray) and PNG plots."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.image
import numpy as np
import xarray as xr
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..run import BOUND_KEYS

if TYPE_CHECKING:
    from .grid import GridSpec

# column -> (how to read it from a cell's result, +1 if higher is better / -1 lower / 0 neither, label)
COLUMNS: dict[str, tuple[Any, int, str]] = {
    "test_log_likelihood": (lambda r: r["evaluation"].get("log_likelihood"), 1, "log p(x)"),
    "test_elbo": (lambda r: r["evaluation"]["elbo"], 1, "ELBO"),
    "test_iwae_bound": (lambda r: r["evaluation"]["iwae_bound"], 1, "IWAE(K)"),
    "kl": (lambda r: r["evaluation"]["kl"], 0, "KL"),
    "reconstruction": (lambda r: r["evaluation"]["reconstruction"], 1, "recon."),
    "active_units": (lambda r: r["evaluation"].get("active_units"), 1, "AU"),
    "snr_encoder": (lambda r: r["snr"][-1]["encoder"]["mean_snr"], 1, "SNR enc."),
    "snr_decoder": (lambda r: r["snr"][-1]["decoder"]["mean_snr"], 1, "SNR dec."),
    # the gradient-bias test: share of scalars with |z| > 3 against the reference gradient (0.27% if unbiased)
    "bias_encoder": (lambda r: r["bias"]["encoder"]["fraction_over"], -1, "bias enc."),
    "bias_decoder": (lambda r: r["bias"]["decoder"]["fraction_over"], -1, "bias dec."),
    "khat_median": (lambda r: r["psis"]["khat_median"], -1, "k-hat med."),
    "khat_above_0.7": (lambda r: r["psis"]["khat_above_0.7"], -1, "k-hat>0.7"),
    "ess": (lambda r: r["psis"]["ess_mean"], 1, "ESS/K"),
    "approximation_gap": (lambda r: r["gaps"]["approximation_gap"], -1, "approx. gap"),
    "amortization_gap": (lambda r: r["gaps"]["amortization_gap"], -1, "amort. gap"),
    "seconds_per_epoch": (lambda r: r["seconds_per_epoch"], -1, "s/epoch"),
    # with ais_points: AIS log p(x) and IS minus AIS on those points (negative: IS understates log p(x))
    "ais_log_likelihood": (lambda r: r["ais"]["log_likelihood_ais"], 1, "log p(x) AIS"),
    "is_minus_ais": (lambda r: r["ais"]["is_minus_ais"], 0, "IS - AIS"),
}
CELL_KEYS = ("id", "estimator", "label", "num_particles", "likelihood", "seed")


def _value(fn: Any, r: dict[str, Any]) -> float:
    try:
        v = fn(r)
    except (KeyError, IndexError, TypeError):
        return math.nan
    return math.nan if v is None else float(v)


def rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in results:
        row = {k: r["cell"][k] for k in CELL_KEYS}
        row.update({"epochs": r["epochs"], "steps": r["steps"], "train_seconds": r["train_seconds"]})
        row.update({c: _value(fn, r) for c, (fn, _, _) in COLUMNS.items()})
        out.append(row)
    return out


def _mean_sd(values: list[float]) -> tuple[float, float]:
    v = np.array(values, dtype=float)
    v = v[np.isfinite(v)]
    if not v.size:
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def _fmt(x: float, col: str) -> str:
    if not math.isfinite(x):
        return "-"
    return f"{x:.3f}" if abs(x) < 10 and col not in ("active_units",) else f"{x:.2f}"


def markdown_table(table_rows: list[dict[str, Any]]) -> str:
    """Mean +- sd over seeds per (estimator, likelihood); the best of each column in bold; a column
    that no cell measured (AIS without ``ais_points``) is left out."""
    columns = {c: v for c, v in COLUMNS.items() if any(math.isfinite(r[c]) for r in table_rows)}
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in table_rows:
        groups[(r["likelihood"], r["label"])].append(r)
    stats = {g: {c: _mean_sd([r[c] for r in rs]) for c in columns} for g, rs in groups.items()}
    best: dict[tuple[str, str], float] = {}
    for (lik, _), s in stats.items():
        for c, (_, sign, _) in columns.items():
            m = s[c][0]
            if sign and math.isfinite(m):
                key = (lik, c)
                if key not in best or sign * m > sign * best[key]:
                    best[key] = m
    head = "| likelihood | estimator | seeds | " + " | ".join(label for _, _, label in columns.values()) + " |"
    lines = [head, "|" + "---|" * (3 + len(columns))]
    for (lik, label), s in stats.items():
        cells = []
        for c, (_, sign, _) in columns.items():
            m, sd = s[c]
            text = f"{_fmt(m, c)} ± {_fmt(sd, c)}" if math.isfinite(m) else "-"
            cells.append(f"**{text}**" if sign and best.get((lik, c)) == m else text)
        lines.append(f"| {lik} | {label} | {len(groups[(lik, label)])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _figure(w: float, h: float) -> Figure:
    fig = Figure(figsize=(w, h))
    FigureCanvasAgg(fig)
    return fig


def plot_learning_curves(path: Path, results: list[dict[str, Any]]) -> None:
    fig = _figure(7, 4.2)
    ax = fig.add_subplot()
    by_label: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        by_label[f"{r['cell']['label']} ({r['cell']['likelihood']})"].append(r)
    for i, (label, rs) in enumerate(by_label.items()):
        color = f"C{i % 10}"
        for r in rs:
            m = [x for x in r["metrics"] if x["epoch"] > 0]
            ep = [x["epoch"] for x in m]
            ax.plot(ep, [-x["train_loss"] for x in m], color=color, linestyle="--", alpha=0.7, linewidth=1)
            test = [(x["epoch"], x["test_bound"]) for x in m if "test_bound" in x]
            if test:
                ax.plot(*zip(*test, strict=True), color=color, linewidth=1.5, label=label if r is rs[0] else None)
    ax.set_xlabel("epoch")
    ax.set_ylabel("bound (nats per image)")
    ax.set_title("learning curves: train (dashed) and test (solid) bound")
    ax.legend(fontsize=7)
    lo = min((x.get("test_bound", 0) for r in results for x in r["metrics"] if x["epoch"] > 0), default=0)
    hi = max((x.get("test_bound", lo) for r in results for x in r["metrics"]), default=0)
    ax.set_ylim(lo - 0.1 * abs(hi - lo) - 1, hi + 0.3 * abs(hi - lo) + 1)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_snr(path: Path, results: list[dict[str, Any]]) -> None:
    fig = _figure(9, 3.6)
    for j, group in enumerate(("encoder", "decoder")):
        ax = fig.add_subplot(1, 2, j + 1)
        by_name: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        for r in results:
            by_name[r["cell"]["estimator"]][r["cell"]["num_particles"]].append(r["snr"][-1][group]["mean_snr"])
        for i, (name, by_k) in enumerate(sorted(by_name.items())):
            ks = sorted(by_k)
            m = [np.mean(by_k[k]) for k in ks]
            sd = [np.std(by_k[k]) for k in ks]
            ax.errorbar(ks, m, yerr=sd, marker="o", capsize=3, color=f"C{i}", label=name)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("K")
        ax.set_title(f"{group} gradient SNR at the end of training", fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_khat(path: Path, results: list[dict[str, Any]]) -> None:
    by_label: dict[str, list[float]] = defaultdict(list)
    for r in results:
        by_label[r["cell"]["label"]].extend(k for k in r["points"]["khat"] if k is not None and math.isfinite(k))
    n = max(len(by_label), 1)
    cols = min(n, 3)
    fig = _figure(3.2 * cols, 2.6 * math.ceil(n / cols))
    for i, (label, ks) in enumerate(by_label.items()):
        ax = fig.add_subplot(math.ceil(n / cols), cols, i + 1)
        ax.hist(ks, bins=30, color="C0")
        ax.axvline(0.7, color="red", linestyle="--", linewidth=1)
        ax.set_title(f"{label}: {np.mean(np.array(ks) > 0.7):.0%} > 0.7" if ks else label, fontsize=9)
        ax.set_xlabel("PSIS k-hat per test point", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_samples(path: Path, out: Path, results: list[dict[str, Any]]) -> None:
    first: dict[str, dict[str, Any]] = {}
    for r in results:
        first.setdefault(f"{r['cell']['label']} ({r['cell']['likelihood']})", r)
    fig = _figure(2.6 * len(first), 3.0)
    for i, (label, r) in enumerate(first.items()):
        ax = fig.add_subplot(1, len(first), i + 1)
        png = out / "cells" / r["cell"]["id"] / "samples.png"
        if png.exists():
            ax.imshow(matplotlib.image.imread(str(png)))
        ax.set_title(label, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_netcdf(path: Path, results: list[dict[str, Any]], table_rows: list[dict[str, Any]], spec_text: str) -> None:
    """The raw per-cell results as an xarray Dataset: scalars per cell, values per test point,
    learning curves per epoch (NaN where a cell has fewer epochs)."""
    ids = [r["cell"]["id"] for r in results]

    def padded(key_fn: Any, n: int) -> np.ndarray:
        a = np.full((len(results), n), np.nan)
        for i, r in enumerate(results):
            v = np.asarray(key_fn(r), dtype=float)
            a[i, : v.size] = v
        return a

    n_point = max(len(r["points"].get("log_likelihood", [])) for r in results)
    n_psis = max(len(r["points"]["khat"]) for r in results)
    n_gap = max(len(r["points"].get("gap_amortization_gap", [])) for r in results)
    n_ais = max(len(r["points"].get("ais", [])) for r in results)
    n_epoch = max(len(r["metrics"]) for r in results)
    data_vars: dict[str, Any] = {c: ("cell", [row[c] for row in table_rows]) for c in COLUMNS}
    data_vars.update(
        {
            "log_likelihood": (("cell", "point"), padded(lambda r: r["points"].get("log_likelihood", []), n_point)),
            "elbo": (("cell", "point"), padded(lambda r: r["points"]["elbo"], n_point)),
            "iwae_bound": (("cell", "point"), padded(lambda r: r["points"]["iwae_bound"], n_point)),
            "khat": (("cell", "psis_point"), padded(lambda r: r["points"]["khat"], n_psis)),
            "ess": (("cell", "psis_point"), padded(lambda r: r["points"]["ess"], n_psis)),
            "approximation_gap_point": (
                ("cell", "gap_point"),
                padded(lambda r: r["points"].get("gap_approximation_gap", []), n_gap),
            ),
            "amortization_gap_point": (
                ("cell", "gap_point"),
                padded(lambda r: r["points"].get("gap_amortization_gap", []), n_gap),
            ),
            "log_likelihood_ais": (("cell", "ais_point"), padded(lambda r: r["points"].get("ais", []), n_ais)),
            "ais_index": (("cell", "ais_point"), padded(lambda r: r["points"].get("ais_index", []), n_ais)),
            "train_loss": (
                ("cell", "epoch"),
                padded(lambda r: [m.get("train_loss", np.nan) for m in r["metrics"]], n_epoch),
            ),
            "test_bound": (
                ("cell", "epoch"),
                padded(lambda r: [next((m[k] for k in BOUND_KEYS if k in m), np.nan) for m in r["metrics"]], n_epoch),
            ),
        }
    )
    coords = {
        "cell": ids,
        "estimator": ("cell", [r["cell"]["estimator"] for r in results]),
        "label": ("cell", [r["cell"]["label"] for r in results]),
        "num_particles": ("cell", [r["cell"]["num_particles"] for r in results]),
        "likelihood": ("cell", [r["cell"]["likelihood"] for r in results]),
        "seed": ("cell", [r["cell"]["seed"] for r in results]),
        "epoch": np.arange(n_epoch),
    }
    ds = xr.Dataset(data_vars, coords=coords, attrs={"comparison": spec_text, "created_by": "pyrovae compare"})
    ds.to_netcdf(path)


def not_bounds(results: list[dict[str, Any]]) -> str:
    """A sentence naming the estimators whose training value is not a bound (JVI, SUMO: estimates)."""
    found = {r["cell"]["label"].split(" ")[0]: r.get("objective", "bound") for r in results}
    named = [f"{e} (its training value is the {o}, not a bound)" for e, o in sorted(found.items()) if o != "bound"]
    return f"Not bounds: {'; '.join(named)}. " if named else ""


def plugins_section(results: list[dict[str, Any]]) -> list[str]:
    """A table of the plugins the cells ran (import path, distribution and version, source hash),
    so that every number traces to the code that produced it; nothing without plugins."""
    used: dict[tuple[str, str], tuple[dict[str, Any], list[str]]] = {}
    for r in results:
        for key, origin in r.get("plugins", {}).items():
            used.setdefault((key, origin["import_path"]), (origin, []))[1].append(r["cell"]["id"])
    if not used:
        return []
    header = "| kind | import path | distribution | version | source sha256 | cells |"
    lines = ["## Plugins", "", header, "|---" * 6 + "|"]
    for (key, path), (o, cells) in sorted(used.items()):
        dist = o["distribution"] or "(a loose module)"
        lines.append(f"| {key} | `{path}` | {dist} | {o['version'] or '-'} | `{o['source_sha256']}` | {len(cells)} |")
    return [*lines, ""]


def write_report(out: Path, spec: GridSpec, results: list[dict[str, Any]]) -> dict[str, Any]:
    """Write report.md, results.csv, results.nc and the plots; return the table rows."""
    table_rows = rows(results)
    with (out / "results.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table_rows[0]))
        w.writeheader()
        w.writerows(table_rows)
    spec_text = spec.to_toml()
    write_netcdf(out / "results.nc", results, table_rows, spec_text)
    plot_learning_curves(out / "learning_curves.png", results)
    plot_snr(out / "snr_vs_k.png", results)
    plot_khat(out / "khat.png", results)
    plot_samples(out / "samples.png", out, results)
    unit, amount = next(iter(spec.budget.items()))
    total = sum(r["seconds"] for r in results)
    md = [
        "# pyrovae comparison",
        "",
        f"{len(results)} cells; budget: {amount:g} {unit} each; mean ± sd over seeds {spec.seeds}; "
        f"the best of each column in bold (higher is better, except k-hat, gaps and seconds; KL is "
        f"neither). Test metrics in nats per image over {results[0]['evaluation']['num_points']} test "
        f"points; log p(x) importance-sampled at K = {spec.eval_num_samples}; SNR from "
        f"{spec.snr_draws} gradient draws at the end of training (Rainforth et al. 2018); bias: the share of "
        f"parameters whose mean gradient differs from an unbiased reference's (IWAE's for an IWAE-type bound, "
        f"the ELBO's, or the estimator's own bound differentiated) with |z| > 3 over {spec.bias_draws} paired "
        f"draws, about 0.003 for an unbiased estimator; PSIS k-hat "
        f"and ESS/K from {spec.psis_samples} particles on {spec.psis_points} test points; gaps "
        f"(Cremer et al. 2018) on {spec.gap_points} test points. "
        + (
            f"AIS log p(x) (HMC, {spec.ais_steps} steps, {spec.ais_chains} chains, {spec.ais_hmc_steps} leapfrog "
            f"steps; Wu et al. 2017) on {spec.ais_points} test points, and IS minus AIS on the same points "
            f"(negative: IS understates log p(x)). "
            if spec.ais_points
            else ""
        )
        + not_bounds(results)
        + f"Cell time in all: {total / 60:.1f} min.",
        "",
        markdown_table(table_rows),
        "",
        "![learning curves](learning_curves.png)",
        "![gradient SNR against K](snr_vs_k.png)",
        "![PSIS k-hat](khat.png)",
        "![samples](samples.png)",
        "",
        *plugins_section(results),
        "## Configuration",
        "",
        "```toml",
        spec_text.rstrip(),
        "```",
        "",
        "Each cell's full `pyrovae train` config is in `cells/<id>/run/config.toml`; raw results in "
        "`results.csv`, `results.nc` (xarray) and `cells/<id>/result.json`.",
    ]
    (out / "report.md").write_text("\n".join(md) + "\n")
    return {"rows": table_rows, "report": str(out / "report.md")}
