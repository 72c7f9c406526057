"""How far the importance-sampled log p(x) sits below the truth on the embedded digits: IS against
AIS and the BDMC bracket, for models trained by ``elbo`` and by ``iwae`` K=50.

Each model is pyrovae's default run (``pyrovae train``: 784-400-50 ReLU, Bernoulli, 200 epochs on
the 4,500 training digits) with its estimator. On the first ``--points`` test digits: IS at
K = 5000 (the number pyrovae reports) and AIS from the guide at 1,000 and 10,000 intermediate
distributions (16 chains, HMC with ``--leapfrogs`` leapfrog steps, the step size adapted per point);
then BDMC on ``--bdmc-points`` data points simulated from each model: forward AIS (a lower bound),
reverse AIS from the simulated latents (an upper bound) and IS with as many model evaluations as
the forward run. Every piece's seconds are kept. Results are saved after each piece, so a killed
run resumes where it stopped.

Usage: python benchmarks/ais_digits.py --runs DIR [--points 100] [--leapfrogs 5]
Writes benchmarks/results/ais_digits.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pyro
import torch

from pyrovae.diagnostics import bdmc
from pyrovae.evaluation import ais, log_likelihood
from pyrovae.run import load_run

HERE = Path(__file__).parent
MODELS = {"elbo": ["--estimator", "elbo"], "iwae K=50": ["--estimator", "iwae", "--num-particles", "50"]}


def train(runs: Path, epochs: int | None) -> dict[str, Path]:
    dirs = {}
    for label, flags in MODELS.items():
        run = runs / label.replace(" ", "").replace("=", "")
        if not (run / "evaluation.json").exists():
            start = time.perf_counter()
            more = ["--epochs", str(epochs)] if epochs else []
            cmd = [sys.executable, "-m", "pyrovae", "train", "--out", str(run), "--quiet", *flags, *more]
            subprocess.run(cmd, check=True)
            print(f"trained {label} in {time.perf_counter() - start:.0f} s", flush=True)
        dirs[label] = run
    return dirs


def piece(results: dict, path: Path, key: str, fn) -> dict:
    """Run ``fn`` unless ``results`` has ``key`` already; save after each piece."""
    if key not in results:
        start = time.perf_counter()
        torch.manual_seed(0)
        with pyro.settings.context(module_local_params=True), pyro.validation_enabled(False):
            value = fn()
        results[key] = {**value, "seconds": time.perf_counter() - start}
        path.write_text(json.dumps(results, indent=2) + "\n")
        print(key, {k: v for k, v in results[key].items() if not isinstance(v, list)}, flush=True)
    return results[key]


def importance(vae, x: torch.Tensor) -> dict:
    ll = torch.cat([log_likelihood(vae.model, vae.guide, c, num_samples=5000, chunk_size=500) for c in x.split(50)])
    return {"mean": ll.mean().item(), "points": ll.tolist()}


def annealed(vae, x: torch.Tensor, steps: int, opts: dict) -> dict:
    r = ais(vae.model, vae.guide, x, num_steps=steps, **opts)
    return {"mean": r.log_likelihood.mean().item(), "acceptance": r.acceptance.mean().item(),
            "points": r.log_likelihood.tolist()}  # fmt: skip


def bracket(vae, n: int, steps: int, opts: dict) -> dict:
    r = bdmc(vae.model, vae.guide, n, torch.zeros(n, 784), num_steps=steps, **opts)
    return {**r.summary(), "is_samples": r.is_samples, "parts": r.seconds, "acceptance": r.acceptance.mean().item()}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=Path, required=True, help="where the two trained runs are (or go)")
    p.add_argument("--points", type=int, default=100, help="test digits scored by IS and AIS")
    p.add_argument("--steps", type=int, nargs="+", default=[1000, 10000], help="AIS intermediate distributions")
    p.add_argument("--chains", type=int, default=16)
    p.add_argument("--leapfrogs", type=int, default=5, help="leapfrog steps per HMC transition")
    p.add_argument("--bdmc-points", type=int, default=100)
    p.add_argument("--bdmc-steps", type=int, nargs="+", default=[1000])
    p.add_argument("--epochs", type=int, default=None, help="train for this many epochs (default: the default run's)")
    p.add_argument("--results", type=Path, default=HERE / "results", help="where the json and md go")
    args = p.parse_args(argv)
    out = args.results
    out.mkdir(parents=True, exist_ok=True)
    path = out / "ais_digits.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results["settings"] = {k: v for k, v in vars(args).items() if k not in ("runs", "results")}
    opts = {"num_chains": args.chains, "hmc_steps": args.leapfrogs}
    for label, run in train(args.runs, args.epochs).items():
        _, parts = load_run(run, "cpu")
        vae, data = parts.vae, parts.dataset
        x = data.test[: args.points]
        piece(results, path, f"{label} | IS K=5000", partial(importance, vae, x))
        for steps in args.steps:
            piece(results, path, f"{label} | AIS {steps}", partial(annealed, vae, x, steps, opts))
        for steps in args.bdmc_steps:
            piece(results, path, f"{label} | BDMC {steps}", partial(bracket, vae, args.bdmc_points, steps, opts))
    (out / "ais_digits.md").write_text(markdown(results, args))
    return results


def markdown(results: dict, args: argparse.Namespace) -> str:
    lines = [
        f"Test log-likelihood of the first {args.points} embedded test digits, nats per digit (mean); AIS from the "
        f"guide with {args.chains} chains and {args.leapfrogs} leapfrog steps per HMC transition; time in brackets.",
        "",
        "| model trained by | IS, K=5000 | "
        + " | ".join(f"AIS, {s:,} steps" for s in args.steps)
        + f" | IS - AIS ({args.steps[-1]:,}) |",
        "|---|---|" + "---|" * len(args.steps) + "---|",
    ]
    for label in MODELS:
        imp = results.get(f"{label} | IS K=5000")
        if imp is None:
            continue
        row = f"| {label} | {imp['mean']:.2f} ({imp['seconds']:.0f} s) |"
        last = None
        for s in args.steps:
            a = results.get(f"{label} | AIS {s}")
            row += f" {a['mean']:.2f} ({a['seconds']:.0f} s) |" if a else " - |"
            last = a or last
        row += f" {imp['mean'] - last['mean']:+.2f} |" if last else " - |"
        lines.append(row)
    lines += [
        "",
        f"BDMC on {args.bdmc_points} digits simulated from each model: forward AIS (lower bound), reverse AIS "
        "from the simulated latents (upper bound), IS with the forward run's number of model evaluations.",
        "",
        "| model trained by | steps | lower | upper | gap | IS (same cost) | IS - lower | seconds (fwd / rev / IS) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label in MODELS:
        for s in args.bdmc_steps:
            b = results.get(f"{label} | BDMC {s}")
            if b:
                t = b["parts"]
                lines.append(
                    f"| {label} | {s:,} | {b['lower']:.2f} | {b['upper']:.2f} | {b['gap']:.2f} | "
                    f"{b['importance']:.2f} (K={b['is_samples']:,}) | {b['importance_minus_lower']:+.2f} | "
                    f"{t['forward']:.0f} / {t['reverse']:.0f} / {t['importance']:.0f} |"
                )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
