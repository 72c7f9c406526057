"""Step time of DReG and STL on flow guides against IWAE on the same guide, as ratios (issue 21).

DReG and sticking the landing need log q(z | x) at the sampled z with the guide's parameters
stopped (the path derivative). For a flow guide that once meant inverting every autoregressive
step at ``z.detach()`` (z_dim sequential passes a step); the flow now gives it from its forward
pass by one triangular solve a step (:meth:`pyrovae.families.flows.FlowDistribution.score_at_sample`).

Guides: IAF and spline (linear rational, 8 bins), both as in ``benchmarks/family_speed.py``
(784-400-50 ReLU encoder, two flow steps with MADE nets of 200 units, the encoder's last hidden
layer as context), Bernoulli likelihood, batch 128 of MNIST-shaped binary data. Each round times
the trainer's own step (one foreach Adam) of ``dreg``, ``stl`` and ``iwae`` at K = 5 on the same
batches, interleaved (the order rotates between rounds); the table gives the median step time
and the median of the per-round ratio dreg / iwae and stl / iwae, with its spread (min-max).

Usage: python benchmarks/flow_path_derivative.py [--batch 128] [--rounds 7]
Writes benchmarks/results/flow_path_derivative.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pyro
import torch

import pyrovae
from pyrovae.run.step import make_step, takes_fast_path

HERE = Path(__file__).parent
N = 60_000  # the data set size the plate scales to
K = 5
GUIDES = {"IAF (2 steps)": {"guide": "iaf"}, "spline (2 steps)": {"guide": "spline"}}
COMMON = {"hidden": [400], "activation": "relu", "z_dim": 50, "flow_layers": 2, "flow_hidden": [200]}
ESTIMATORS = ("iwae", "dreg", "stl")


def timed(step: Callable[[torch.Tensor], None], batches: list[torch.Tensor], steps: int) -> float:
    """Mean seconds a step over ``steps`` steps, cycling through ``batches``."""
    start = time.perf_counter()
    for i in range(steps):
        step(batches[i % len(batches)])
    return (time.perf_counter() - start) / steps


def training_step(guide: str, name: str) -> tuple[Callable[[torch.Tensor], None], str]:
    """A fresh VAE with ``guide`` and its training step under estimator ``name`` at K, and its path."""
    torch.manual_seed(0)
    vae = pyrovae.VAE(784, **GUIDES[guide], **COMMON)
    est = pyrovae.estimators.make(name, num_particles=K)
    opt = torch.optim.Adam(vae.parameters(), foreach=True)
    inner = make_step(est, vae, N)

    def step(x: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        inner(x)
        opt.step()

    return step, "fast" if takes_fast_path(est, vae) else "traced"


def bench(guide: str, batch: int, rounds: int, round_seconds: float) -> list[dict]:
    """Interleaved rounds of iwae, dreg and stl steps on one guide; a row per path estimator."""
    made = {name: training_step(guide, name) for name in ESTIMATORS}
    steps_of = {name: made[name][0] for name in ESTIMATORS}
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.rand(batch, 784, generator=gen) < 0.3).float() for _ in range(8)]
    times: dict[str, list[float]] = {name: [] for name in ESTIMATORS}
    with pyro.settings.context(module_local_params=True), pyro.validation_enabled(False):
        for fn in steps_of.values():
            timed(fn, batches, 2)  # warm-up
        steps = max(2, int(round_seconds / timed(steps_of["iwae"], batches, 2)))
        for r in range(rounds):
            order = ESTIMATORS[r % 3 :] + ESTIMATORS[: r % 3]  # rotate who goes first
            for name in order:
                times[name].append(timed(steps_of[name], batches, steps))
    rows = []
    for name in ESTIMATORS[1:]:
        ratios = [a / b for a, b in zip(times[name], times["iwae"], strict=True)]
        row = {"guide": guide, "estimator": f"{name} K={K}", "batch": batch, "path": made[name][1],
               "step_ms": 1e3 * statistics.median(times[name]), "iwae_ms": 1e3 * statistics.median(times["iwae"]),
               "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
               "steps_per_round": steps}  # fmt: skip
        print(f"{guide} {name} K={K}: {row['step_ms']:.2f} ms ({row['path']}), iwae {row['iwae_ms']:.2f} ms, "
              f"{row['ratio']:.2f}x", flush=True)  # fmt: skip
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--round-seconds", type=float, default=1.0, help="iwae time per round")
    p.add_argument("--out", default=str(HERE / "results" / "flow_path_derivative"))
    args = p.parse_args(argv)
    rows = [row for guide in GUIDES for row in bench(guide, args.batch, args.rounds, args.round_seconds)]
    lines = ["| guide | estimator | path | step | iwae K=5 step | ratio to iwae (min-max) |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        spread = f"{r['ratio']:.2f}x ({r['ratio_min']:.2f}-{r['ratio_max']:.2f})"
        lines.append(f"| {r['guide']} | {r['estimator']} | {r['path']} | {r['step_ms']:.2f} ms | "
                     f"{r['iwae_ms']:.2f} ms | {spread} |")  # fmt: skip
    table = "\n".join(lines)
    print("\n" + table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(f"Batch {args.batch}, CPU, {torch.get_num_threads()} threads.\n\n{table}\n")
    machine = {"platform": platform.platform(), "cpu_threads": torch.get_num_threads(), "torch": torch.__version__,
               "pyro": pyro.__version__, "python": platform.python_version()}  # fmt: skip
    out.with_suffix(".json").write_text(json.dumps({"rows": rows, "machine": machine}, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
