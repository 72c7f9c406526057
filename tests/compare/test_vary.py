"""The grid's ``vary`` axes: config keys whose values multiply the cells (model families, sizes).

A vary axis makes the product of cells, each with a unique id and a label that shows its variant;
each cell's config carries the variant; grid-owned keys, empty axes and variants that fail the
config check are refused in one line; the spec round-trips through TOML; ``pyrovae compare
--vary KEY V1 V2`` builds the axis and a real two-cell comparison reports both variants.
"""

import dataclasses

import numpy as np
import pytest
import torch

from pyrovae import cli, data
from pyrovae.compare import GridSpec, grid
from pyrovae.compare.grid import Cell, EstimatorSpec
from pyrovae.errors import ConfigError

QUICK = {"estimators": ["elbo", "iwae:2"], "seeds": [0, 1], "budget": {"steps": 3}}
VARY = {"guide": ["gaussian", "iaf"], "latents": [[8], [8, 4]]}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_vary_makes_the_product_of_cells_with_unique_ids_and_labelled_variants():
    spec = GridSpec.from_dict({**QUICK, "base": {"flow_hidden": [16], "z_dim": 4}, "vary": VARY})
    cells = spec.cells()
    assert len(cells) == 2 * 2 * 2 * 2  # estimators x seeds x guides x latents
    assert len({c.id for c in cells}) == len(cells)
    assert len({c.label for c in cells}) == len(cells) // 2  # the label names all but the seed
    variants = [c.variant for c in cells]  # lists are held as tuples, so cells hash
    for g in VARY["guide"]:
        for lat in VARY["latents"]:
            assert variants.count((("guide", g), ("latents", tuple(lat)))) == 4  # estimators x seeds
    for cell in cells:
        guide, latents = cell.variant_dict["guide"], cell.variant_dict["latents"]
        assert cell.label.startswith(cell.estimator.label)
        assert guide in cell.label and "latents=[" + ", ".join(map(str, latents)) + "]" in cell.label
        assert guide in cell.id
        cfg = spec.cell_config(cell)
        assert (cfg["guide"], cfg["latents"], cfg["flow_hidden"]) == (guide, latents, [16])
        assert (cfg["estimator"], cfg["num_particles"], cfg["seed"]) == (
            cell.estimator.name, cell.estimator.num_particles, cell.seed)  # fmt: skip
    # without axes: one empty variant, ids and labels as before
    plain = GridSpec.from_dict(QUICK).cells()
    assert [c.variant for c in plain] == [()] * 4
    assert {c.id for c in plain} == {"elbo_K1-bernoulli-seed0", "elbo_K1-bernoulli-seed1",
                                     "iwae_K2-bernoulli-seed0", "iwae_K2-bernoulli-seed1"}  # fmt: skip
    assert {c.label for c in plain} == {"elbo K=1", "iwae K=2"}


def test_the_label_reads_as_documented():
    vary = {"guide": ["iaf"], "latents": [[100, 50]]}
    spec = GridSpec.from_dict({**QUICK, "estimators": ["iwae:5"], "seeds": [0], "vary": vary,
                               "base": {"flow_hidden": [100]}})  # fmt: skip
    assert spec.cells()[0].label == "iwae K=5 guide=iaf latents=[100, 50]"


@pytest.mark.parametrize("key", ["estimator", "num_particles", "estimator_options", "likelihood", "seed", "epochs",
                                 "max_steps", "max_seconds"])  # fmt: skip
def test_vary_on_a_grid_owned_key_is_refused(key):
    with pytest.raises(ConfigError) as e:
        GridSpec.from_dict({**QUICK, "vary": {key: [1, 2]}})
    assert "\n" not in str(e.value) and f"vary may not set {key}" in str(e.value)


@pytest.mark.parametrize("values", [[], "iaf", None])
def test_an_axis_needs_a_non_empty_list(values):
    with pytest.raises(ConfigError, match="vary 'guide' needs a non-empty list of values") as e:
        GridSpec.from_dict({**QUICK, "vary": {"guide": values}})
    assert "\n" not in str(e.value)


def test_an_unknown_or_impossible_variant_is_refused():
    with pytest.raises(ConfigError, match="unknown config key 'gide'"):
        GridSpec.from_dict({**QUICK, "vary": {"gide": ["iaf"]}})
    with pytest.raises(ConfigError, match="unknown guide 'maf'; valid: gaussian, iaf, spline"):
        GridSpec.from_dict({**QUICK, "vary": {"guide": ["gaussian", "maf"]}})
    with pytest.raises(ConfigError, match="prior 'vamp' with guide 'iaf'"):
        GridSpec.from_dict({**QUICK, "base": {"prior": "vamp"}, "vary": {"guide": ["gaussian", "iaf"]}})


def test_a_variant_the_estimator_cannot_train_is_refused_at_construction():
    with pytest.raises(ConfigError, match="estimator 'analytic_elbo' needs a closed-form KL"):
        GridSpec.from_dict({**QUICK, "estimators": ["elbo", "analytic_elbo"], "vary": {"guide": ["gaussian", "iaf"]}})


def test_a_variant_the_estimator_cannot_train_writes_nothing_through_the_cli(tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "--out", str(out), "--estimators", "analytic_elbo", "--seeds", "0", "--steps", "3",
            "--vary", "guide", "gaussian", "iaf"]  # fmt: skip
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert "needs a closed-form KL" in captured.err and len(captured.err.strip().splitlines()) == 1
    assert not out.exists() and captured.out == ""


