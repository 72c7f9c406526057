"""``pyrovae`` command line: a thin layer over :func:`pyrovae.train` and friends.

Every error the user can cause is one line on stderr, ``pyrovae: error: ...``, and exit status 2:
a bad flag, name, option, file or checkpoint, or a folder that cannot be written. SIGINT and
SIGTERM during training write a checkpoint and exit with one line and status 130 or 143 (128 plus
the signal's number).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, NoReturn

from tqdm.auto import tqdm

from . import data, estimators, families, likelihoods, presets
from .compare import GridSpec, compare
from .compare.grid import BACKENDS
from .config import FIELDS, Config, from_dict, parse_value
from .config import load as load_config
from .errors import PyrovaeError, TrainingInterrupted
from .evaluation.ais import SCHEDULES
from .evaluation.densities import INITS
from .evaluation.log_likelihood import METHODS
from .networks import architecture
from .run import BOUND_KEYS, RESUMABLE, RunDir, choices, evaluate_run, evaluate_run_ais, train

DESCRIPTION = "Train, evaluate and compare variational autoencoders (VAEs) on Pyro and PyTorch."

DICT_FLAGS = {"likelihood_options": "likelihood-option", "estimator_options": "estimator-option"}
DICT_EXAMPLES = {"likelihood_options": "scale=per_dim", "estimator_options": "alpha=0.5"}
METAVARS = {"data_path": "PATH", "device": "NAME"}


class _Parser(argparse.ArgumentParser):
    """argparse with a usage error on one line, like every other error (the usage is in --help)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"pyrovae: error: {message} (see: {self.prog} --help)\n")


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    """One flag per config key: ``--num-particles 5``; options as ``--likelihood-option k=v``.
    Each flag's help is the key's own line, its valid names where there is a fixed set, and its default."""
    defaults = Config()
    valid = {name: ", ".join(names) for name, names in choices().items()}
    valid["estimator"] += (
        f", or {estimators.PYRO_PREFIX}<class> for one of Pyro's own ELBOs ({estimators.PYRO_PREFIX}Trace_ELBO, ...)"
        ", or a plugin's package.module:Name"
    )
    valid["likelihood"] += ", or a plugin's package.module:Name"
    for key in ("architecture", "guide", "prior"):
        valid[key] += ", or a plugin's package.module:Name"
    p.add_argument("--config", metavar="FILE", help="TOML file of config keys (flags override it)")
    for name, f in FIELDS.items():
        default = getattr(defaults, name)
        text = f.metadata["help"] + (f"; one of: {valid[name]}" if name in valid else "")
        flag = f"--{DICT_FLAGS.get(name, name.replace('_', '-'))}"
        if name in DICT_FLAGS:
            kind = name.split("_")[0]
            p.add_argument(
                flag,
                dest=name,
                action="append",
                metavar="KEY=VALUE",
                help=f"{text}, one a flag (repeatable), e.g. {DICT_EXAMPLES[name]}; "
                f"each {kind}'s options: pyrovae list",
            )
        elif isinstance(default, list):
            p.add_argument(
                flag, dest=name, metavar="N,N", help=f"{text}; comma-separated; default: {','.join(map(str, default))}"
            )
        else:
            value_type = type(default)
            metavar = METAVARS.get(name) or (
                "NAME" if name in valid else {int: "N", float: "X"}.get(value_type, "TEXT")
            )
            shown = default if default != "" else "none"
            p.add_argument(flag, dest=name, type=value_type, metavar=metavar, help=f"{text}; default: {shown}")


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
        saved = RunDir(args.out).config
        return from_dict(overrides, load_config(saved)) if saved.exists() else from_dict(overrides)
    return from_dict(overrides)


