"""pyrovae's AIS against a hand-written torch AIS-HMC, as ratios; and its memory against the chunk.

Speed: 100 embedded test digits x 16 chains, pyrovae's default VAE (784-400-50 ReLU, Bernoulli)
and the hand-written reference of the same shapes (``benchmarks/reference_ais.py``), the same
sigmoidal schedule, the same number of AIS steps and leapfrog steps per transition; interleaved
rounds in one process, each round's time per AIS step divided by the reference's in that round;
the table gives the medians and the ratio's spread.

Memory: AIS over 400 digits in a fresh process for each ``points_per_chunk``: the peak resident
set above the set-up (Linux), which grows with the chunk, not with the number of points.

Usage: python benchmarks/ais_speed.py [--rounds 5] [--steps 60] [--leapfrogs 10]
Writes benchmarks/results/ais_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pyro
import torch

import pyrovae
from pyrovae.data import InMemoryData, load_digits
from pyrovae.evaluation.ais import ais, beta_schedule

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import reference  # noqa: E402
import reference_ais  # noqa: E402
from step_speed import _rss_kib  # noqa: E402


def digits(n: int) -> torch.Tensor:
    data = InMemoryData(load_digits(), pyrovae.likelihoods.make("bernoulli", x_dim=784), "fixed", device="cpu")
    return data.test[:n]


def bench_speed(args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    x = digits(args.points)
    vae = pyrovae.VAE(x_dim=784, z_dim=50, hidden=[400])
    ref = reference.ReferenceVAE()
    betas = beta_schedule(args.steps).tolist()
    options = {"num_steps": args.steps, "num_chains": args.chains, "hmc_steps": args.leapfrogs}

    def run_pyrovae() -> None:
        with pyro.settings.context(module_local_params=True), pyro.validation_enabled(False):
            ais(vae.model, vae.guide, x, **options)

    def run_reference() -> None:
        reference_ais.ais(ref, x, betas, args.chains, args.leapfrogs)

    run_pyrovae(), run_reference()  # warm-up
    times: dict[str, list[float]] = {"pyrovae": [], "reference": []}
    for _ in range(args.rounds):
        for name, fn in (("pyrovae", run_pyrovae), ("reference", run_reference)):
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) / args.steps)
    ratios = [a / b for a, b in zip(times["pyrovae"], times["reference"], strict=True)]
    out = {
        "points": args.points, "chains": args.chains, "steps": args.steps, "leapfrogs": args.leapfrogs,
        "pyrovae_ms_per_step": 1e3 * statistics.median(times["pyrovae"]),
        "reference_ms_per_step": 1e3 * statistics.median(times["reference"]),
        "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
    }  # fmt: skip
    print(f"AIS {args.points} points x {args.chains} chains, {args.leapfrogs} leapfrog steps: pyrovae "
          f"{out['pyrovae_ms_per_step']:.1f} ms/step, reference {out['reference_ms_per_step']:.1f} ms/step, "
          f"ratio {out['ratio']:.2f}x ({out['ratio_min']:.2f}-{out['ratio_max']:.2f})", flush=True)  # fmt: skip
    return out


def memory_child(chunk: int, points: int, steps: int, chains: int, leapfrogs: int) -> None:
    """In a fresh process: AIS over ``points`` digits, ``chunk`` at a time; prints the seconds and the
    peak resident set above the set-up."""
    torch.manual_seed(0)
    x = digits(points)
    vae = pyrovae.VAE(x_dim=784, z_dim=50, hidden=[400])
    gc.collect()
    base = _rss_kib("VmRSS:") * 1024
    start = time.perf_counter()
    with pyro.settings.context(module_local_params=True), pyro.validation_enabled(False):
        ais(vae.model, vae.guide, x, num_steps=steps, num_chains=chains, hmc_steps=leapfrogs, points_per_chunk=chunk)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_bytes": max(0, _rss_kib("VmHWM:") * 1024 - base)}))


def bench_memory(args: argparse.Namespace) -> list[dict]:
    rows = []
    for chunk in args.chunks:
        call = f"memory_child({chunk}, {args.memory_points}, 5, {args.chains}, {args.leapfrogs})"
        code = f"import sys; sys.path.insert(0, {str(HERE)!r}); import ais_speed; ais_speed.{call}"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append({"points": args.memory_points, "points_per_chunk": chunk, "peak_mib": r["peak_bytes"] / 2**20})
        print(f"AIS memory, {args.memory_points} points, {chunk} a chunk: peak {rows[-1]['peak_mib']:.0f} MiB",
              flush=True)  # fmt: skip
    return rows


def markdown(speed: dict, memory: list[dict]) -> str:
    lines = [
        "| AIS, CPU | points x chains | leapfrog steps | pyrovae ms/step | reference ms/step | ratio (min-max) |",
        "|---|---|---|---|---|---|",
        f"| pyrovae `ais` vs hand-written (`reference_ais.py`) | {speed['points']} x {speed['chains']} | "
        f"{speed['leapfrogs']} | {speed['pyrovae_ms_per_step']:.1f} | {speed['reference_ms_per_step']:.1f} | "
        f"{speed['ratio']:.2f}x ({speed['ratio_min']:.2f}-{speed['ratio_max']:.2f}) |",
        "",
        f"| AIS over {memory[0]['points']} points | points_per_chunk | peak memory above set-up |",
        "|---|---|---|",
        *[f"| | {r['points_per_chunk']} | {r['peak_mib']:.0f} MiB |" for r in memory],
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=60, help="AIS steps timed per round")
    p.add_argument("--points", type=int, default=100)
    p.add_argument("--chains", type=int, default=16)
    p.add_argument("--leapfrogs", type=int, default=10)
    p.add_argument("--memory-points", type=int, default=400)
    p.add_argument("--chunks", type=int, nargs="+", default=[25, 100, 400])
    args = p.parse_args(argv)
    speed = bench_speed(args)
    memory = bench_memory(args)
    result = {"machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
              "torch": torch.__version__, "speed": speed, "memory": memory}  # fmt: skip
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "ais_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "ais_speed.md").write_text(markdown(speed, memory))
    return result


if __name__ == "__main__":
    main()
