"""scripts/study_validation_loss.py: a generator's loss per range of t on its held-out
structures, reproducible from a fixed seed."""

import json
import math

from diffcrystal.generator import Generator
from tests.script_loading import load_script


def run_script(*args) -> int:
    return load_script("study_validation_loss").main([str(a) for a in args])


def test_loss_per_noise_level_of_a_run_folder(tmp_path, tiny_generators, capsys):
    generator_file = tiny_generators["csp"]
    assert run_script(generator_file.parent, "--out", tmp_path / "a.json") == 0
    report = json.loads((tmp_path / "a.json").read_text())
    assert report["validation_structures"] == 4 and report["dtype"] == "float32"
    assert report["training"]["global_step"] == 3
    bins = report["bins"]
    assert [(row["t_min"], row["t_max"]) for row in bins] == [(10 * i + 1, 10 * i + 10) for i in range(10)]
    weights = Generator.from_checkpoint(generator_file).joint.loss_weights
    for row in bins:
        parts = sum(weights[name] * row[f"loss_{name}"] for name in weights)
        assert math.isfinite(row["loss"]) and math.isclose(row["loss"], parts, rel_tol=1e-5), row
    for name, value in report["mean_over_bins"].items():
        assert math.isclose(value, sum(row[name] for row in bins) / len(bins), rel_tol=1e-9)
    assert "t    1-10" in capsys.readouterr().out

    # the same noise from the same seed, whether the run folder or its generator file is named
    assert run_script(generator_file, "--out", tmp_path / "b.json") == 0
    assert json.loads((tmp_path / "b.json").read_text())["bins"] == bins
    assert run_script(generator_file, "--out", tmp_path / "c.json", "--seed", 1, "--bins", 4) == 0
    other = json.loads((tmp_path / "c.json").read_text())["bins"]
    assert [(row["t_min"], row["t_max"]) for row in other] == [(1, 25), (26, 50), (51, 75), (76, 100)]


def test_unusable_inputs_are_one_line(tmp_path, tiny_generators, capsys):
    (tmp_path / "empty_run").mkdir()
    assert run_script(tmp_path / "empty_run", "--out", tmp_path / "x.json") == 1
    assert capsys.readouterr().err == f"error: run folder {tmp_path / 'empty_run'} holds no generator.safetensors yet\n"
    assert run_script(tiny_generators["csp"], "--out", tmp_path / "x.json", "--bins", 0) == 1
    assert capsys.readouterr().err == "error: --bins must be in 1..100 (the checkpoint's timesteps), got 0\n"
    assert not (tmp_path / "x.json").exists()


def test_atom_loss_average_is_the_checkpoints_own_unless_given(tmp_path, tiny_generators):
    generator_file = tiny_generators["csp"]
    assert run_script(generator_file, "--out", tmp_path / "own.json", "--bins", 2) == 0
    own = json.loads((tmp_path / "own.json").read_text())
    assert own["atom_loss_average"] == "crystal"  # the tiny run's default
    assert run_script(generator_file, "--out", tmp_path / "crystal.json", "--bins", 2, "--atom-loss-average", "crystal") == 0
    assert json.loads((tmp_path / "crystal.json").read_text())["bins"] == own["bins"]
    assert run_script(generator_file, "--out", tmp_path / "atom.json", "--bins", 2, "--atom-loss-average", "atom") == 0
    atom = json.loads((tmp_path / "atom.json").read_text())
    assert atom["atom_loss_average"] == "atom"
    for mine, theirs in zip(atom["bins"], own["bins"]):  # same noise: the lattice term is per crystal either way
        assert math.isclose(mine["loss_lattice"], theirs["loss_lattice"], rel_tol=1e-6)
        assert not math.isclose(mine["loss_coords"], theirs["loss_coords"], rel_tol=1e-6)
