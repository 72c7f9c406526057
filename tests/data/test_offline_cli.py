"""`pyrovae train --dataset mnist` without the files and without a network: one line, exit 2,
and the run directory untouched."""

import dataclasses

from pyrovae import cli
from pyrovae.data import mnist

from .fakes import closed_port_url


def test_offline_training_on_missing_mnist_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    down = closed_port_url()
    monkeypatch.setattr(mnist, "FILES", {k: dataclasses.replace(s, urls=(down + s.name,))
                                         for k, s in mnist.FILES.items()})  # fmt: skip
    empty, run = tmp_path / "empty", tmp_path / "run"
    empty.mkdir()
    argv = ["train", "--dataset", "mnist", "--data-path", str(empty), "--out", str(run), "--epochs", "1",
            "--hidden", "8", "--z-dim", "2", "--eval-num-samples", "0", "--quiet"]  # fmt: skip
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"pyrovae: error: dataset 'mnist': 4 file(s) missing in {empty}")
    for spec in mnist.FILES.values():
        assert f"{spec.name} (SHA-256 {spec.sha256})" in err
    assert not run.exists() or not any(run.iterdir())
    assert not any(empty.iterdir())