def _cmd_train(args: argparse.Namespace) -> int:
    def report(m: dict[str, Any]) -> None:
        test = "".join(f"  {k.replace('_', ' ')} {m[k]:.2f}" for k in BOUND_KEYS if k in m)
        tqdm.write(f"epoch {m['epoch']:4d}  train loss {m['train_loss']:.2f}{test}  ({m['seconds']:.1f} s)")

    result = train(
        _config(args),
        args.out,
        resume=args.resume,
        progress=not args.quiet,
        on_epoch=None if args.quiet else report,
        notice=None if args.quiet else lambda line: print(line, file=sys.stderr),
    )
    print(f"run directory: {result.run_dir}")
    if result.evaluation is not None:
        _print_evaluation(result.evaluation)
    return 0


def _print_evaluation(e: dict[str, Any]) -> None:
    bpd = e.get("bits_per_dim", {})
    if "checkpoint" in e:  # which model was scored (under early stopping: best.pt)
        print(f"scored {e['checkpoint']}, the model of epoch {e['model_epoch']}")
    if "log_likelihood" in e:
        in_bits = f" ({bpd['log_likelihood']:.3f} bits/dim)" if "log_likelihood" in bpd else ""
        print(f"test log-likelihood (IS, K={e['log_likelihood_samples']}): {e['log_likelihood']:.2f} nats{in_bits}")
    if "elbo" in bpd:
        print(f"test ELBO {bpd['elbo']:.3f} bits/dim")
    print(
        f"test ELBO {e['elbo']:.2f}  IWAE(K={e['iwae_particles']}) {e['iwae_bound']:.2f}  "
        f"KL {e['kl']:.2f}  reconstruction {e['reconstruction']:.2f}  "
        f"active units {e.get('active_units', 'n/a')}  ({e['seconds']:.1f} s)"
    )


