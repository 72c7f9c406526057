"""The command line's help: every flag says what it does and, where there is a fixed set, its choices."""

import argparse
import re

import pytest

from pyrovae import cli
from pyrovae.run import choices

SPHINX = re.compile(r":(class|func|meth|mod|attr):|``")


def _subparsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


PARSER = cli.parser()
COMMANDS = _subparsers(PARSER)


@pytest.mark.parametrize("command", ["pyrovae", *COMMANDS])
def test_every_flag_has_a_description_and_no_sphinx_markup(command):
    p = PARSER if command == "pyrovae" else COMMANDS[command]
    assert p.description and not SPHINX.search(p.description)
    for action in p._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = "/".join(action.option_strings) or action.dest
        assert action.help and action.help.strip(), f"{command} {name} has no help"
        assert not SPHINX.search(action.help), f"{command} {name}: {action.help}"
    assert not SPHINX.search(p.format_help())


def test_flags_with_a_fixed_set_list_every_choice():
    train = {a.dest: a.help for a in COMMANDS["train"]._actions}
    for key, names in choices().items():
        missing = [n for n in names if n not in train[key]]
        assert missing == [], f"--{key} help lacks {missing}"
    assert "pyro.<class>" in train["estimator"]
    assert all(word in train["device"] for word in ("auto", "cpu", "cuda"))
    compare = {a.dest: a.help for a in COMMANDS["compare"]._actions}
    assert all(n in compare["likelihoods"] for n in choices()["likelihood"])
    assert all(n in compare["estimators"] for n in choices()["estimator"])


def test_a_usage_error_is_one_line(capsys):
    assert cli.main(["train", "--lr", "fast"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["pyrovae: error: argument --lr: invalid float value: 'fast' (see: pyrovae train --help)"]
    assert cli.main(["train", "--help"]) == 0
    assert "--eval-batch-size" in capsys.readouterr().out


LISTED = {  # what pyrovae ships, written out: a name that goes missing from the registries fails here
    "likelihoods": ["bernoulli", "continuous_bernoulli", "discretized_logistic", "gaussian", "laplace", "poisson"],
    "estimators": ["analytic_elbo", "ciwae", "dreg", "elbo", "gdreg", "iwae", "jvi", "miwae", "piwae", "renyi", "rws",
                   "stl", "sumo", "tvo", "vargrad", "vimco"],
    "families": ["latents=[d1,d2,...]", "latent=bernoulli", "guide=iaf", "guide=spline", "prior=vamp", "prior=mog"],
}  # fmt: skip


def test_list_names_every_likelihood_estimator_family_dataset_and_preset(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    sections: dict[str, list[str]] = {}
    for line in out.splitlines():
        if not line.startswith(" "):
            sections[line.split()[0].rstrip(":")] = []
        elif line.startswith("  ") and not line.startswith("   "):
            sections[list(sections)[-1]].append(line.split()[0])
    assert {k: sections[k] for k in LISTED} == LISTED
    assert "  renyi                  options: num_particles, alpha, " in out  # each name with its options
    assert "datasets: cifar10, digits, fashion_mnist, mnist, mnist_static, npz, omniglot\n" in out
    assert "presets: burda2016-1layer, cifar10-conv, rainforth2018 (or a .toml file of config keys)\n" in out
