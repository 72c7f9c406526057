"""Generalized DReG on the VampPrior VAE (embedded digits): iwae, dreg and gdreg at K = 5.

The VampPrior's encoder moves q and every prior component together, so plain DReG keeps a prior
score term that IWAE's guide score term used to cancel; GDReG transports it (Bauer & Mnih 2021).
One ``pyrovae compare`` grid at equal budget, two seeds, with the gradient SNR and the bias test
(DReG and GDReG against IWAE's gradient) at the end of training. Writes
benchmarks/results/gdreg_vamp.md.

Usage: python benchmarks/gdreg_vamp.py [--out runs/gdreg_vamp] [--steps 1000] [--workers 2]
"""

from __future__ import annotations

from frontier import grid_arguments, run_grid

ESTIMATORS = ["iwae:5", "dreg:5", "gdreg:5"]
SETTINGS = ["prior=vamp", "prior_components=100"]


def main(argv: list[str] | None = None) -> None:
    args = grid_arguments(__doc__, "runs/gdreg_vamp", 1000).parse_args(argv)
    run_grid(ESTIMATORS, SETTINGS + ([f"dataset={args.dataset}"] if args.dataset else []), args, "gdreg_vamp.md")


if __name__ == "__main__":
    main()
