"""Step time of pyrovae's model families against hand-written PyTorch equivalents, as ratios.

Two families of issue 11 (`benchmarks/reference_families.py` has the hand-written versions):
- two stochastic layers (`latents = [100, 50]`, Burda et al.'s 784-100-100-[100]-50-50-[50], tanh):
  several latent sites, which pyrovae's layered fast path computes without tracing;
- an IAF guide (`guide = "iaf"`, 784-400-50 ReLU, two IAF steps with MADE nets of 200 units, the
  encoder's last hidden layer as context): one latent site, so pyrovae's fast path applies.
Each round times pyrovae's training step (the trainer's own step, one foreach Adam) and the
hand-written step on the same batches, interleaved; the table gives the median step time and
the median of the per-round ratio pyrovae / reference, with its spread.

Usage: python benchmarks/family_speed.py [--batch 128] [--rounds 7]
Writes benchmarks/results/family_speed.{json,md}.
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
from pyrovae.run.step import make_step, takes_fast_path

try:
    from . import reference_families as ref
except ImportError:  # run as a script
    import reference_families as ref  # type: ignore[no-redef]

HERE = Path(__file__).parent
N = 60_000  # the data set size the plate scales to
FAMILIES = {
    "two layers [100, 50]": (
        {"latents": [100, 50], "hidden": [100, 100], "activation": "tanh"},
        lambda: ref.ReferenceTwoLayer(784, (100, 50), (100, 100), "tanh"),
    ),
    "IAF guide (2 steps)": (
        {"guide": "iaf", "hidden": [400], "activation": "relu", "z_dim": 50, "flow_layers": 2, "flow_hidden": [200]},
        lambda: ref.ReferenceIAF(784, 50, (400,), "relu", 2, (200,)),
    ),
}
ESTIMATORS = [("elbo", 1), ("iwae", 5)]


def timed(step, batches: list[torch.Tensor], steps: int) -> float:
    start = time.perf_counter()
    for i in range(steps):
        step(batches[i % len(batches)])
    return (time.perf_counter() - start) / steps


def bench(family: str, name: str, k: int, batch: int, rounds: int, round_seconds: float) -> dict:
    options, make_ref = FAMILIES[family]
    torch.manual_seed(0)
    vae = pyrovae.VAE(784, **options)
    est = pyrovae.estimators.make(name, num_particles=k)
    opt = torch.optim.Adam(vae.parameters(), foreach=True)
    inner = make_step(est, vae, N)

    def pyrovae_step(x: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        inner(x)
        opt.step()

    reference = make_ref()
    ref_opt = torch.optim.Adam(reference.parameters(), foreach=True)

    def ref_step(x: torch.Tensor) -> None:
        ref_opt.zero_grad(set_to_none=True)
        ref.loss(reference, x, k, N, name).backward()
        ref_opt.step()

    gen = torch.Generator().manual_seed(0)
    batches = [(torch.rand(batch, 784, generator=gen) < 0.3).float() for _ in range(8)]
    times: dict[str, list[float]] = {"pyrovae": [], "reference": []}
    with pyro.settings.context(module_local_params=True), pyro.validation_enabled(False):
        for fn in (pyrovae_step, ref_step):
            timed(fn, batches, 3)  # warm-up
        steps = max(3, int(round_seconds / timed(ref_step, batches, 3)))
        for r in range(rounds):
            order = (("pyrovae", pyrovae_step), ("reference", ref_step))
            for label, fn in order if r % 2 == 0 else order[::-1]:
                times[label].append(timed(fn, batches, steps))
    ratios = [a / b for a, b in zip(times["pyrovae"], times["reference"], strict=True)]
    row = {"family": family, "estimator": f"{name} K={k}", "batch": batch, "path": "fast" if takes_fast_path(est, vae)
           else "traced", "pyrovae_ms": 1e3 * statistics.median(times["pyrovae"]),
           "reference_ms": 1e3 * statistics.median(times["reference"]), "ratio": statistics.median(ratios),
           "ratio_min": min(ratios), "ratio_max": max(ratios), "steps_per_round": steps}  # fmt: skip
    print(f"{family} {name} K={k}: pyrovae {row['pyrovae_ms']:.2f} ms ({row['path']}), reference "
          f"{row['reference_ms']:.2f} ms, {row['ratio']:.2f}x", flush=True)  # fmt: skip
    return row


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--round-seconds", type=float, default=1.0, help="reference time per round")
    p.add_argument("--out", default=str(HERE / "results" / "family_speed"))
    args = p.parse_args(argv)
    rows = [bench(f, name, k, args.batch, args.rounds, args.round_seconds) for f in FAMILIES for name, k in ESTIMATORS]
    lines = ["| family | estimator | pyrovae path | pyrovae step | hand-written step | ratio (min-max) |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        spread = f"{r['ratio']:.2f}x ({r['ratio_min']:.2f}-{r['ratio_max']:.2f})"
        lines.append(f"| {r['family']} | {r['estimator']} | {r['path']} | {r['pyrovae_ms']:.2f} ms | "
                     f"{r['reference_ms']:.2f} ms | {spread} |")  # fmt: skip
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
