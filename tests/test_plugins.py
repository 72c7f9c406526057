"""Plugins: an installed package's entry points and a loose module's import path work wherever a
built-in name does (train, compare on processes and on Ray, list), and are traced to their code."""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from pyrovae import ConfigError, cli, estimators
from pyrovae.compare import EstimatorSpec
from pyrovae.compare.cell import check_plugins
from pyrovae.testing import LinearGaussian

ESTIMATOR = '''
from pyrovae.estimators import Estimator, logmeanexp


class {name}(Estimator):
    """IWAE(K), under another name and with an option of its own."""

    def __init__(self, num_particles: int = 1, shrink: float = 1.0, **kwargs) -> None:
        super().__init__(num_particles=num_particles, **kwargs)
        self.shrink = shrink

    def point_bound(self, w, kl_weight=1.0):
        return logmeanexp(w.log_w(kl_weight), 0)
'''
LIKELIHOOD = '''
from pyrovae.likelihoods.bernoulli import BernoulliLikelihood


class {name}(BernoulliLikelihood):
    """A Bernoulli whose logits are divided by a temperature."""

    def __init__(self, x_dim: int, temperature: float = 1.0) -> None:
        super().__init__(x_dim)
        self.temperature = temperature

    def forward(self, params):
        return super().forward(params / self.temperature)
'''
ARCHITECTURE = '''
from torch import nn
from pyrovae.networks import Architecture


class LinearEncoder(nn.Module):
    def __init__(self, x_dim, z_dim):
        super().__init__()
        self.loc, self.log_scale = nn.Linear(x_dim, z_dim), nn.Linear(x_dim, z_dim)

    def forward(self, x):
        return self.loc(x), self.log_scale(x).exp()


class Linear(Architecture):
    """A linear encoder and decoder."""

    def encoder(self, s):
        return LinearEncoder(s.x_dim, s.z_dim)

    def decoder(self, s):
        return nn.Linear(s.z_dim, s.num_params * s.x_dim)
'''
TINY = ["--seeds", "0", "--steps", "4", "--eval-num-samples", "10", "--psis-samples", "100", "--snr-draws", "2",
        "--gap-points", "1", "--gap-steps", "1", "--set", "hidden=[8]", "--set", "z_dim=2",
        "--set", "batch_size=500"]  # fmt: skip
TRAIN = ["--epochs", "1", "--max-steps", "2", "--hidden", "8", "--z-dim", "2", "--eval-num-samples", "0", "--quiet"]


def install_package(site: Path) -> None:
    """A distribution, pyrovae-demo-plugin 0.3.1, as pip leaves one: its package and a .dist-info
    with entry points in the groups pyrovae.estimators and pyrovae.likelihoods."""
    pkg = site / "pyrovae_demo_plugin"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "bounds.py").write_text(ESTIMATOR.format(name="DemoIWAE"))
    (pkg / "likelihoods.py").write_text(LIKELIHOOD.format(name="TemperedBernoulli"))
    info = site / "pyrovae_demo_plugin-0.3.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pyrovae-demo-plugin\nVersion: 0.3.1\n")
    (info / "top_level.txt").write_text("pyrovae_demo_plugin\n")
    (info / "entry_points.txt").write_text(
        "[pyrovae.estimators]\ndemo_iwae = pyrovae_demo_plugin.bounds:DemoIWAE\n\n"
        "[pyrovae.likelihoods]\ntempered = pyrovae_demo_plugin.likelihoods:TemperedBernoulli\n"
    )


SCRIPT = Path(sys.executable).parent / "pyrovae"  # the console script: the working directory is not on its path