def _cmd_evaluate(args: argparse.Namespace) -> int:
    ais_flags = {
        "points": "--points",
        "ais_steps": "--ais-steps",
        "ais_chains": "--ais-chains",
        "hmc_steps": "--hmc-steps",
        "step_size": "--step-size",
        "ais_init": "--ais-init",
        "schedule": "--schedule",
    }
    if args.method == "is":
        given = [flag for key, flag in ais_flags.items() if getattr(args, key) is not None]
        if given:
            raise PyrovaeError(f"{', '.join(given)} go with --method ais")
        _print_evaluation(evaluate_run(args.run_dir, num_samples=args.num_samples, device=args.device, progress=True))
        print(f"wrote {args.run_dir}/evaluation.json, samples.png, reconstructions.png")
        return 0
    options = {
        key: getattr(args, flag)
        for key, flag in (
            ("num_steps", "ais_steps"),
            ("num_chains", "ais_chains"),
            ("hmc_steps", "hmc_steps"),
            ("step_size", "step_size"),
            ("init", "ais_init"),
            ("schedule", "schedule"),
        )
        if getattr(args, flag) is not None
    }
    r = evaluate_run_ais(
        args.run_dir, points=args.points, num_samples=args.num_samples, device=args.device, progress=True, **options
    )
    a = r["ais"]
    print(f"scored {r['checkpoint']}, the model of epoch {r['model_epoch']}")
    print(
        f"test log-likelihood on the first {r['num_points']} test points, AIS ({a['num_steps']} steps, "
        f"{a['num_chains']} chains, {a['hmc_steps']} leapfrog steps, acceptance {r['acceptance']:.2f}): "
        f"{r['log_likelihood_ais']:.2f} nats ({r['seconds_ais']:.1f} s)"
    )
    print(
        f"IS (K={r['is_samples']}) on the same points: {r['log_likelihood_is']:.2f} nats "
        f"({r['seconds_is']:.1f} s); IS - AIS = {r['is_minus_ais']:+.2f} nats"
    )
    print(f"wrote {args.run_dir}/ais.json")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    for key in (
        "estimators",
        "likelihoods",
        "seeds",
        "workers",
        "eval_num_samples",
        "psis_samples",
        "snr_draws",
        "bias_draws",
        "gap_points",
        "gap_steps",
        "ais_points",
        "ais_steps",
        "ais_chains",
        "backend",
        "address",
        "cell_cpus",
        "cell_gpus",
    ):
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
    if args.vary:
        overrides["vary"] = {key.replace("-", "_"): [parse_value(v) for v in values] for key, *values in args.vary}
    spec = GridSpec.load(args.config, overrides) if args.config else GridSpec.from_dict(overrides)
    done = []

    def start(n: int) -> None:
        print(f"comparison: {n} cells in {args.out}", flush=True)

    def report(cell_id: str) -> None:
        done.append(cell_id)
        print(f"[{len(done)}] cell {cell_id} done", flush=True)

    result = compare(spec, args.out, on_cell=report, on_start=start)
    print(f"report: {result['report']}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    if args.names:
        for name in args.names:
            _list_plugin(name)
        return 0
    for kind, reg in (("likelihoods", likelihoods), ("estimators", estimators), ("architectures", architecture)):
        print(f"{kind}:")
        for name in reg.names():
            _list_entry(reg, name)
        for name in reg.REGISTRY.shadowed():
            print(f"  {name:22s} (an installed plugin's name, hidden by the built-in of that name)")
    print('families (config keys; combine them, e.g. latents = [100, 50] with guide = "iaf"):')
    for name, (what, keys) in families.FAMILIES.items():
        print(f"  {name:22s} {what}; options: {', '.join(keys)}")
    for kind, reg in _family_plugins():
        for name in reg.REGISTRY.plugin_names():  # installed plugins' guides and priors (the families' own above)
            _list_entry(reg, name, kind)
    print(f"datasets: {', '.join(sorted(data.DATASETS))}")
    print(f"presets: {', '.join(presets.names())} (or a .toml file of config keys)")
    print("plugins: any package.module:Name in place of a name, or a name an installed package registers")
    print("  (entry-point groups pyrovae.estimators, .likelihoods, .architectures, .guides, .priors);")
    print("  pyrovae list package.module:Name shows one")
    return 0


def _list_entry(reg: Any, name: str, kind: str = "") -> None:
    """One line: the name and its options, and a plugin's origin (or why it does not load)."""
    name_shown = f"{kind} {name}" if kind else name
    try:
        options, origin = ", ".join(reg.REGISTRY.options(name)) or "-", reg.origin(name)
    except PyrovaeError as e:
        print(f"  {name_shown:22s} cannot load: {e}")
        return
    print(f"  {name_shown:22s} options: {options}" + (f"; plugin {origin.describe()}" if origin else ""))


def _family_plugins() -> tuple[tuple[str, Any], ...]:
    """The guide and prior plugin registries, shaped like the estimators and likelihoods modules."""
    return tuple(
        (kind, SimpleNamespace(REGISTRY=registry, origin=registry.origin))
        for kind, registry in (("guide", families.GUIDE_PLUGINS), ("prior", families.PRIOR_PLUGINS))
    )


def _list_plugin(name: str) -> None:
    """A plugin named on the command line: what kind it is, its options and origin."""
    errors = []
    kinds = (("estimator", estimators), ("likelihood", likelihoods), ("architecture", architecture))
    for kind, reg in (*kinds, *_family_plugins()):
        try:
            reg.REGISTRY.get(name)
        except PyrovaeError as e:
            errors.append(str(e))
            continue
        print(f"{kind}:")
        _list_entry(reg, name)
        return
    if "not a subclass" in errors[0]:
        raise PyrovaeError(
            f"{name!r} is not an estimator (a pyro.infer.ELBO), likelihood, architecture, guide or prior"
        )
    raise PyrovaeError(errors[0])


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pyrovae", description=DESCRIPTION)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", help="what to do; COMMAND --help for more")
    _train_parser(sub)
    _evaluate_parser(sub)
    _compare_parser(sub)
    ls = sub.add_parser(
        "list",
        help="list the likelihoods, estimators (with their options and plugins), data sets, presets",
        description="List the likelihoods and estimators with their options (installed plugins among them, "
        "with where they came from), the data sets and the presets; or the plugins named.",
    )
    ls.add_argument("names", nargs="*", metavar="NAME", help="plugins to show, e.g. my_module:MyBound")
    ls.set_defaults(fn=_cmd_list)
    return p


