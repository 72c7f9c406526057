"""The estimator frontier on the embedded digits: every new estimator beside elbo, iwae and dreg.

One ``pyrovae compare`` grid at equal budget (the same gradient steps, data, network and seeds):
elbo, iwae and dreg at K = 5, DReG(alpha = 0.5), JVI (order 1), TVO (log partition, covariance
gradient), SUMO (m = 1: 1 + E[Kc] = 6.08 draws on average) and VarGrad, two seeds, with the
gradient SNR and the gradient-bias test at the end of training. Prints the report's table and
writes it to benchmarks/results/frontier.md.

Usage: python benchmarks/frontier.py [--out runs/frontier] [--steps 2000] [--workers 2]
Full MNIST: add ``--dataset mnist`` (pyrovae downloads it once into its data folder).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
K = 5
ESTIMATORS = ["elbo:5", "iwae:5", "dreg:5", "dreg:5:alpha=0.5", "jvi:5", "tvo:5", "sumo:1", "vargrad:5"]


def main(argv: list[str] | None = None) -> None:
    args = grid_arguments(__doc__, "runs/frontier", 2000).parse_args(argv)
    run_grid(ESTIMATORS, [f"dataset={args.dataset}"] if args.dataset else [], args, "frontier.md")


def grid_arguments(doc: str | None, out: str, steps: int) -> argparse.ArgumentParser:
    """The options of a grid script: its folder, steps per cell, workers and data set."""
    p = argparse.ArgumentParser(description=(doc or "").split("\n")[0])
    p.add_argument("--out", default=out, help=f"the comparison's folder (default: {out})")
    p.add_argument("--steps", type=int, default=steps, help=f"gradient steps per cell (default: {steps})")
    p.add_argument("--workers", type=int, default=2, help="cells at once (default: 2)")
    p.add_argument("--dataset", default=None, help="e.g. mnist (default: the embedded digits)")
    return p


def run_grid(estimators: list[str], settings: list[str], args: argparse.Namespace, result: str) -> None:
    """Runs the comparison of ``estimators`` (with ``--set`` ``settings``) into ``args.out`` and writes
    the report's table to benchmarks/results/``result``."""
    cmd = [sys.executable, "-m", "pyrovae", "compare", "--estimators", *estimators, "--seeds", "0", "1",
           "--steps", str(args.steps), "--workers", str(args.workers), "--eval-num-samples", "1000",
           "--psis-samples", "200", "--snr-draws", "100", "--bias-draws", "100", "--gap-points", "20",
           "--gap-steps", "100", "--out", args.out]  # fmt: skip
    for setting in settings:
        cmd += ["--set", setting]
    print("$", " ".join(["pyrovae", *cmd[3:]]), flush=True)
    subprocess.run(cmd, check=True)
    text = (Path(args.out) / "report.md").read_text()
    table = text[text.index("| likelihood") : text.index("![learning curves]")].strip()
    intro = text[text.index("\n\n") + 2 : text.index("| likelihood")].strip()
    out = HERE / "results" / result
    out.write_text(f"$ {' '.join(['pyrovae', *cmd[3:]])}\n\n{intro}\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    main()
