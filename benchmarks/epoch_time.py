"""A full-MNIST training epoch of pyrovae against the hand-written PyTorch reference, as a ratio.

Burda et al.'s 1-layer network (784-200-200-50, tanh, batch 20, Adam with epsilon 1e-4: the
`burda2016-1layer` preset) on the 60,000 dynamically binarized training images. Each round
times one whole epoch (3,000 steps) of pyrovae's training step (the trainer's own step, fast
path, one foreach Adam) and one of the hand-written step (`benchmarks/reference.py`) on the same
batches, alternating; the table gives the median over rounds of the epoch time and of the ratio
pyrovae / reference within a round, with its spread.

Usage: python benchmarks/epoch_time.py --data-path DIR [--rounds 3] [--estimators elbo:1 iwae:5 dreg:5]
(DIR holds the four MNIST files, e.g. from ../shared/tools/fetch-mnist DIR).
Writes benchmarks/results/epoch_time.{json,md}.
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
from pyrovae.config import from_dict
from pyrovae.data import InMemoryData
from pyrovae.run import build_vae, check_config, load_images
from pyrovae.run.step import make_step

try:
    from . import reference
except ImportError:  # run as a script
    import reference  # type: ignore[no-redef]

HERE = Path(__file__).parent


def epoch(step, batches: list[torch.Tensor]) -> float:
    start = time.perf_counter()
    for x in batches:
        step(x)
    return time.perf_counter() - start


def run(cfg, images, name: str, k: int, rounds: int) -> dict:
    torch.manual_seed(0)
    vae = build_vae(cfg, images)
    data = InMemoryData(images, vae.likelihood, "dynamic", "cpu", 0)
    n = data.num_train
    est = pyrovae.estimators.make(name, num_particles=k)
    opt = torch.optim.Adam(vae.parameters(), lr=cfg.lr, eps=cfg.adam_eps, foreach=True)
    pyro_step = make_step(est, vae, n)

    def pyrovae_step(x: torch.Tensor) -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        value = pyro_step(x)
        opt.step()
        return value

    ref = reference.ReferenceVAE(hidden=tuple(cfg.hidden), z_dim=cfg.z_dim, activation=cfg.activation)
    ref_opt = torch.optim.Adam(ref.parameters(), lr=cfg.lr, eps=cfg.adam_eps, foreach=True)
    ref_step = reference.make_step(ref, ref_opt, k, n, name)
    times: dict[str, list[float]] = {"pyrovae": [], "reference": []}
    with pyro.settings.context(module_local_params=True), pyro.validation_enabled(False):
        for r in range(rounds):
            batches = list(data.train_batches(cfg.batch_size))  # one epoch's batches, shared
            order = ("pyrovae", "reference") if r % 2 == 0 else ("reference", "pyrovae")
            for label in order:
                times[label].append(epoch(pyrovae_step if label == "pyrovae" else ref_step, batches))
            print(f"{name} K={k} round {r + 1}: pyrovae {times['pyrovae'][-1]:.1f} s, "
                  f"reference {times['reference'][-1]:.1f} s", flush=True)  # fmt: skip
    ratios = [a / b for a, b in zip(times["pyrovae"], times["reference"], strict=True)]
    return {"estimator": name, "k": k, "steps": len(batches), "pyrovae_s": statistics.median(times["pyrovae"]),
            "reference_s": statistics.median(times["reference"]), "ratio": statistics.median(ratios),
            "ratio_min": min(ratios), "ratio_max": max(ratios), "rounds": times}  # fmt: skip


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-path", required=True, help="folder with the four MNIST files")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--estimators", nargs="+", default=["elbo:1", "iwae:5", "dreg:5"])
    p.add_argument("--out", default=str(HERE / "results" / "epoch_time"))
    args = p.parse_args(argv)
    cfg = check_config(from_dict({"preset": "burda2016-1layer", "data_path": args.data_path}))
    images = load_images(cfg)
    rows = [run(cfg, images, spec.split(":")[0], int(spec.split(":")[1]), args.rounds) for spec in args.estimators]
    lines = [
        "| estimator | steps an epoch | pyrovae epoch | reference epoch | ratio (min-max) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        spread = f"{r['ratio']:.2f}x ({r['ratio_min']:.2f}-{r['ratio_max']:.2f})"
        lines.append(f"| {r['estimator']} K={r['k']} | {r['steps']} | {r['pyrovae_s']:.1f} s | "
                     f"{r['reference_s']:.1f} s | {spread} |")  # fmt: skip
    table = "\n".join(lines)
    print("\n" + table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(table + "\n")
    machine = {"platform": platform.platform(), "cpu_threads": torch.get_num_threads(), "torch": torch.__version__,
               "pyro": pyro.__version__, "python": platform.python_version()}  # fmt: skip
    out.with_suffix(".json").write_text(json.dumps({"rows": rows, "machine": machine}, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
