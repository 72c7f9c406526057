"""Encoder and decoder gradient SNR against K for IWAE and DReG (Rainforth 2018; Tucker 2019).

Three settings, the same measurement:

- ``digits``: a VAE trained on the embedded digits (``--run-dir``; without one, a VAE is trained
  first with ``iwae``, K = 8, for ``--epochs`` epochs), on a fixed batch of training digits,
  K = 1 ... 64. Its importance weights are heavy-tailed (PSIS k-hat > 0.7 for nearly every digit),
  outside the finite-variance assumption of Rainforth et al.'s asymptotics;
- ``digits-light``: a VAE with a 2-dimensional latent trained the same way (``--light-run-dir``),
  on training digits whose weights have finite variance there: the first 512 training digits are
  screened with PSIS (2000 particles) and ``--light-batch`` of those with k-hat < 0.5 are taken,
  evenly spaced, K = 1 ... 256;
- ``linear-gaussian``: a linear-Gaussian factor model whose guide is wider than the exact
  posterior, so the importance weights are light-tailed and the large-K theory applies,
  K = 1 ... 1024.

At each K the estimator's gradient is drawn R times (default 1000) at fixed parameters and data;
for each parameter group the mean over scalars of |E g| / sd(g) is reported with a 90% basic
(bias-corrected) bootstrap interval (blocks of draws resampled). The log-log slope against K is fitted over the
values above twice the noise floor sqrt(2 / (pi R)) (what a scalar with no signal shows).
Rainforth et al. derived IWAE's encoder SNR falling like K^(-1/2) and its decoder SNR rising like
K^(1/2); Tucker et al. found DReG's encoder SNR rising with K.

Usage: python benchmarks/gradient_snr.py [--run-dir RUN] [--light-run-dir RUN] [--draws 1000] [--batch 32]
Writes benchmarks/results/gradient_snr.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pyro  # noqa: E402
import pyro.distributions as dist  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import pyrovae  # noqa: E402
from pyrovae.config import load as load_config  # noqa: E402
from pyrovae.data import InMemoryData  # noqa: E402
from pyrovae.diagnostics import gradient_snr, importance_diagnostics, loglog_slope  # noqa: E402
from pyrovae.run import build_vae, checkpoint, load_images  # noqa: E402

HERE = Path(__file__).parent
ESTIMATORS = ("iwae", "dreg")
GROUPS = ("encoder", "decoder")


class FactorModel(nn.Module):
    """z ~ N(0, I_2), x | z ~ N(W z + b, 0.5^2 I_6); the data points in a plate at dim -1."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.W = nn.Parameter(torch.randn(6, 2, generator=g, dtype=torch.float64))
        self.b = nn.Parameter(torch.randn(6, generator=g, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0], dim=-1):
            z = pyro.sample("z", dist.Normal(torch.zeros(x.shape[0], 2, dtype=x.dtype), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.W.T + self.b, 0.5).to_event(1), obs=x)

    def posterior(self) -> tuple[torch.Tensor, torch.Tensor]:
        """z | x ~ N(A (x - b), S): (A, S)."""
        with torch.no_grad():
            S = torch.linalg.inv(torch.eye(2, dtype=torch.float64) + self.W.T @ self.W / 0.25)
            return S @ self.W.T / 0.25, S


