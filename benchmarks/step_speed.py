"""pyrovae's training step and log-likelihood against hand-written PyTorch, as ratios.

In one process, interleaved, several rounds: each variant takes the same number of training
steps per round (about a second of the reference's, 2 to ``--steps``) on the same batches of
embedded digits; each round's per-step time is divided by the hand-written eager step's
(``benchmarks/reference.py``) in the same round, and the table gives the median of those ratios
over rounds with their spread (min-max).

Variants: the reference eager and under torch.compile; pyrovae's training step (the fast path:
pyrovae's own VAE's log weights computed without tracing, one foreach/fused Adam, no host sync),
eager and with ``compile = "default"`` (not DReG, whose gradient hooks keep it eager);
pyrovae's estimator on the traced Pyro path (``fast_path=False``); and plain Pyro SVI with
``Trace_ELBO`` for the ELBO. Estimators: ELBO K=1, IWAE K=5 and 50, DReG K=50; batch 128 and 1024;
CPU, and CUDA when present.

Also ``log_likelihood`` at K = 5000 over the 500 test digits: points a second and peak memory
for two chunk sizes, against the hand-written chunked estimate, each in a fresh process (CPU:
the peak resident set above the set-up, Linux; CUDA: max_memory_allocated).

Usage: python benchmarks/step_speed.py [--rounds 7] [--steps 20] [--no-compile]
Writes benchmarks/results/step_speed.{json,md}.
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
from pyrovae.run.step import eager_step, make_step

try:
    from . import reference
except ImportError:  # run as a script
    import reference  # type: ignore[no-redef]

HERE = Path(__file__).parent
ESTIMATORS = [("elbo", 1), ("iwae", 5), ("iwae", 50), ("dreg", 50)]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def adam(params, device: torch.device) -> torch.optim.Optimizer:
    if device.type == "cuda":
        return torch.optim.Adam(params, lr=1e-3, fused=True)
    return torch.optim.Adam(params, lr=1e-3, foreach=True)


def make_variants(name: str, k: int, batch: int, n: int, device: torch.device, compile_ref: bool) -> dict:
    """name -> step(x) closure; each variant owns its model and optimizer."""
    variants = {}
    ref = reference.ReferenceVAE().to(device)
    variants["reference eager"] = reference.make_step(ref, adam(ref.parameters(), device), k, n, name)
    if compile_ref:
        ref_c = reference.ReferenceVAE().to(device)
        opt_c = adam(ref_c.parameters(), device)
        compiled_loss = torch.compile(reference.loss, dynamic=False)

        def compiled_step(x: torch.Tensor) -> torch.Tensor:
            opt_c.zero_grad(set_to_none=True)
            value = compiled_loss(ref_c, x, k, n, name)
            value.backward()
            opt_c.step()
            return value.detach()

        variants["reference compiled"] = compiled_step

    for label, fast in (("pyrovae", True), ("pyrovae traced", False)):
        vae = pyrovae.VAE(x_dim=784, z_dim=50, hidden=[400]).to(device)
        est = pyrovae.estimators.make(name, num_particles=k, fast_path=fast)
        opt = adam(vae.parameters(), device)

        def step(x: torch.Tensor, vae=vae, est=est, opt=opt) -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            value = eager_step(est, vae, x, n)  # the trainer's own step: loss and backward
            opt.step()
            return value

        variants[label] = step

    if compile_ref and name != "dreg":  # DReG's gradient hooks keep it eager
        vae_c = pyrovae.VAE(x_dim=784, z_dim=50, hidden=[400]).to(device)
        opt_vc = adam(vae_c.parameters(), device)
        compiled = make_step(pyrovae.estimators.make(name, num_particles=k), vae_c, n, "default")

        def pyrovae_compiled(x: torch.Tensor) -> torch.Tensor:
            opt_vc.zero_grad(set_to_none=True)
            value = compiled(x)
            opt_vc.step()
            return value

        variants["pyrovae compiled"] = pyrovae_compiled

    if name == "elbo":
        vae_svi = pyrovae.VAE(x_dim=784, z_dim=50, hidden=[400]).to(device)
        svi = pyro.infer.SVI(vae_svi.model, vae_svi.guide, pyro.optim.Adam({"lr": 1e-3}),
                             loss=pyro.infer.Trace_ELBO())  # fmt: skip

        def svi_step(x: torch.Tensor) -> float:
            with pyro.settings.context(module_local_params=False):  # SVI's global param store
                return svi.step(x, num_data=n)

        variants["Pyro SVI Trace_ELBO"] = svi_step
    return variants


def time_steps(fn, batches: list[torch.Tensor], steps: int, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    for i in range(steps):
        fn(batches[i % len(batches)])
    sync(device)
    return (time.perf_counter() - start) / steps


def bench_steps(device: torch.device, args: argparse.Namespace) -> list[dict]:
    data = InMemoryData(load_digits(), pyrovae.likelihoods.make("bernoulli", x_dim=784), "fixed", device=device)
    n = data.num_train
    rows = []
    for batch in args.batches:
        gen = torch.Generator(device="cpu").manual_seed(0)
        batches = [data.train[torch.randint(0, n, (batch,), generator=gen).to(device)] for _ in range(8)]
        for name, k in ESTIMATORS:
            pyro.clear_param_store()
            # as pyrovae's trainer runs: module-local parameters, validation off (data checked once)
            with pyro.settings.context(module_local_params=True), pyro.validation_enabled(False):
                variants = make_variants(name, k, batch, n, device, args.compile)
                for fn in variants.values():  # warm-up, compilation included
                    time_steps(fn, batches, 3, device)
                # steps a round: about --round-seconds of the reference, at least 2
                t_ref = time_steps(variants["reference eager"], batches, 2, device)
                steps = max(2, min(args.steps, int(args.round_seconds / t_ref)))
                times = {label: [] for label in variants}
                for _ in range(args.rounds):
                    for label, fn in variants.items():  # interleaved
                        times[label].append(time_steps(fn, batches, steps, device))
            for label, ts in times.items():
                # each round's time over the reference's in the same round: drifts cancel
                ratios = [t / b for t, b in zip(ts, times["reference eager"], strict=True)]
                rows.append({
                    "device": device.type, "batch": batch, "estimator": f"{name} K={k}", "variant": label,
                    "ms_per_step": 1e3 * statistics.median(ts), "steps_per_round": steps,
                    "ratio": statistics.median(ratios),
                    "ratio_min": min(ratios), "ratio_max": max(ratios),
                    "images_per_second": batch / statistics.median(ts),
                })  # fmt: skip
            print(f"{device.type} batch {batch:5d} {name} K={k:<3d} "
                  + "  ".join(f"{r['variant']}: {r['ms_per_step']:.2f} ms ({r['ratio']:.2f}x)"
                              for r in rows if r["batch"] == batch and r["estimator"] == f"{name} K={k}"),
                  flush=True)  # fmt: skip
            del variants
            gc.collect()
    return rows


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def ll_child(variant: str, chunk: int, device_name: str) -> None:
    """In a fresh process: one K=5000 log-likelihood of the 500 test digits; prints seconds and
    the peak memory above the set-up (CPU: peak resident set, Linux; CUDA: max allocated)."""
    device = torch.device(device_name)
    torch.manual_seed(0)
    data = InMemoryData(load_digits(), pyrovae.likelihoods.make("bernoulli", x_dim=784), "fixed", device=device)
    x = data.test  # [500, 784]
    if variant == "pyrovae":
        vae = pyrovae.VAE(x_dim=784, z_dim=50, hidden=[400]).to(device)

        def fn() -> torch.Tensor:
            with pyro.settings.context(module_local_params=True), pyro.validation_enabled(False):
                return pyrovae.log_likelihood(vae.model, vae.guide, x, num_samples=5000, chunk_size=chunk)
    else:
        ref = reference.ReferenceVAE().to(device)

        def fn() -> torch.Tensor:
            return reference.log_likelihood(ref, x, 5000, chunk)

    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        base = _rss_kib("VmRSS:") * 1024
    start = time.perf_counter()
    fn()
    sync(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else _rss_kib("VmHWM:") * 1024
    print(json.dumps({"seconds": seconds, "peak_bytes": max(0, peak - base)}))


def bench_log_likelihood(device: torch.device, args: argparse.Namespace) -> list[dict]:
    rows = []
    for chunk in args.chunks:
        for label in ("pyrovae", "reference"):
            runs = []
            for _ in range(args.ll_rounds):
                code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); import step_speed; "
                        f"step_speed.ll_child({label!r}, {chunk}, {str(device)!r})")  # fmt: skip
                out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            seconds = statistics.median(r["seconds"] for r in runs)
            rows.append({"device": device.type, "variant": label, "chunk": chunk, "seconds": seconds,
                         "points_per_second": 500 / seconds,
                         "peak_mib": max(r["peak_bytes"] for r in runs) / 2**20})  # fmt: skip
        a, b = rows[-2], rows[-1]
        print(f"{device.type} log_likelihood K=5000 chunk {chunk}: pyrovae {a['points_per_second']:.1f} "
              f"points/s, {a['peak_mib']:.0f} MiB; reference {b['points_per_second']:.1f} points/s, "
              f"{b['peak_mib']:.0f} MiB; ratio {a['seconds'] / b['seconds']:.2f}x", flush=True)  # fmt: skip
    return rows


def markdown(steps: list[dict], lls: list[dict]) -> str:
    lines = ["| device | batch | estimator | " + " | ".join(_variants(steps)) + " |",
             "|---|---|---|" + "---|" * len(_variants(steps))]  # fmt: skip
    keys = sorted({(r["device"], r["batch"], r["estimator"]) for r in steps},
                  key=lambda t: (t[0], t[1], [f"{a} K={b}" for a, b in ESTIMATORS].index(t[2])))  # fmt: skip
    for dev, batch, est in keys:
        cells = []
        for v in _variants(steps):
            r = next((r for r in steps if (r["device"], r["batch"], r["estimator"], r["variant"])
                      == (dev, batch, est, v)), None)  # fmt: skip
            cells.append(
                "-"
                if r is None
                else f"{r['ratio']:.2f}x ({r['ratio_min']:.2f}-{r['ratio_max']:.2f}), {r['ms_per_step']:.2f} ms"
            )
        lines.append(f"| {dev} | {batch} | {est} | " + " | ".join(cells) + " |")
    lines += ["", "| device | log_likelihood K=5000, 500 points | chunk | points/s | peak MiB | time ratio |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for r in lls:
        if r["variant"] != "pyrovae":
            continue
        ref = next(x for x in lls if x["variant"] == "reference" and x["chunk"] == r["chunk"]
                   and x["device"] == r["device"])  # fmt: skip
        for x in (r, ref):
            ratio = f"{r['seconds'] / ref['seconds']:.2f}x" if x is r else "1.00x"
            lines.append(f"| {x['device']} | {x['variant']} | {x['chunk']} | {x['points_per_second']:.1f} | "
                         f"{x['peak_mib']:.0f} | {ratio} |")  # fmt: skip
    return "\n".join(lines)


def _variants(steps: list[dict]) -> list[str]:
    seen: list[str] = []
    for r in steps:
        if r["variant"] not in seen:
            seen.append(r["variant"])
    return seen


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=20, help="at most this many steps per variant per round")
    p.add_argument("--round-seconds", type=float, default=1.0, help="reference time per variant per round")
    p.add_argument("--batches", type=int, nargs="+", default=[128, 1024])
    p.add_argument("--chunks", type=int, nargs="+", default=[100, 1000])
    p.add_argument("--ll-rounds", type=int, default=1, help="fresh processes per log-likelihood measurement")
    p.add_argument("--no-compile", dest="compile", action="store_false")
    p.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when present")
    p.add_argument("--out", default=str(HERE / "results" / "step_speed"))
    args = p.parse_args(argv)
    devices = [torch.device(d) for d in (args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]))]
    torch.manual_seed(0)
    steps, lls = [], []
    for device in devices:
        steps += bench_steps(device, args)
        lls += bench_log_likelihood(device, args)
    table = markdown(steps, lls)
    print("\n" + table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(table + "\n")
    result = {
        "steps": steps, "log_likelihood": lls, "rounds": args.rounds, "steps_per_round": args.steps,
        "machine": {
            "platform": platform.platform(), "processor": platform.processor(), "cpu_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "torch": torch.__version__, "pyro": pyro.__version__, "python": platform.python_version(),
        },
    }  # fmt: skip
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
