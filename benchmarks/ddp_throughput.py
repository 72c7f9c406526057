"""Training throughput with 1 and N data-parallel processes (torchrun), as a ratio.

Each setting trains pyrovae's default VAE (784-400-50 ReLU, Bernoulli, ``elbo``) on the embedded
digits for ``--epochs`` epochs at a global batch of ``--batch`` points, launched as
``torchrun --standalone --nproc-per-node P -m pyrovae train ...``; the training time is the run's
own ``train_seconds`` (its checkpoint: steps only, no evaluation), and throughput is training
points a second. On a CPU each process gets cores / P threads (gloo); on GPUs (``--device cuda``)
each process one GPU (NCCL). Settings run interleaved, ``--rounds`` times, and the table gives the
medians and the ratio of each P to P = 1 in the same round.

Usage:
    python benchmarks/ddp_throughput.py                         # this CPU: 1 and 2 processes
    python benchmarks/ddp_throughput.py --device cuda --procs 1 2 4 8 --batch 1024   # N GPUs
Writes benchmarks/results/ddp_throughput.{json,md} (``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).parent


def run(procs: int, args: argparse.Namespace, out: Path) -> float:
    """Training points a second of one run with ``procs`` processes."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs),
           "-m", "pyrovae", "train", "--out", str(out), "--epochs", str(args.epochs), "--batch-size", str(args.batch),
           "--device", args.device, "--eval-num-samples", "0", "--test-every", str(args.epochs), "--quiet"]  # fmt: skip
    threads = max(1, (os.cpu_count() or 1) // procs) if args.device == "cpu" else 1
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)}, capture_output=True)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    return 4500 * args.epochs / state["train_seconds"]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--batch", type=int, default=100, help="global batch (points a step over all processes)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--out", default=str(HERE / "results" / "ddp_throughput"))
    args = p.parse_args(argv)
    speeds: dict[int, list[float]] = {n: [] for n in args.procs}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for n in args.procs:
                speeds[n].append(run(n, args, Path(tmp) / f"p{n}r{r}"))
                print(f"round {r + 1}: {n} process(es): {speeds[n][-1]:.0f} points/s", flush=True)
    base = args.procs[0]
    rows = []
    for n in args.procs:
        ratios = [a / b for a, b in zip(speeds[n], speeds[base], strict=True)]
        rows.append({"procs": n, "points_per_second": statistics.median(speeds[n]), "ratio": statistics.median(ratios),
                     "ratio_min": min(ratios), "ratio_max": max(ratios)})  # fmt: skip
    lines = [f"Global batch {args.batch}, {args.epochs} epochs of the 4,500 embedded digits, {args.device}, "
             f"{os.cpu_count()} cores; {args.rounds} rounds.", "",
             "| processes | training points/s | throughput vs 1 process (min-max) |", "|---|---|---|"]  # fmt: skip
    for row in rows:
        lines.append(f"| {row['procs']} | {row['points_per_second']:.0f} | {row['ratio']:.2f}x "
                     f"({row['ratio_min']:.2f}-{row['ratio_max']:.2f}) |")  # fmt: skip
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text)
    machine = {"platform": platform.platform(), "cores": os.cpu_count(), "torch": torch.__version__}
    out.with_suffix(".json").write_text(json.dumps({"rows": rows, "speeds": speeds, "machine": machine,
                                                    "settings": vars(args)}, indent=2) + "\n")  # fmt: skip
    return {"rows": rows}


if __name__ == "__main__":
    main()