def _train_parser(sub: Any) -> None:
    t = sub.add_parser(
        "train",
        help="train a VAE and evaluate it on the test set",
        description="Train a VAE and evaluate it on the test set. Flags override --config.",
    )
    t.add_argument("--out", default="runs/default", metavar="DIR", help="run directory (default: runs/default)")
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its checkpoint, exactly; of the other flags only these may "
        f"change: {', '.join('--' + k.replace('_', '-') for k in sorted(RESUMABLE))}",
    )
    t.add_argument("--quiet", action="store_true", help="no progress bar, epoch lines or notices")
    _add_config_flags(t)
    t.set_defaults(fn=_cmd_train)


def _evaluate_parser(sub: Any) -> None:
    e = sub.add_parser(
        "evaluate",
        help="evaluate a run directory (evaluation.json, PNG grids)",
        description="Evaluate a run directory: evaluation.json and PNG grids of samples and reconstructions.",
    )
    e.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by pyrovae train")
    e.add_argument(
        "--num-samples",
        type=int,
        default=None,
        metavar="K",
        help="K of the IS log-likelihood (default: the run's eval_num_samples)",
    )
    e.add_argument(
        "--device",
        default=None,
        metavar="NAME",
        help="torch device: auto, cpu, cuda or cuda:N (default: the run's device)",
    )
    e.add_argument(
        "--method",
        default="is",
        choices=METHODS,
        help="is: the full evaluation (IS log-likelihood, bounds, KL, active units, grids); ais: annealed "
        "importance sampling with HMC on --points test points, beside IS on the same points, into "
        "ais.json (default: is)",
    )
    e.add_argument("--points", type=int, metavar="N", help="ais: the first N test points (default: all)")
    e.add_argument("--ais-steps", type=int, metavar="T", help="ais: intermediate distributions (default: 1000)")
    e.add_argument("--ais-chains", type=int, metavar="C", help="ais: chains per data point (default: 16)")
    e.add_argument("--hmc-steps", type=int, metavar="L", help="ais: leapfrog steps per HMC transition (default: 10)")
    e.add_argument(
        "--step-size",
        type=float,
        metavar="X",
        help="ais: initial leapfrog step size, then adapted per point (default: 0.05)",
    )
    e.add_argument("--ais-init", choices=INITS, help="ais: where the chains start (default: guide)")
    e.add_argument("--schedule", choices=SCHEDULES, help="ais: the spacing of beta from 0 to 1 (default: sigmoid)")
    e.set_defaults(fn=_cmd_evaluate)