class WideGuide(nn.Module):
    """A mean-field guide near the posterior but wider than it: light-tailed weights."""

    def __init__(self, model: FactorModel, widen: float = 1.3) -> None:
        super().__init__()
        A, S = model.posterior()
        self.A = nn.Parameter(A + 0.05)
        self.c = nn.Parameter(model.b.detach().clone())
        self.log_sd = nn.Parameter(0.5 * torch.diag(S).log() + math.log(widen))

    def forward(self, x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("z", dist.Normal((x - self.c) @ self.A.T, self.log_sd.exp()).to_event(1))


def trained_vae(run_dir: Path, overrides: dict, epochs: int) -> tuple:
    """The VAE of ``run_dir`` with its data; trains it first (``iwae``, K = 8) when it is absent."""
    if not (run_dir / "checkpoint.pt").exists():
        cfg = {"estimator": "iwae", "num_particles": 8, "epochs": epochs, "eval_num_samples": 0, **overrides}
        print(f"training a VAE for the checkpoint: {cfg} -> {run_dir}", flush=True)
        pyrovae.train(cfg, run_dir)
    cfg = load_config(run_dir / "config.toml")
    images = load_images(cfg)
    vae = build_vae(cfg, images)
    vae.load_state_dict(checkpoint.load(run_dir / "checkpoint.pt")["model"])
    return vae, InMemoryData(images, vae.likelihood, "fixed", seed=0)


def digits_setting(args: argparse.Namespace, out: Path) -> tuple:
    run_dir = Path(args.run_dir) if args.run_dir else out.parent / "snr_run"
    vae, data = trained_vae(run_dir, {}, args.epochs)
    x = data.train[torch.linspace(0, data.num_train - 1, args.batch).long()]  # every digit
    groups = {"encoder": list(vae.guide.parameters()), "decoder": list(vae.model.parameters())}
    return vae.model, vae.guide, x, groups, f"digits ({run_dir.name}, z = {vae.z_dim}, batch {args.batch})"


def light_setting(args: argparse.Namespace, out: Path) -> tuple:
    run_dir = Path(args.light_run_dir) if args.light_run_dir else out.parent / "snr_run_z2"
    vae, data = trained_vae(run_dir, {"z_dim": 2}, args.epochs)
    screened = data.train[:512]
    khat = importance_diagnostics(vae.model, vae.guide, screened, num_samples=2000)["khat"]
    light = np.flatnonzero(khat < 0.5)
    if len(light) < args.light_batch:
        raise SystemExit(f"only {len(light)} of 512 digits have k-hat < 0.5; need {args.light_batch}")
    pick = light[np.linspace(0, len(light) - 1, args.light_batch).astype(int)]
    x = screened[torch.as_tensor(pick, device=screened.device)]
    groups = {"encoder": list(vae.guide.parameters()), "decoder": list(vae.model.parameters())}
    label = (f"digits ({run_dir.name}, z = {vae.z_dim}), batch of {args.light_batch} digits with PSIS k-hat "
             f"< 0.5 ({len(light)} of the first 512 training digits qualify)")  # fmt: skip
    return vae.model, vae.guide, x, groups, label


def toy_setting(args: argparse.Namespace) -> tuple:
    model = FactorModel()
    guide = WideGuide(model)
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        z = torch.randn(8, 2, generator=g, dtype=torch.float64)
        x = z @ model.W.T + model.b + 0.5 * torch.randn(8, 6, generator=g, dtype=torch.float64)
    groups = {"encoder": list(guide.parameters()), "decoder": list(model.parameters())}
    return model, guide, x, groups, "linear-Gaussian, guide 1.3x wider than the posterior, batch 8"


def measure(setting: str, model, guide, x, groups, ks, draws) -> list[dict]:
    rows = []
    for name in ESTIMATORS:
        for k in ks:
            start = time.perf_counter()
            res = gradient_snr(pyrovae.estimators.make(name, num_particles=k), model, guide, x,
                               groups=groups, num_draws=draws)  # fmt: skip
            row = {"setting": setting, "estimator": name, "K": k, "seconds": time.perf_counter() - start,
                   **{g: s.to_dict() for g, s in res.items()}}  # fmt: skip
            rows.append(row)
            print(f"{setting:16s} {name:5s} K={k:5d}  encoder SNR {res['encoder'].mean_snr:.4f}  "
                  f"decoder SNR {res['decoder'].mean_snr:.4f}  ({row['seconds']:.0f} s)", flush=True)  # fmt: skip
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run-dir", default=None, help="a trained pyrovae run directory")
    p.add_argument("--epochs", type=int, default=50, help="training epochs when no --run-dir")
    p.add_argument("--draws", type=int, default=1000, help="R, gradient draws per K")
    p.add_argument("--batch", type=int, default=32, help="digits in the fixed batch")
    p.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    p.add_argument("--light-run-dir", default=None, help="a trained pyrovae run directory with z_dim = 2")
    p.add_argument("--light-batch", type=int, default=8, help="light-tailed digits in the fixed batch")
    p.add_argument("--light-ks", type=int, nargs="+", default=[1, 4, 16, 64, 256])
    p.add_argument("--toy-ks", type=int, nargs="+", default=[1, 4, 16, 64, 256, 1024])
    p.add_argument("--out", default=str(HERE / "results" / "gradient_snr"))
    return p.parse_args(argv)


def measure_settings(args: argparse.Namespace, out: Path) -> dict:
    """Each setting's (label, ks, rows), measured in order: digits, digits-light, linear-gaussian."""
    settings = {}
    with pyro.settings.context(module_local_params=True), pyro.validation_enabled(False):
        model, guide, x, groups, label = digits_setting(args, out)
        settings["digits"] = (label, args.ks, measure("digits", model, guide, x, groups, args.ks, args.draws))
        model, guide, x, groups, label = light_setting(args, out)
        settings["digits-light"] = (
            label,
            args.light_ks,
            measure("digits-light", model, guide, x, groups, args.light_ks, args.draws),
        )
        model, guide, x, groups, label = toy_setting(args)
        settings["linear-gaussian"] = (
            label,
            args.toy_ks,
            measure("linear-gaussian", model, guide, x, groups, args.toy_ks, args.draws),
        )
    return settings


def fit_slopes(settings: dict, floor: float) -> dict:
    """The log-log slope of each setting, estimator and group, over the values above ``floor``."""
    return {
        s: {
            n: {g: loglog_slope(ks, [r[g]["mean_snr"] for r in rows if r["estimator"] == n], floor) for g in GROUPS}
            for n in ESTIMATORS
        }
        for s, (_, ks, rows) in settings.items()
    }


def markdown_table(settings: dict, slopes: dict, floor: float, draws: int) -> str:
    """Each setting's SNR against K with its intervals, and the slopes, as markdown."""
    lines = [
        f"R = {draws} draws per K, 90% basic bootstrap intervals; the noise floor "
        f"sqrt(2 / (pi R)) is {floor / 2:.3f} and slopes use the values above twice it.",
        "",
    ]
    for s, (label, ks, rows) in settings.items():
        lines += [
            f"**{s}**: {label}",
            "",
            "| K | IWAE encoder | DReG encoder | IWAE decoder | DReG decoder |",
            "|---|---|---|---|---|",
        ]
        for k in ks:
            cells = []
            for g in GROUPS:
                for n in ESTIMATORS:
                    v = next(r[g] for r in rows if r["estimator"] == n and r["K"] == k)
                    cells.append(f"{v['mean_snr']:.3f} [{v['interval'][0]:.3f}, {v['interval'][1]:.3f}]")
            lines.append(f"| {k} | " + " | ".join(cells) + " |")
        lines.append(
            "| log-log slope | " + " | ".join(f"{slopes[s][n][g]:+.2f}" for g in GROUPS for n in ESTIMATORS) + " |"
        )
        lines.append("")
    return "\n".join(lines)


def plot(settings: dict, slopes: dict, floor: float, path: Path) -> None:
    """Each setting's encoder and decoder SNR against K, both estimators, on log-log axes."""
    fig, axes = plt.subplots(len(settings), 2, figsize=(9.5, 3.5 * len(settings)))
    for row_axes, (s, (_label, ks, rows)) in zip(axes, settings.items(), strict=True):
        for ax, g in zip(row_axes, GROUPS, strict=True):
            for n, color in zip(ESTIMATORS, ("tab:red", "tab:blue"), strict=True):
                rs = [r for r in rows if r["estimator"] == n]
                m = [r[g]["mean_snr"] for r in rs]
                lo = [max(0.0, r[g]["mean_snr"] - r[g]["interval"][0]) for r in rs]
                hi = [max(0.0, r[g]["interval"][1] - r[g]["mean_snr"]) for r in rs]
                ax.errorbar(
                    ks,
                    m,
                    yerr=[lo, hi],
                    marker="o",
                    capsize=3,
                    color=color,
                    label=f"{n.upper()} (slope {slopes[s][n][g]:+.2f})",
                )
            ax.axhline(floor / 2, color="gray", linestyle=":", label="noise floor")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("K")
            ax.set_title(f"{s}: {g} gradient SNR", fontsize=10)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    pyro.set_rng_seed(0)
    settings = measure_settings(args, out)

    floor = 2 * math.sqrt(2 / (math.pi * args.draws))
    slopes = fit_slopes(settings, floor)
    table = markdown_table(settings, slopes, floor, args.draws)
    print("\n" + table)
    out.with_suffix(".md").write_text(table)
    plot(settings, slopes, floor, out.with_suffix(".png"))

    result = {
        "draws": args.draws,
        "slopes": slopes,
        "settings": {s: {"label": label, "ks": ks, "rows": rows} for s, (label, ks, rows) in settings.items()},
        "machine": {
            "platform": platform.platform(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "pyro": pyro.__version__,
        },
    }
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