def pyrovae(*args: str, cwd: Path, site: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site) if site else ""}
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "pyrovae"]
    return subprocess.run([*command, *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_an_installed_plugin_trains_compares_and_lists_with_its_version(tmp_path):
    site = tmp_path / "site"
    install_package(site)
    listed = pyrovae("list", cwd=tmp_path, site=site)
    assert listed.returncode == 0, listed.stderr
    line = next(ln for ln in listed.stdout.splitlines() if ln.strip().startswith("demo_iwae"))
    assert "shrink" in line and "pyrovae-demo-plugin 0.3.1" in line and "pyrovae_demo_plugin.bounds:DemoIWAE" in line
    assert any(ln.strip().startswith("tempered") and "temperature" in ln for ln in listed.stdout.splitlines())

    run = pyrovae("train", "--estimator", "demo_iwae", "--num-particles", "2", "--likelihood", "tempered",
                  "--likelihood-option", "temperature=2.0", "--out", "run", *TRAIN,
                  cwd=tmp_path, site=site)  # fmt: skip
    assert run.returncode == 0, run.stderr
    identity = json.loads((tmp_path / "run" / "identity.json").read_text())
    assert identity["plugins"]["estimator"]["version"] == "0.3.1"
    assert identity["plugins"]["likelihood"]["import_path"] == "pyrovae_demo_plugin.likelihoods:TemperedBernoulli"

    bad = pyrovae("train", "--estimator", "demo_iwae", "--estimator-option", "shrnk=2", "--out", "bad", *TRAIN,
                  cwd=tmp_path, site=site)  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "estimator 'demo_iwae' has no option 'shrnk'; valid options: num_particles, shrink" in bad.stderr

    # on Ray where it is installed (each cell a task that imports the plugin), else on 2 worker processes
    backend = ["--backend", "ray"] if importlib.util.find_spec("ray") else ["--workers", "2"]
    grid = pyrovae("compare", "--estimators", "demo_iwae:2", "elbo", "--likelihoods", "tempered", *backend,
                   "--out", "cmp", *TINY, cwd=tmp_path, site=site)  # fmt: skip
    assert grid.returncode == 0, grid.stderr
    report = (tmp_path / "cmp" / "report.md").read_text()
    assert "| estimator | `pyrovae_demo_plugin.bounds:DemoIWAE` | pyrovae-demo-plugin | 0.3.1 |" in report
    tempered = "`pyrovae_demo_plugin.likelihoods:TemperedBernoulli`"
    assert f"| likelihood | {tempered} | pyrovae-demo-plugin | 0.3.1 |" in report
    result = json.loads(next((tmp_path / "cmp" / "cells").glob("demo_iwae_K2-*/result.json")).read_text())
    assert result["plugins"]["estimator"]["distribution"] == "pyrovae-demo-plugin"


def write_module(folder: Path, shrink_doc: str = "") -> None:
    (folder / "mybounds.py").write_text(
        ESTIMATOR.format(name="MyIWAE") + LIKELIHOOD.format(name="MyBernoulli") + ARCHITECTURE + f"# {shrink_doc}\n"
    )


def test_a_loose_module_in_the_working_directory_trains_and_compares_and_a_changed_one_is_refused(tmp_path):
    write_module(tmp_path)
    run = pyrovae("train", "--estimator", "mybounds:MyIWAE", "--architecture", "mybounds:Linear", "--out", "run",
                  *TRAIN, cwd=tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stderr
    plugins = json.loads((tmp_path / "run" / "identity.json").read_text())["plugins"]
    assert plugins["architecture"]["import_path"] == "mybounds:Linear" and plugins["estimator"]["source_sha256"]
    args = ["compare", "--estimators", "mybounds:MyIWAE:2:shrink=0.5", "--likelihoods", "mybounds:MyBernoulli",
            "--out", "cmp", *TINY]  # fmt: skip
    grid = pyrovae(*args, cwd=tmp_path)
    assert grid.returncode == 0, grid.stderr
    report = (tmp_path / "cmp" / "report.md").read_text()
    assert "| estimator | `mybounds:MyIWAE` | (a loose module) | - |" in report
    (cell,) = (tmp_path / "cmp" / "cells").iterdir()
    assert cell.name == "mybounds.MyIWAE_K2_shrink0.5-mybounds.MyBernoulli-seed0"
    assert pyrovae(*args, cwd=tmp_path).returncode == 0  # the same code: the finished cell stands

    write_module(tmp_path, "edited")
    again = pyrovae(*args, cwd=tmp_path)
    assert again.returncode == 2 and again.stderr.count("\n") == 1, again.stderr
    assert f"cell {cell.name}" in again.stderr and "finished with other plugin code" in again.stderr
    resumed = pyrovae("train", "--resume", "--out", "run", "--epochs", "2", "--quiet", cwd=tmp_path)
    assert resumed.returncode == 2 and "the plugin code changed since the run started" in resumed.stderr
    assert "estimator plugin mybounds:MyIWAE (source sha256 " in resumed.stderr


BROKEN = {"raises.py": "raise RuntimeError('boom at import')\n", "wrongkind.py": "class NotAnELBO:\n    pass\n"}


@pytest.mark.parametrize(
    "name,message",
    [
        ("raises:X", "estimator 'raises:X': cannot import module 'raises': RuntimeError: boom at import"),
        ("nosuchmodule:X", "cannot import module 'nosuchmodule': ModuleNotFoundError: No module named 'nosuchmodule'"),
        ("wrongkind:Missing", "module 'wrongkind' has no 'Missing'; it defines: NotAnELBO"),
        ("wrongkind:NotAnELBO", "is NotAnELBO, not a subclass of pyro.infer.elbo.ELBO"),
    ],
)
def test_a_bad_plugin_is_one_line_naming_it(tmp_path, monkeypatch, capsys, name, message):
    for file, text in BROKEN.items():
        (tmp_path / file).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert cli.main(["train", "--estimator", name, "--out", str(tmp_path / "r"), *TRAIN]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pyrovae: error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "r").exists()


def test_an_import_path_in_an_estimator_spec(tmp_path, monkeypatch):
    write_module(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert EstimatorSpec.parse("mybounds:MyIWAE") == EstimatorSpec("mybounds:MyIWAE", 1)
    spec = EstimatorSpec.parse("mybounds:MyIWAE:5:shrink=0.5")
    assert (spec.name, spec.num_particles, spec.options) == ("mybounds:MyIWAE", 5, (("shrink", 0.5),))
    assert spec.label == "mybounds:MyIWAE K=5 shrink=0.5"
    with pytest.raises(ConfigError, match="K must be an integer"):
        EstimatorSpec.parse("iwae:five")  # a built-in name: what follows is K
    assert estimators.origin("iwae") is None and estimators.origin("mybounds:MyIWAE").source_sha256


def test_a_worker_with_other_plugin_code_refuses_its_cell(tmp_path, monkeypatch):
    write_module(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    config = {"estimator": "mybounds:MyIWAE"}
    planned = {"estimator": {**estimators.origin("mybounds:MyIWAE").to_dict(), "source_sha256": "0" * 16}}
    settings = {"plugins": planned, "plugin_roots": [], "cell": {"id": "c1"}}
    with pytest.raises(ConfigError, match="cell c1: this worker imports other plugin code than the comparison"):
        check_plugins(config, settings)
    assert check_plugins(config, {**settings, "plugins": {"estimator": estimators.origin("mybounds:MyIWAE").to_dict()}})


def test_list_shows_a_plugin_named_on_the_command_line(tmp_path, monkeypatch, capsys):
    write_module(tmp_path)
    monkeypatch.chdir(tmp_path)  # found in the working directory, as the console script finds it
    assert cli.main(["list", "mybounds:MyBernoulli"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("likelihood:\n") and "options: temperature; plugin mybounds:MyBernoulli" in out
    assert cli.main(["list", "mybounds:logmeanexp"]) == 2
    assert (
        "is not an estimator (a pyro.infer.ELBO), likelihood, architecture, guide or prior" in capsys.readouterr().err
    )


def test_the_tutorial_module_is_what_the_readme_shows():
    text = Path(__file__).parents[1].joinpath("README.md").read_text()
    source = Path(__file__).parents[1].joinpath("examples", "own_estimator", "vargrad.py").read_text()
    body = source[source.index("class VarGrad") :]
    assert textwrap.dedent(body).strip() in text  # the README quotes the class as it is


FAMILY = """
import pyro.distributions as dist
import torch
from torch import nn
from pyrovae.families import GuideNetwork, PriorNetwork


class SoftplusGuide(GuideNetwork):
    def __init__(self, shapes, width: int = 16) -> None:
        super().__init__(shapes)
        self.net = nn.Sequential(nn.Linear(shapes.x_dim, width), nn.Tanh(), nn.Linear(width, 2 * shapes.z_dim))

    def forward(self, x):
        loc, raw = self.net(x * self.shapes.input_scale).chunk(2, -1)
        return dist.Normal(loc, nn.functional.softplus(raw) + 1e-3).to_event(1)


class ScaledPrior(PriorNetwork):
    def __init__(self, shapes) -> None:
        super().__init__(shapes)
        self.log_scale = nn.Parameter(torch.zeros(shapes.z_dim))

    def forward(self, batch_size):
        scale = self.log_scale.exp().expand(batch_size, self.shapes.z_dim)
        return dist.Normal(torch.zeros_like(scale), scale).to_event(1)
"""


def test_a_plugin_guide_and_prior_train_and_are_recorded(tmp_path, monkeypatch, capsys):
    (tmp_path / "myfamily.py").write_text(FAMILY)
    monkeypatch.syspath_prepend(str(tmp_path))
    family = ["--guide", "myfamily:SoftplusGuide", "--prior", "myfamily:ScaledPrior"]
    assert cli.main(["train", *family, "--estimator", "dreg", "--num-particles", "2", "--out", str(tmp_path / "run"),
                     *TRAIN]) == 0  # fmt: skip
    plugins = json.loads((tmp_path / "run" / "identity.json").read_text())["plugins"]
    assert plugins["guide"]["import_path"] == "myfamily:SoftplusGuide"
    assert plugins["prior"]["import_path"] == "myfamily:ScaledPrior"
    refused = {
        "--latents 4,2": "a plugin guide and prior is one layer's; use latents of one size",
        "--estimator analytic_elbo": "needs a closed-form KL, which a guide 'myfamily:SoftplusGuide' does not have",
    }
    for flags, message in refused.items():
        capsys.readouterr()
        argv = ["train", *family, *flags.split(), "--out", str(tmp_path / "bad"), *TRAIN]
        assert cli.main(argv) == 2
        assert message in capsys.readouterr().err
    assert cli.main(["train", "--prior", "myfamily:SoftplusGuide", "--out", str(tmp_path / "bad"), *TRAIN]) == 2
    assert "is SoftplusGuide, not a subclass of pyrovae.families.plugin.PriorNetwork" in capsys.readouterr().err
    assert cli.main(["list", "myfamily:ScaledPrior"]) == 0
    assert capsys.readouterr().out.startswith("prior:\n  myfamily:ScaledPrior")


def test_the_tutorial_s_vargrad_computes_what_the_shipped_one_does(monkeypatch):
    """The tutorial writes VarGrad outside pyrovae; pyrovae ships it as ``vargrad``: on the same draw
    both give the same loss and the same gradient in every parameter."""
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "examples" / "own_estimator"))
    p = LinearGaussian().perturb()
    out = []
    for est in (estimators.make("vargrad:VarGrad", num_particles=5), estimators.make("vargrad", num_particles=5)):
        torch.manual_seed(4)
        loss = est.differentiable_loss(p.model, p.guide, p.x)
        out.append((loss.item(), torch.autograd.grad(loss, p.parameters())))
    assert out[0][0] == pytest.approx(out[1][0], rel=1e-12)
    assert all(torch.allclose(a, b, rtol=1e-10) for a, b in zip(out[0][1], out[1][1], strict=True))


def test_a_module_may_share_a_registered_estimator_s_name(monkeypatch):
    """``vargrad:VarGrad:5`` is the tutorial's module (an import path) where Python finds a module
    ``vargrad``, ``vargrad:5`` the shipped one (where it finds none, what follows a name is K: see
    ``iwae:five`` above)."""
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "examples" / "own_estimator"))
    spec = EstimatorSpec.parse("vargrad:VarGrad:5")
    assert (spec.name, spec.num_particles) == ("vargrad:VarGrad", 5)
    assert (EstimatorSpec.parse("vargrad:5").name, EstimatorSpec.parse("vargrad:5").num_particles) == ("vargrad", 5)