def _compare_parser(sub: Any) -> None:
    c = sub.add_parser(
        "compare",
        help="run a fair grid of estimators and write a report",
        description="Run a grid of estimators x likelihoods x seeds, one budget for all, and write a report.",
    )
    c.add_argument("--config", metavar="FILE", help="TOML comparison spec (flags override it)")
    c.add_argument("--out", default="runs/compare", metavar="DIR", help="comparison directory (default: runs/compare)")
    c.add_argument(
        "--estimators",
        nargs="+",
        metavar="SPEC",
        help="name[:K[:key=value,...]], e.g. elbo iwae:5 dreg:50 renyi:5:alpha=0.5 my_module:MyBound:5; names: "
        + ", ".join(choices()["estimator"])
        + ", or a plugin's package.module:Name",
    )
    c.add_argument(
        "--likelihoods",
        nargs="+",
        metavar="NAME",
        help="likelihoods to compare; one of: "
        + ", ".join(likelihoods.names())
        + ", or a plugin's package.module:Name",
    )
    c.add_argument("--seeds", nargs="+", type=int, metavar="N", help="seeds: each cell runs once a seed")
    c.add_argument("--epochs", type=int, metavar="N", help="budget: epochs per cell")
    c.add_argument("--steps", type=int, metavar="N", help="budget: gradient steps per cell")
    c.add_argument("--seconds", type=float, metavar="X", help="budget: training seconds per cell")
    c.add_argument("--workers", type=int, metavar="N", help="cells run in this many processes at once")
    c.add_argument(
        "--backend",
        choices=BACKENDS,
        help="process: a local pool of --workers processes (default); ray: each cell a Ray task, on a "
        'local Ray or the cluster at --address (pip install "pyrovae[ray]")',
    )
    c.add_argument(
        "--address",
        metavar="HOST:PORT",
        help="ray: the cluster to join (host:port of its head, or auto); default: start a local Ray",
    )
    c.add_argument("--cell-cpus", type=float, metavar="X", help="ray: CPUs a cell asks for (default: 1)")
    c.add_argument(
        "--cell-gpus",
        type=float,
        metavar="X",
        help="ray: GPUs a cell asks for, a fraction to share one between small cells (default: 0)",
    )
    _compare_diagnostic_flags(c)
    c.set_defaults(fn=_cmd_compare)


def _compare_diagnostic_flags(c: argparse.ArgumentParser) -> None:
    c.add_argument("--eval-num-samples", type=int, metavar="K", help="K of the test log-likelihood")
    c.add_argument("--psis-samples", type=int, metavar="K", help="K for PSIS k-hat (>= 100)")
    c.add_argument("--snr-draws", type=int, metavar="R", help="gradient draws for the SNR")
    c.add_argument("--bias-draws", type=int, metavar="R", help="paired gradient draws of the bias test (0: none)")
    c.add_argument("--gap-points", type=int, metavar="N", help="test points for the gaps")
    c.add_argument("--gap-steps", type=int, metavar="N", help="steps refining q for the gaps")
    c.add_argument(
        "--ais-points",
        type=int,
        metavar="N",
        help="test points (spread over the test set) that also get an AIS log-likelihood, with IS minus "
        "AIS in the report (default: 0, none)",
    )
    c.add_argument("--ais-steps", type=int, metavar="T", help="AIS intermediate distributions (default: 1000)")
    c.add_argument("--ais-chains", type=int, metavar="C", help="AIS chains per point (default: 16)")
    c.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="a train config key for every cell (repeatable), e.g. --set hidden=[200]",
    )
    c.add_argument(
        "--vary",
        action="append",
        nargs="+",
        metavar="KEY VALUE",
        help="an axis of the grid: a train config key and its values (repeatable; the grid takes every "
        "combination), e.g. --vary guide gaussian iaf --vary latents [50] [100,50]",
    )


def _rank() -> str:
    return os.environ.get("RANK", "0")


def _quiet_unless_rank_0() -> None:
    """Under torchrun only rank 0 writes to stdout (the other ranks' lines would repeat it); every
    rank's errors reach stderr, those of ranks other than 0 marked with their rank."""
    if _rank() != "0":
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process


def main(argv: Sequence[str] | None = None) -> int:
    _quiet_unless_rank_0()
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # --help (0), or a usage error already printed as one line (2)
        return e.code if isinstance(e.code, int) else 0
    try:
        return args.fn(args)
    except TrainingInterrupted as e:
        print(f"pyrovae: {e}", file=sys.stderr)
        return 128 + e.signum
    except PyrovaeError as e:
        where = "" if _rank() == "0" else f" (rank {_rank()})"
        print(f"pyrovae: error{where}: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the file system said no (a full disk, a folder gone read-only) after the checks
        where = f": {e.filename}" if e.filename else ""
        print(f"pyrovae: error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pyrovae: interrupted; the last checkpoint is intact", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
