"""``pyrovae`` command line: a thin layer over :func:`pyrovae.train` and friends."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from .config import FIELDS, Config, from_dict, parse_value
from .config import load as load_config
from .errors import PyrovaeError

DICT_FLAGS = {"likelihood_options": "likelihood-option", "estimator_options": "estimator-option"}


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    """One flag per config key: ``--num-particles 5``; options as ``--likelihood-option k=v``."""
    defaults = Config()
    p.add_argument("--config", metavar="FILE", help="TOML file of config keys (flags override it)")
    for name in FIELDS:
        default = getattr(defaults, name)
        if name in DICT_FLAGS:
            p.add_argument(f"--{DICT_FLAGS[name]}", dest=name, action="append", metavar="KEY=VALUE",
                           help=f"one entry of {name} (repeatable)")  # fmt: skip
        elif isinstance(default, list):
            p.add_argument(f"--{name.replace('_', '-')}", dest=name, metavar="N,N",
                           help=f"comma-separated (default {','.join(map(str, default))})")  # fmt: skip
        else:
            kind = type(default)
            p.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, metavar=kind.__name__.upper(),
                           help=f"(default {default!r})")  # fmt: skip


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in FIELDS:
        value = getattr(args, name, None)
        if value is None:
            continue
        if name in DICT_FLAGS:
            entries = {}
            for item in value:
                key, sep, text = item.partition("=")
                if not sep or not key:
                    raise PyrovaeError(f"--{DICT_FLAGS[name]} needs KEY=VALUE, got {item!r}")
                entries[key.strip()] = parse_value(text.strip())
            value = entries
        elif isinstance(getattr(Config(), name), list):
            try:
                value = [int(v) for v in value.split(",") if v.strip()]
            except ValueError as e:
                raise PyrovaeError(f"--{name.replace('_', '-')} needs integers like 512,256") from e
        out[name] = value
    return out


def _config(args: argparse.Namespace) -> Config | None:
    overrides = _overrides(args)
    if args.config:
        return load_config(args.config, overrides)
    if args.resume and not overrides:
        return None  # the run's own config
    if args.resume:
        from pathlib import Path

        from .training import CONFIG_FILE

        saved = Path(args.out) / CONFIG_FILE
        return from_dict(overrides, load_config(saved)) if saved.exists() else from_dict(overrides)
    return from_dict(overrides)


def _cmd_train(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from .training import train

    def report(m: dict[str, Any]) -> None:
        test = "".join(f"  {k.replace('_', ' ')} {m[k]:.2f}" for k in ("test_bound", "test_objective")
                       if k in m)  # fmt: skip
        tqdm.write(f"epoch {m['epoch']:4d}  train loss {m['train_loss']:.2f}{test}  "
                   f"({m['seconds']:.1f} s)")  # fmt: skip

    result = train(_config(args), args.out, resume=args.resume, progress=not args.quiet,
                   on_epoch=None if args.quiet else report,
                   notice=None if args.quiet else lambda line: print(line, file=sys.stderr))  # fmt: skip
    print(f"run directory: {result.run_dir}")
    if result.evaluation is not None:
        _print_evaluation(result.evaluation)
    return 0


def _print_evaluation(e: dict[str, Any]) -> None:
    if "log_likelihood" in e:
        print(f"test log-likelihood (IS, K={e['log_likelihood_samples']}): "
              f"{e['log_likelihood']:.2f} nats")  # fmt: skip
    print(f"test ELBO {e['elbo']:.2f}  IWAE(K={e['iwae_particles']}) {e['iwae_bound']:.2f}  "
          f"KL {e['kl']:.2f}  reconstruction {e['reconstruction']:.2f}  "
          f"active units {e.get('active_units', 'n/a')}  ({e['seconds']:.1f} s)")  # fmt: skip


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import evaluate_run

    _print_evaluation(evaluate_run(args.run_dir, num_samples=args.num_samples, device=args.device))
    print(f"wrote {args.run_dir}/evaluation.json, samples.png, reconstructions.png")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from .compare import GridSpec, compare

    overrides: dict[str, Any] = {}
    for key in ("estimators", "likelihoods", "seeds", "workers", "eval_num_samples", "psis_samples",
                "snr_draws", "gap_points", "gap_steps"):  # fmt: skip
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    budgets = {k: getattr(args, k) for k in ("epochs", "steps", "seconds") if getattr(args, k) is not None}
    if len(budgets) > 1:
        raise PyrovaeError("give one budget: --epochs, --steps or --seconds")
    if budgets:
        overrides["budget"] = budgets
    if args.set:
        base = {}
        for item in args.set:
            key, sep, text = item.partition("=")
            if not sep:
                raise PyrovaeError(f"--set needs KEY=VALUE, got {item!r}")
            base[key.strip().replace("-", "_")] = parse_value(text.strip())
        overrides["base"] = base
    spec = GridSpec.load(args.config, overrides) if args.config else GridSpec.from_dict(overrides)
    n = len(spec.cells())
    done = []

    def report(cell_id: str) -> None:
        done.append(cell_id)
        print(f"[{len(done)}] cell {cell_id} done", flush=True)

    print(f"comparison: {n} cells in {args.out}", flush=True)
    result = compare(spec, args.out, on_cell=report)
    print(f"report: {result['report']}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from . import estimators, likelihoods

    for kind, reg in (("likelihoods", likelihoods), ("estimators", estimators)):
        print(f"{kind}:")
        for name in reg.names():
            print(f"  {name:22s} options: {', '.join(reg.options(name)) or '-'}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pyrovae", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a VAE and evaluate it on the test set")
    t.add_argument("--out", default="runs/default", metavar="DIR", help="run directory")
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")
    _add_config_flags(t)
    t.set_defaults(fn=_cmd_train)
    e = sub.add_parser("evaluate", help="evaluate a run directory (evaluation.json, PNG grids)")
    e.add_argument("run_dir", metavar="RUN_DIR")
    e.add_argument("--num-samples", type=int, default=None, metavar="K",
                   help="K of the IS log-likelihood (default: the run's eval_num_samples)")  # fmt: skip
    e.add_argument("--device", default=None)
    e.set_defaults(fn=_cmd_evaluate)
    c = sub.add_parser("compare", help="run a fair grid of estimators and write a report")
    c.add_argument("--config", metavar="FILE", help="TOML comparison spec (flags override it)")
    c.add_argument("--out", default="runs/compare", metavar="DIR", help="comparison directory")
    c.add_argument("--estimators", nargs="+", metavar="SPEC",
                   help="name[:K[:key=value,...]], e.g. elbo iwae:5 dreg:50 renyi:5:alpha=0.5")  # fmt: skip
    c.add_argument("--likelihoods", nargs="+", metavar="NAME")
    c.add_argument("--seeds", nargs="+", type=int, metavar="N")
    c.add_argument("--epochs", type=int, help="budget: epochs per cell")
    c.add_argument("--steps", type=int, help="budget: gradient steps per cell")
    c.add_argument("--seconds", type=float, help="budget: training seconds per cell")
    c.add_argument("--workers", type=int, help="cells run in this many processes at once")
    c.add_argument("--eval-num-samples", type=int, metavar="K", help="K of the test log-likelihood")
    c.add_argument("--psis-samples", type=int, metavar="K", help="K for PSIS k-hat (>= 100)")
    c.add_argument("--snr-draws", type=int, metavar="R", help="gradient draws for the SNR")
    c.add_argument("--gap-points", type=int, metavar="N", help="test points for the gaps")
    c.add_argument("--gap-steps", type=int, metavar="N", help="steps refining q for the gaps")
    c.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="a train config key for every cell (repeatable), e.g. --set hidden=[200]")  # fmt: skip
    c.set_defaults(fn=_cmd_compare)
    ls = sub.add_parser("list", help="list the likelihoods and estimators with their options")
    ls.set_defaults(fn=_cmd_list)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.fn(args)
    except PyrovaeError as e:
        print(f"pyrovae: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pyrovae: interrupted; the last checkpoint is intact", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
