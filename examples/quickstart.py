"""pyrovae from Python, in both of Pyro's idioms, on the embedded digits.

    python examples/quickstart.py --epochs 5

1. ``pyro.infer.SVI`` with the global param store and an IWAE estimator;
2. module-local parameters with a torch optimizer and the ELBO;
then the importance-sampled log-likelihood of the test set for each.
"""

from __future__ import annotations

import argparse

import pyro
import torch

import pyrovae
from pyrovae.data import InMemoryData, load_digits


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--num-samples", type=int, default=1000, help="K of the test log-likelihood")
    p.add_argument("--test-points", type=int, default=500)
    args = p.parse_args(argv)
    pyro.set_rng_seed(0)
    images = load_digits()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    results = {}

    # 1. the global param store: pyro.infer.SVI with pyro.optim
    vae = pyrovae.VAE(x_dim=784, z_dim=50, likelihood="bernoulli").to(device)
    data = InMemoryData(images, vae.likelihood, device=device)
    est = pyrovae.estimators.make("iwae", num_particles=5)
    svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}), loss=est)
    for _ in range(args.epochs):
        for x in data.train_batches(100):
            svi.step(x, num_data=data.num_train)
    x_test = data.test[:: max(1, data.num_test // args.test_points)]  # every digit, not just the 0s
    ll = pyrovae.log_likelihood(vae.model, vae.guide, x_test, num_samples=args.num_samples)
    results["svi_iwae5"] = ll.mean().item()

    # 2. module-local parameters with a torch optimizer
    with pyro.settings.context(module_local_params=True):
        vae = pyrovae.VAE(x_dim=784, z_dim=50, likelihood="bernoulli").to(device)
        loss_fn = pyrovae.estimators.make("elbo")(vae.model, vae.guide)
        opt = torch.optim.Adam(loss_fn.parameters(), lr=1e-3)
        for _ in range(args.epochs):
            for x in data.train_batches(100):
                opt.zero_grad()
                loss_fn(x, num_data=data.num_train).backward()
                opt.step()
        ll = pyrovae.log_likelihood(vae.model, vae.guide, x_test, num_samples=args.num_samples)
        results["torch_elbo"] = ll.mean().item()

    for name, value in results.items():
        print(f"{name:12s} test log p(x) ~ {value:.2f} nats (IS, K={args.num_samples})")
    return results


if __name__ == "__main__":
    main()
