"""Points a second of the importance-sampled log p(x) for each model family, against the
one-Gaussian VAE with the same encoder and decoder, as ratios.

Every family is built on pyrovae's default MNIST architecture (784 binary pixels, one hidden layer
of 400 ReLU units, z of 50; two stochastic layers take latents [100, 50]), untrained, seed 0, and
scores the same ``--points`` embedded test digits with ``pyrovae.log_likelihood`` at ``--k``
particles drawn ``--chunk`` at a time, all points in one call (the run's ``eval_batch_size``),
under ``torch.no_grad`` as the run's evaluation does. Each round times every family once,
interleaved (the order reversed every other round); the table gives the median points a second
and the median of the per-round ratio of time family / one-Gaussian VAE, with its spread
(min-max), against the target of at most 1.5x. The mean estimate of the first round is kept in
the JSON (seed 0 before every call), so that two versions of the code can be compared number
for number.

Usage: python benchmarks/family_eval_speed.py [--k 500] [--chunk 250] [--points 100] [--rounds 5]
Writes benchmarks/results/family_eval_speed.{json,md}. ``family_eval_speed_before.{json,md}`` there
is the same script on the code before the learned priors' matrix-product density and held
pseudo-input encodings (commit dbbf1a2, 3 rounds).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import pyro
import torch

import pyrovae
from pyrovae.data import InMemoryData, load_digits

HERE = Path(__file__).parent
BASE = {"z_dim": 50, "hidden": [400], "activation": "relu"}
FAMILIES = {
    "gaussian (one layer, N(0, I))": {},
    "prior=vamp (500 pseudo-inputs)": {"prior": "vamp", "prior_components": 500},
    "prior=mog (500 components)": {"prior": "mog", "prior_components": 500},
    "latents=[100, 50]": {"latents": [100, 50]},
    "latent=bernoulli": {"latent": "bernoulli"},
    "guide=iaf (2 steps)": {"guide": "iaf", "flow_layers": 2, "flow_hidden": [200]},
    "guide=spline (2 steps)": {"guide": "spline", "flow_layers": 2, "flow_hidden": [200]},
}
BASELINE = "gaussian (one layer, N(0, I))"
TARGET = 1.5


def scorer(options: dict, x: torch.Tensor, k: int, chunk: int):
    """A function that runs one IS log p(x) of ``x`` under a fresh VAE of the family."""
    torch.manual_seed(0)
    vae = pyrovae.VAE(784, **BASE, **options)
    vae.eval()

    def score() -> torch.Tensor:
        with torch.no_grad():
            return pyrovae.log_likelihood(vae.model, vae.guide, x, num_samples=k, chunk_size=chunk)

    return score


def bench(x: torch.Tensor, k: int, chunk: int, rounds: int) -> list[dict]:
    """Interleaved rounds over the families; a row per family."""
    scores = {name: scorer(options, x, k, chunk) for name, options in FAMILIES.items()}
    seconds: dict[str, list[float]] = {name: [] for name in FAMILIES}
    means: dict[str, float] = {}
    with pyro.settings.context(module_local_params=True), pyro.validation_enabled(False):
        for r in range(rounds):
            order = list(scores.items())
            for name, score in order if r % 2 == 0 else order[::-1]:
                torch.manual_seed(0)
                start = time.perf_counter()
                value = score()
                seconds[name].append(time.perf_counter() - start)
                means.setdefault(name, value.mean().item())
            print(f"round {r + 1}/{rounds}: " + ", ".join(f"{n.split(' ')[0]} {s[-1]:.2f} s"
                                                          for n, s in seconds.items()), flush=True)  # fmt: skip
    rows = []
    for name in FAMILIES:
        ratios = [a / b for a, b in zip(seconds[name], seconds[BASELINE], strict=True)]
        rows.append({"family": name, "options": FAMILIES[name], "seconds": statistics.median(seconds[name]),
                     "points_per_second": x.shape[0] / statistics.median(seconds[name]),
                     "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
                     "mean_log_likelihood": means[name]})  # fmt: skip
    return rows


def markdown(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [f"IS log p(x), K = {args.k} particles, {args.chunk} at a time, {args.points} embedded test digits "
             f"in one call; CPU, {torch.get_num_threads()} threads; {args.rounds} interleaved rounds.", "",
             "| family | points/s | time ratio to gaussian (min-max) | <= 1.5x | mean log p(x) (seed 0, untrained) |",
             "|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        spread = f"{r['ratio']:.2f}x ({r['ratio_min']:.2f}-{r['ratio_max']:.2f})"
        ok = "yes" if r["ratio"] <= TARGET else "no"
        lines.append(f"| {r['family']} | {r['points_per_second']:.1f} | {spread} | {ok} | "
                     f"{r['mean_log_likelihood']:.4f} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", type=int, default=500, help="particles per data point")
    p.add_argument("--chunk", type=int, default=250, help="particles at a time")
    p.add_argument("--points", type=int, default=100, help="test digits, scored in one call")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", default=str(HERE / "results" / "family_eval_speed"))
    args = p.parse_args(argv)
    data = InMemoryData(load_digits(), pyrovae.likelihoods.make("bernoulli", x_dim=784), "fixed")
    x = data.test[: args.points]  # [points, 784]
    rows = bench(x, args.k, args.chunk, args.rounds)
    table = markdown(rows, args)
    print("\n" + table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(table + "\n")
    machine = {"platform": platform.platform(), "cpu_threads": torch.get_num_threads(), "torch": torch.__version__,
               "pyro": pyro.__version__, "python": platform.python_version()}  # fmt: skip
    settings = {"k": args.k, "chunk": args.chunk, "points": args.points, "rounds": args.rounds, "target": TARGET}
    out.with_suffix(".json").write_text(json.dumps({"rows": rows, "settings": settings, "machine": machine},
                                                   indent=2) + "\n")  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
