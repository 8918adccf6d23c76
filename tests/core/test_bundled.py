"""The bundled checkpoints: present, registered, loadable, and the README's command works."""

import csv

import pytest

from diffcrystal.checkpoint import bundled_checkpoint, load_checkpoint
from diffcrystal.cli.main import main


@pytest.mark.parametrize("mode", ["csp", "denovo"])
def test_bundled_checkpoint_is_registered_and_loads(mode):
    from diffcrystal.generator import Generator

    path = bundled_checkpoint(mode)
    assert path.stat().st_size < 20e6
    _, config = load_checkpoint(path)
    assert config["experiment"]["diffusion"]["mode"] == mode
    assert config["training"]["global_step"] > 1000  # a trained model, not random weights
    assert Generator.from_checkpoint(path).mode == mode


@pytest.mark.slow
def test_readme_command_with_bundled_checkpoint(tmp_path):
    assert main(["sample", "--composition", "YBa2Cu3O7", "--n", "5", "--out", str(tmp_path), "--quiet"]) == 0
    with open(tmp_path / "summary.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 5 and all(r["n_atoms"] == "13" for r in rows)
