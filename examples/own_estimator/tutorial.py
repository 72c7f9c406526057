"""Tutorial: your own estimator, first class. VarGrad (``vargrad.py``, written outside pyrovae) is
checked by pyrovae's conformance kit, then compared on a grid with elbo, iwae and dreg.

    python examples/own_estimator/tutorial.py --out runs/tutorial

1. ``pyrovae.testing.check_estimator("vargrad:VarGrad", num_particles=5)`` runs the contract
   pyrovae's own estimators pass (closed forms on a linear-Gaussian model, every plate form,
   an unbiased gradient for what it declares, every VAE family, a grid worker) and prints it.
2. One ``pyrovae compare --estimators vargrad:VarGrad:5 elbo iwae:5 dreg:5 ...`` command, run in
   this folder, so that the import path ``vargrad:VarGrad`` finds ``vargrad.py``; the grid's
   workers import it the same way, and the report names it with the hash of its source.
3. The report's table, printed here; the whole report is ``OUT/report.md``.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from pathlib import Path
from typing import Any

from pyrovae.testing import check_estimator

HERE = Path(__file__).resolve().parent
PLUGIN = "vargrad:VarGrad"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/tutorial", help="the comparison's folder (default: runs/tutorial)")
    p.add_argument("--k", type=int, default=5, help="particles K of vargrad, iwae and dreg (default: 5)")
    p.add_argument("--steps", type=int, default=2000, help="gradient steps per cell (default: 2000)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds (default: 0 1)")
    p.add_argument("--workers", type=int, default=2, help="cells at once (default: 2)")
    p.add_argument("--backend", default="process", choices=("process", "ray"), help="grid backend")
    p.add_argument("--small", action="store_true", help="a small network and few diagnostics (a quick test)")
    return p.parse_args(argv)


def compare_command(args: argparse.Namespace) -> list[str]:
    k = args.k
    cmd = [sys.executable, "-m", "pyrovae", "compare", "--estimators", f"{PLUGIN}:{k}", "elbo", f"iwae:{k}",
           f"dreg:{k}", "--seeds", *map(str, args.seeds), "--steps", str(args.steps), "--workers",
           str(args.workers), "--backend", args.backend, "--out", str(Path(args.out).resolve())]  # fmt: skip
    if args.small:
        return cmd + ["--eval-num-samples", "20", "--psis-samples", "100", "--snr-draws", "4", "--gap-points",
                      "2", "--gap-steps", "2", "--set", "hidden=[16]", "--set", "z_dim=4", "--set",
                      "batch_size=250"]  # fmt: skip
    return cmd + ["--eval-num-samples", "1000", "--psis-samples", "200", "--snr-draws", "50", "--gap-points", "20",
                  "--gap-steps", "100"]  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    if str(HERE) not in sys.path:  # the check imports vargrad:VarGrad from this folder, as the grid does
        sys.path.insert(0, str(HERE))
    skip = ("runs_in_a_worker",) if args.small else ()
    report = check_estimator(PLUGIN, num_particles=args.k, skip=skip)
    print(report, flush=True)
    report.raise_for_failures()
    cmd = compare_command(args)
    print("\n$ (cd examples/own_estimator &&", " ".join(["pyrovae", *cmd[3:]]) + ")", flush=True)
    subprocess.run(cmd, cwd=HERE, check=True)
    out = Path(args.out)
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    text = (out / "report.md").read_text()
    print(text[text.index("| likelihood") : text.index("![learning curves]")].strip())
    print(text[text.index("## Plugins") : text.index("## Configuration")].strip())
    return {"check": report, "rows": rows, "report": text}


if __name__ == "__main__":
    main()
