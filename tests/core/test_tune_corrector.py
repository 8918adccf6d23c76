"""The held-out split rebuilt after training, and scripts/tune_corrector.py on it."""

import json

import numpy as np

from tests.script_loading import load_script


def test_load_split_rebuilds_the_validation_set_training_held_out(tiny_data):
    from diffcrystal.data.graph import crystal_to_data
    from diffcrystal.training.config import DataConfig
    from diffcrystal.training.datamodule import CrystalDataModule, load_split

    config = DataConfig(train=str(tiny_data), val_fraction=0.4, canonical=False)
    module = CrystalDataModule(config, seed=3)
    module.setup("fit")
    train, val, skipped = load_split(config, seed=3)
    assert not skipped and len(val) == len(module.val_set) >= 2 and len(train) == len(module.train_set)
    for crystal, data in zip(val, module.val_set):
        expected = crystal_to_data(crystal)
        assert np.array_equal(expected.atomic_numbers.numpy(), data.atomic_numbers.numpy())
        assert np.allclose(expected.frac_coords.numpy(), data.frac_coords.numpy())
    assert {c.label for c in train}.isdisjoint(c.label for c in val)


def test_tune_corrector_samples_each_value_on_the_validation_structures(tmp_path, tiny_generators, capsys):
    out = tmp_path / "tune"
    assert load_script("tune_corrector").main(["--checkpoint", str(tiny_generators["csp"]), "--values", "5e-7", "5e-6",
                           "--k", "2", "--steps", "2", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [row["step_lr"] for row in summary["rows"]] == [5e-7, 5e-6] and summary["k"] == 2
    n = summary["validation_structures"]
    for row, folder in zip(summary["rows"], ("lr_5e-07_steps2_rho1", "lr_5e-06_steps2_rho1")):
        assert row["n_samples"] == 2 * n and row["step_spacing"] == 1.0
        assert 0 <= row["precise_per_sample_percent"] <= row["match_per_sample_percent"] <= 100
        recorded = json.loads((out / folder / "metrics.json").read_text())
        assert recorded["extra"]["corrector_step_lr"] == row["step_lr"]
        candidates = [c for t in recorded["per_target"] for c in t["candidates"]]
        matched = sum(c["rms"] is not None for c in candidates)
        assert row["match_per_sample_percent"] == 100 * matched / len(candidates)  # brute-force recount
    assert "| corrector step_lr | steps | spacing ρ | corrector steps |" in capsys.readouterr().out


def test_tune_corrector_sweeps_step_counts_and_spacings(tmp_path, tiny_generators):
    out = tmp_path / "sweep"
    assert load_script("tune_corrector").main(["--checkpoint", str(tiny_generators["csp"]), "--steps", "2", "3",
                           "--spacings", "1", "2.5", "--k", "1", "--out", str(out)]) == 0
    rows = json.loads((out / "summary.json").read_text())["rows"]
    assert [(r["num_steps"], r["step_spacing"]) for r in rows] == [(2, 1.0), (2, 2.5), (3, 1.0), (3, 2.5)]
    for row in rows:
        recorded = json.loads((out / f"lr_{row['step_lr']:g}_steps{row['num_steps']}_rho{row['step_spacing']:g}"
                                / "metrics.json").read_text())
        assert recorded["extra"]["step_spacing"] == row["step_spacing"] and recorded["extra"]["num_steps"] == row["num_steps"]


def test_tune_corrector_sweeps_corrector_steps_and_the_sampler_makes_that_many_calls(tmp_path, tiny_generators,
                                                                                     monkeypatch):
    import diffcrystal.generator

    calls = []
    original = diffcrystal.generator.run_sampler
    monkeypatch.setattr(diffcrystal.generator, "run_sampler",
                        lambda *a, **kw: calls.append(kw["corrector_steps"]) or original(*a, **kw))
    out = tmp_path / "correctors"
    assert load_script("tune_corrector").main(["--checkpoint", str(tiny_generators["csp"]), "--steps", "2",
                           "--corrector-steps", "0", "3", "--k", "1", "--out", str(out)]) == 0
    rows = json.loads((out / "summary.json").read_text())["rows"]
    assert [row["corrector_steps"] for row in rows] == [0, 3] and set(calls) == {0, 3}
    for row in rows:
        name = f"lr_{row['step_lr']:g}_steps2_rho1_corrector{row['corrector_steps']}"
        assert json.loads((out / name / "metrics.json").read_text())["extra"]["corrector_steps"] == row["corrector_steps"]


def test_tune_corrector_sweeps_the_corrector_window(tmp_path, tiny_generators, monkeypatch):
    import diffcrystal.generator

    calls = []
    original = diffcrystal.generator.run_sampler
    monkeypatch.setattr(diffcrystal.generator, "run_sampler",
                        lambda *a, **kw: calls.append((kw["corrector_min_t"], kw["corrector_max_t"]))
                        or original(*a, **kw))
    out = tmp_path / "cmin"
    assert load_script("tune_corrector").main(["--checkpoint", str(tiny_generators["csp"]), "--steps", "2",
                                               "--corrector-min-t", "0", "20", "--corrector-max-t", "500",
                                               "--k", "1", "--out", str(out)]) == 0
    rows = json.loads((out / "summary.json").read_text())["rows"]
    assert [(row["corrector_min_t"], row["corrector_max_t"]) for row in rows] == [(0, 500), (20, 500)]
    assert calls == [(0, 500), (20, 500)]
    for row in rows:
        name = f"lr_{row['step_lr']:g}_steps2_rho1_cmin{row['corrector_min_t']}_cmax500"
        extra = json.loads((out / name / "metrics.json").read_text())["extra"]
        assert (extra["corrector_min_t"], extra["corrector_max_t"]) == (row["corrector_min_t"], 500)


def test_tune_corrector_sweeps_the_coordinate_noise_scale(tmp_path, tiny_generators, monkeypatch):
    import diffcrystal.generator

    scales = []
    original = diffcrystal.generator.run_sampler
    monkeypatch.setattr(diffcrystal.generator, "run_sampler",
                        lambda joint, *a, **kw: scales.append((joint.fields["coords"].noise_scale,
                                                                joint.fields["coords"].noise_scale_max_t))
                        or original(joint, *a, **kw))
    out = tmp_path / "noise"
    assert load_script("tune_corrector").main(["--checkpoint", str(tiny_generators["csp"]), "--steps", "2",
                                               "--noise-scales", "1", "0.5", "--noise-scale-max-t", "30",
                                               "--k", "1", "--out", str(out)]) == 0
    rows = json.loads((out / "summary.json").read_text())["rows"]
    assert [row["coord_noise_scale"] for row in rows] == [1.0, 0.5] and scales == [(1.0, 30), (0.5, 30)]
    for row in rows:
        assert row["coord_noise_scale_max_t"] == 30
        name = f"lr_{row['step_lr']:g}_steps2_rho1_noise{row['coord_noise_scale']:g}_noisemax30"
        extra = json.loads((out / name / "metrics.json").read_text())["extra"]
        assert (extra["coord_noise_scale"], extra["coord_noise_scale_max_t"]) == (row["coord_noise_scale"], 30)


def test_tune_corrector_refuses_a_negative_noise_scale(tmp_path, tiny_generators, capsys):
    assert load_script("tune_corrector").main(["--checkpoint", str(tiny_generators["csp"]), "--noise-scales", "-1",
                                               "--k", "1", "--steps", "2", "--out", str(tmp_path / "o")]) == 1
    assert "coordinate noise scale must be a finite number >= 0, got -1.0" in capsys.readouterr().err


def test_tune_corrector_refuses_a_spacing_that_is_not_positive(tmp_path, tiny_generators, capsys):
    assert load_script("tune_corrector").main(["--checkpoint", str(tiny_generators["csp"]), "--spacings", "0",
                           "--k", "1", "--steps", "2", "--out", str(tmp_path / "o")]) == 1
    assert "sampling.step_spacing: 0.0; expected a finite number > 0" in capsys.readouterr().err


def test_tune_corrector_refuses_a_denovo_checkpoint(tmp_path, tiny_generators, capsys):
    assert load_script("tune_corrector").main(["--checkpoint", str(tiny_generators["denovo"]), "--values", "1e-6",
                           "--out", str(tmp_path / "o")]) == 1
    assert "the corrector is tuned for CSP" in capsys.readouterr().err