def test_the_cell_config_refuses_that_variant_in_one_line():
    spec = GridSpec.from_dict({**QUICK, "estimators": ["elbo"], "vary": {"guide": ["gaussian", "iaf"]}})
    iaf = next(c for c in spec.cells() if c.variant_dict["guide"] == "iaf")
    assert spec.cell_config(iaf)["guide"] == "iaf"
    bad = dataclasses.replace(iaf, estimator=EstimatorSpec.parse("analytic_elbo"))
    with pytest.raises(ConfigError, match="needs a closed-form KL, which a guide 'iaf' does not have"):
        spec.cell_config(bad)


def test_to_toml_round_trips_the_axes(tmp_path):
    spec = GridSpec.from_dict({**QUICK, "vary": {"guide": ["gaussian", "spline"], "latents": [[8], [8, 4]],
                                                 "flow_hidden": [[8], [16, 16]]}})  # fmt: skip
    path = tmp_path / "comparison.toml"
    path.write_text(spec.to_toml())
    loaded = GridSpec.load(path)
    assert loaded == spec and loaded.vary == spec.vary
    assert [c.id for c in loaded.cells()] == [c.id for c in spec.cells()]


def test_to_toml_round_trips_with_a_base(tmp_path):
    spec = GridSpec.from_dict({**QUICK, "base": {"hidden": [16], "z_dim": 4}, "vary": {"guide": ["gaussian", "iaf"]}})
    path = tmp_path / "comparison.toml"
    path.write_text(spec.to_toml())
    assert GridSpec.load(path) == spec


def test_the_cli_parses_vary_axes(tmp_path, monkeypatch):
    seen = {}

    def fake_compare(spec, out, on_cell=None, on_start=None):
        seen["spec"] = spec
        return {"report": str(tmp_path / "report.md")}

    monkeypatch.setattr(cli, "compare", fake_compare)
    argv = ["compare", "--out", str(tmp_path / "cmp"), "--estimators", "elbo", "--seeds", "0", "--steps", "3",
            "--set", "flow_hidden=[16]", "--set", "z_dim=4", "--vary", "guide", "gaussian", "iaf",
            "--vary", "latents", "[8]", "[8,4]", "--vary", "flow-layers", "1", "2"]  # fmt: skip
    assert cli.main(argv) == 0
    spec = seen["spec"]
    assert spec.vary == {"guide": ["gaussian", "iaf"], "latents": [[8], [8, 4]], "flow_layers": [1, 2]}
    assert len(spec.cells()) == 8 and spec.base == {"flow_hidden": [16], "z_dim": 4}


def test_a_bad_vary_through_the_cli_is_one_line(tmp_path, capsys):
    argv = ["compare", "--out", str(tmp_path / "cmp"), "--estimators", "elbo", "analytic_elbo", "--steps", "3"]
    bad = [(["--vary", "seed", "1", "2"], "vary may not set seed"),
           (["--vary", "guide"], "vary 'guide' needs a non-empty list"),
           (["--vary", "guide", "iaf", "--vary", "prior", "vamp"], "prior 'vamp' with guide 'iaf'")]  # fmt: skip
    for extra, piece in bad:
        assert cli.main(argv + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("pyrovae: error: ") and piece in err[0], err
        assert not (tmp_path / "cmp").exists()


@pytest.fixture
def digits_subset(tmp_path):
    images = data.load("digits")
    path = tmp_path / "small.npz"
    np.savez(path, train=images.train[::45], test=images.test[::10])  # 100 and 50 images
    return path


def test_a_two_variant_comparison_through_the_cli_reports_both(tmp_path, digits_subset, capsys):
    spec = tmp_path / "grid.toml"
    spec.write_text(grid.to_toml_dict({"estimators": ["elbo"], "seeds": [0], "psis_points": 10, "snr_batch": 8})
                    + "\n[base]\n" + grid.to_toml_dict({"dataset": "npz", "data_path": str(digits_subset),
                                                       "hidden": [16], "z_dim": 4, "flow_hidden": [16],
                                                       "batch_size": 25}))  # fmt: skip
    out = tmp_path / "cmp"
    argv = ["compare", "--config", str(spec), "--out", str(out), "--steps", "3", "--eval-num-samples", "100",
            "--psis-samples", "100", "--snr-draws", "3", "--gap-points", "2", "--gap-steps", "2",
            "--vary", "guide", "gaussian", "iaf"]  # fmt: skip
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "comparison: 2 cells" in printed
    cells = sorted(p.name for p in (out / "cells").iterdir())
    assert cells == ["elbo_K1-guidegaussian-bernoulli-seed0", "elbo_K1-guideiaf-bernoulli-seed0"]
    report = (out / "report.md").read_text()
    rows = [line for line in report.splitlines() if line.startswith("| bernoulli | elbo K=1")]
    assert len(rows) == 2, rows
    for guide in ("gaussian", "iaf"):
        label = Cell(EstimatorSpec("elbo"), "bernoulli", 0, (("guide", guide),)).label
        assert sum(f"| {label} |" in r for r in rows) == 1, (label, rows)
    toml = (out / "comparison.toml").read_text()
    assert '[vary]\nguide = ["gaussian", "iaf"]' in toml


def test_a_vary_flag_adds_an_axis_to_the_files_axes(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text('estimators = ["elbo"]\nseeds = [0]\n[vary]\nguide = ["gaussian", "iaf"]\n[base]\nz_dim = 4\n')
    spec = GridSpec.load(path, {"vary": {"latents": [[8], [8, 4]]}, "base": {"hidden": [16]}})
    assert spec.vary == {"guide": ["gaussian", "iaf"], "latents": [[8], [8, 4]]}
    assert spec.base == {"z_dim": 4, "hidden": [16]}
    assert len(spec.cells()) == 4
