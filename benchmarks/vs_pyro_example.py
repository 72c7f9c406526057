"""pyrovae's default against the architecture of Pyro's own VAE example, same data, same evaluator.

Both train on the embedded digits (4,500 training images, dynamically binarized, the same fixed
binarized 500 test images) for the same number of epochs, three seeds each, and both are scored
by the same importance-sampled log-likelihood (``pyrovae.log_likelihood``, K = 5000).

The baseline follows pyro-ppl's examples/vae/vae.py: a 784-400-50 encoder and a 50-400-784
decoder with softplus hidden units, scale = exp(linear), sigmoid pixel probabilities, trained with
``SVI(Trace_ELBO)`` and ``pyro.optim.Adam(lr=1e-3)`` on batches of 256, as that script does.
pyrovae runs with its own defaults (``pyrovae train``).

Usage: python benchmarks/vs_pyro_example.py [--epochs 200] [--seeds 0 1 2] [--num-samples 5000]
Writes benchmarks/results/vs_pyro_example.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
from torch import nn

import pyrovae
from pyrovae.config import Config
from pyrovae.data import InMemoryData, load_digits

HERE = Path(__file__).parent
FUDGE = 1e-7


class ExampleEncoder(nn.Module):
    def __init__(self, z_dim: int = 50, hidden: int = 400) -> None:
        super().__init__()
        self.fc1, self.fc21, self.fc22 = (nn.Linear(784, hidden), nn.Linear(hidden, z_dim), nn.Linear(hidden, z_dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = nn.functional.softplus(self.fc1(x.reshape(-1, 784)))
        return self.fc21(h), torch.exp(self.fc22(h))


class ExampleDecoder(nn.Module):
    def __init__(self, z_dim: int = 50, hidden: int = 400) -> None:
        super().__init__()
        self.fc1, self.fc21 = nn.Linear(z_dim, hidden), nn.Linear(hidden, 784)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        probs = torch.sigmoid(self.fc21(nn.functional.softplus(self.fc1(z))))
        return (probs + FUDGE) * (1 - 2 * FUDGE)


class PyroExampleVAE(nn.Module):
    """The model and guide of Pyro's example, with the global param store."""

    def __init__(self, z_dim: int = 50) -> None:
        super().__init__()
        self.encoder, self.decoder, self.z_dim = ExampleEncoder(z_dim), ExampleDecoder(z_dim), z_dim

    def model(self, x: torch.Tensor) -> None:
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            loc, scale = x.new_zeros(x.shape[0], self.z_dim), x.new_ones(x.shape[0], self.z_dim)
            z = pyro.sample("latent", dist.Normal(loc, scale).to_event(1))
            pyro.sample("obs", dist.Bernoulli(self.decoder(z), validate_args=False).to_event(1),
                        obs=x.reshape(-1, 784))  # fmt: skip

    def guide(self, x: torch.Tensor) -> None:
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", x.shape[0]):
            loc, scale = self.encoder(x)
            pyro.sample("latent", dist.Normal(loc, scale).to_event(1))


def train_pyro_example(seed: int, epochs: int) -> tuple[PyroExampleVAE, InMemoryData, float]:
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    vae = PyroExampleVAE()
    data = InMemoryData(load_digits(), pyrovae.likelihoods.make("bernoulli", x_dim=784), "dynamic")
    svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}), loss=pyro.infer.Trace_ELBO())
    start = time.perf_counter()
    for _ in range(epochs):
        for x in data.train_batches(256):
            svi.step(x)
    return vae, data, time.perf_counter() - start


def score(model, guide, data: InMemoryData, num_samples: int) -> float:
    with torch.no_grad():
        lls = [pyrovae.log_likelihood(model, guide, x, num_samples=num_samples) for x in data.test_batches(100)]
    return torch.cat(lls).mean().item()


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=Config().epochs)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--num-samples", type=int, default=5000)
    p.add_argument("--out", default=str(HERE / "results" / "vs_pyro_example.json"))
    args = p.parse_args(argv)

    rows: dict[str, list[dict]] = {"pyrovae default": [], "Pyro example architecture": []}
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            result = pyrovae.train({"seed": seed, "epochs": args.epochs, "eval_num_samples": 0}, tmp)
            seconds = time.perf_counter() - start
            data = InMemoryData(load_digits(), result.vae.likelihood, "dynamic")
            with pyro.settings.context(module_local_params=True):
                ll = score(result.vae.model, result.vae.guide, data, args.num_samples)
        rows["pyrovae default"].append({"seed": seed, "log_likelihood": ll, "train_seconds": seconds})
        print(f"pyrovae default      seed {seed}: log p(x) {ll:.2f} nats ({seconds:.0f} s)", flush=True)

        vae, data, seconds = train_pyro_example(seed, args.epochs)
        ll = score(vae.model, vae.guide, data, args.num_samples)
        rows["Pyro example architecture"].append({"seed": seed, "log_likelihood": ll, "train_seconds": seconds})
        print(f"Pyro example arch.   seed {seed}: log p(x) {ll:.2f} nats ({seconds:.0f} s)", flush=True)

    summary = {}
    print(f"\n| model ({args.epochs} epochs, {len(args.seeds)} seeds) | test log p(x), K={args.num_samples} "
          "| train seconds |\n|---|---|---|")  # fmt: skip
    for name, runs in rows.items():
        lls = [r["log_likelihood"] for r in runs]
        secs = [r["train_seconds"] for r in runs]
        sd = statistics.stdev(lls) if len(lls) > 1 else 0.0
        summary[name] = {"mean": statistics.mean(lls), "sd": sd, "runs": runs}
        print(f"| {name} | {statistics.mean(lls):.2f} ± {sd:.2f} | {statistics.mean(secs):.0f} |")
    out = {
        "epochs": args.epochs, "num_samples": args.num_samples, "seeds": args.seeds, "results": summary,
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "threads": torch.get_num_threads(), "torch": torch.__version__, "pyro": pyro.__version__},
    }  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
