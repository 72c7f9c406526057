"""Issue 11's grid in one table: does each family improve test log p(x) over the one-Gaussian VAE?

Reads the cells of a finished `pyrovae compare --config benchmarks/comparison/families.toml` run
and writes `summary.md` beside its `report.md`: per estimator, the test log-likelihood (IS,
K = 5000) of each (guide, layers) family as mean +- sd over seeds, and its difference from the
Gaussian guide with one layer of the same estimator and seeds (positive: the family is better),
with the standard error of that difference over seeds; then the training time per epoch.

Usage: python benchmarks/families_summary.py [RUN_DIR]  (default benchmarks/comparison/families)
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import torch

HERE = Path(__file__).parent


def family_name(variant: dict) -> str:
    layers = len(variant.get("latents", [50]))
    return f"{variant.get('guide', 'gaussian')} guide, {layers} layer{'s' if layers > 1 else ''}"


def active_units_now(run_dir: Path) -> int:
    """Active units of a cell's trained model (its checkpoint), from E_q[z | x] as pyrovae measures
    it now (``posterior_mean``: exact or Rao-Blackwellized per layer, 1,000 draws for a flow)."""
    from pyrovae.config import load
    from pyrovae.data import InMemoryData
    from pyrovae.evaluation.metrics import _posterior_mean, active_units
    from pyrovae.run import build_vae, checkpoint, load_images

    cfg = load(run_dir / "config.toml")
    torch.manual_seed(cfg.seed)
    images = load_images(cfg)
    vae = build_vae(cfg, images)
    checkpoint.restore(vae, checkpoint.load(run_dir / "checkpoint.pt")["model"], run_dir / "checkpoint.pt")
    data = InMemoryData(images, vae.likelihood, cfg.binarization, "cpu", cfg.seed)
    with torch.no_grad():
        means = torch.cat([_posterior_mean(vae.guide, x, {}, 1) for x in data.test_batches(100)])
    return active_units(means)


def main(argv: list[str]) -> str:
    run = Path(argv[0]) if argv else HERE / "comparison" / "families"
    ll: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    epoch_s: dict[tuple[str, str], list[float]] = defaultdict(list)
    units: dict[tuple[str, str], list[int]] = defaultdict(list)
    for path in sorted(run.glob("cells/*/result.json")):
        r = json.loads(path.read_text())
        key = (r["cell"]["estimator"] + f" K={r['cell']['num_particles']}", family_name(r["cell"]["variant"]))
        ll[key][r["cell"]["seed"]] = r["evaluation"]["log_likelihood"]
        epoch_s[key].append(r["train_seconds"] / max(r["epochs"], 1))
        units[key].append(active_units_now(path.parent / "run"))
    estimators = sorted({e for e, _ in ll}, key=lambda e: (e != "elbo K=1", e))
    families = sorted({f for _, f in ll}, key=lambda f: (not f.startswith("gaussian"), f))
    base = families[0]
    lines = [
        "Test log p(x) (IS, K = 5000, over the test digits) per estimator and family, mean ± sd over seeds; "
        f"in brackets the difference from the {base} VAE trained with the same estimator and seeds "
        "(mean ± standard error over seeds; positive: better); AU: active units of each seed's model (seed 0 / "
        "seed 1; of 50 units with one layer, 150 with two), all layers together, from E_q[z | x] (exact or "
        "Rao-Blackwellized per layer; 1,000 draws for a flow); s/epoch: training time.",
        "",
        "| estimator | " + " | ".join(families) + " |",
        "|---|" + "---|" * len(families),
    ]
    for est in estimators:
        cells = []
        for fam in families:
            values = ll.get((est, fam), {})
            if not values:
                cells.append("-")
                continue
            mean = statistics.mean(values.values())
            sd = statistics.stdev(values.values()) if len(values) > 1 else 0.0
            text = f"{mean:.2f} ± {sd:.2f}"
            ref = ll.get((est, base), {})
            seeds = sorted(set(values) & set(ref))
            if fam != base and seeds:
                diffs = [values[s] - ref[s] for s in seeds]
                se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else 0.0
                text += f" ({statistics.mean(diffs):+.2f} ± {se:.2f})"
            text += f"; AU {'/'.join(map(str, units[(est, fam)]))}; {statistics.mean(epoch_s[(est, fam)]):.1f} s/epoch"
            cells.append(text)
        lines.append(f"| {est} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    (run / "summary.md").write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    main(sys.argv[1:])
