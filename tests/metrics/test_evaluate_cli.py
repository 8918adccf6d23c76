"""`diffcrystal evaluate` as the user runs it: baselines, precise share, histogram, output folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from diffcrystal.checkpoint import resolve_checkpoint
from diffcrystal.cli.main import main
from diffcrystal.data.crystal import Crystal
from diffcrystal.generator import Generator

from tests.metrics import _structures as S
from tests.script_loading import load_script


def write_extxyz(path: Path, crystals) -> Path:
    from ase.io import write

    write(path, [c.to_atoms() for c in crystals], format="extxyz")
    return path


@pytest.fixture
def perovskite_files(tmp_path):
    """A test file of three cubic SrTiO3 targets (moved copies) and a training file."""
    test = write_extxyz(tmp_path / "test.extxyz", [S.rotated_permuted_shifted(S.perovskite(), s) for s in range(3)])
    train = write_extxyz(tmp_path / "train.extxyz", [S.perovskite(a=4.0), S.perovskite(a=3.9)])
    return test, train


def evaluate(*args: str) -> int:
    return main(["evaluate", "--workers", "1", "--quiet", *args])


def test_prototype_baseline_report(tmp_path, perovskite_files, capsys):
    test, train = perovskite_files
    out = tmp_path / "eval"
    assert evaluate("--baseline", "prototype", "--data", str(test), "--train-data", str(train), "--k", "8",
                    "--out", str(out)) == 0
    data = json.loads((out / "metrics.json").read_text())
    assert data["extra"]["method"] == "baseline prototype" and data["extra"]["checkpoint"] is None
    summary = data["summary"]
    # Every prototype with Sr on the A site is the target exactly: each match is precise.
    assert summary["n_rmse_below_0.05_at_1"] == summary["n_matched_at_1"]
    assert summary["n_matched_at_k"] == 3 and summary["n_rmse_below_0.05_at_k"] == 3
    assert summary["diversity_mean_distinct"] == 2.0  # Sr on A or on B: two structures among 8
    printed = capsys.readouterr().out
    assert "# diffcrystal csp metrics (baseline prototype)" in printed
    assert "| RMSE < 0.1 @8 | 100.00 % | 3 / 3 targets |" in printed
    assert "| distinct samples @8 | 0.250 of k |" in printed
    assert (out / "rmse_histogram.png").read_bytes().startswith(b"\x89PNG")


def test_prototype_baseline_refuses_a_non_perovskite_in_one_line(tmp_path, perovskite_files, capsys):
    _, train = perovskite_files
    test = write_extxyz(tmp_path / "nacl.extxyz", [S.rocksalt()])
    assert evaluate("--baseline", "prototype", "--data", str(test), "--train-data", str(train), "--k", "1",
                    "--out", str(tmp_path / "o")) == 1
    err = capsys.readouterr().err
    assert err.startswith("diffcrystal evaluate: error: --baseline prototype builds ABX3") and "NaCl" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_train_baseline_counts_targets_without_a_training_structure_of_their_size(tmp_path, capsys):
    target = S.generic_three()
    test = write_extxyz(tmp_path / "test.extxyz", [target, S.rocksalt()])
    train = write_extxyz(tmp_path / "train.extxyz", [S.rotated_permuted_shifted(target, 4), S.perovskite()])
    out = tmp_path / "eval"
    assert evaluate("--baseline", "train", "--data", str(test), "--train-data", str(train), "--k", "2",
                    "--out", str(out)) == 0
    data = json.loads((out / "metrics.json").read_text())
    summary, extra = data["summary"], data["extra"]
    assert summary["n_targets"] == 2 and summary["n_matched_at_1"] == 1 and summary["n_missing"] == 2
    assert summary["rmse_at_1"] == pytest.approx(0.0, abs=1e-6)  # the target is the training structure
    assert extra["method"] == "baseline train" and extra["num_targets_without_candidates"] == 1
    assert data["per_target"][1]["candidates"][0]["status"] == "missing"
    assert "Targets without a training structure of their atom count: 1 of 2" in capsys.readouterr().out


def test_baseline_without_training_data_is_a_one_line_error(tmp_path, perovskite_files, capsys):
    test, _ = perovskite_files
    assert evaluate("--baseline", "train", "--data", str(test), "--out", str(tmp_path / "o")) == 1
    err = capsys.readouterr().err
    assert "--baseline train needs training structures: pass --train-data" in err
    assert len(err.strip().splitlines()) == 1


def test_baseline_takes_the_training_data_recorded_in_the_checkpoint(shared_data):
    from diffcrystal.checkpoint import bundled_checkpoint
    from diffcrystal.checkpoint import checkpoint_train_data

    paths = checkpoint_train_data(bundled_checkpoint("perov5_carbon24_csp"))
    assert [(p.parent.name, p.name) for p in paths] == [("perov_5", "train.csv"), ("carbon_24", "train.csv")]
    assert all(p.resolve() == (shared_data / p.parent.name / p.name).resolve() for p in paths)


@pytest.mark.parametrize("baseline", [None, "train"])
def test_unwritable_output_folder_fails_before_reading_or_sampling(tmp_path, perovskite_files, capsys, monkeypatch,
                                                                   baseline):
    import diffcrystal.evaluation
    import diffcrystal.generator

    def forbidden(*args, **kwargs):
        raise AssertionError("must not be reached")

    monkeypatch.setattr(diffcrystal.evaluation, "read_crystals", forbidden)
    monkeypatch.setattr(diffcrystal.generator.Generator, "from_checkpoint", forbidden)
    test, train = perovskite_files
    blocker = tmp_path / "file"
    blocker.write_text("kept")
    method = ["--baseline", baseline, "--train-data", str(train)] if baseline else ["--checkpoint", "perov5_csp"]
    assert evaluate(*method, "--data", str(test), "--k", "1", "--out", str(blocker / "out")) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"diffcrystal evaluate: error: cannot write to output folder {blocker / 'out'}")
    assert len(err.strip().splitlines()) == 1 and blocker.read_text() == "kept"


def test_default_output_folder_is_named_after_the_method_and_data(tmp_path, perovskite_files, monkeypatch, capsys):
    test, train = perovskite_files
    monkeypatch.chdir(tmp_path)
    assert evaluate("--baseline", "prototype", "--data", str(test), "--train-data", str(train), "--k", "1") == 0
    out = tmp_path / "evaluation" / f"baseline-prototype_{tmp_path.name}_test"
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "metrics.md", "rmse_histogram.png"]
    assert f"details in evaluation/baseline-prototype_{tmp_path.name}_test/metrics.json" in capsys.readouterr().out


def test_model_sampled_on_the_groups_of_analogues(tmp_path, capsys):
    # KBr rock salt: its nearest analogue is NaCl rock salt (Fm-3m, Na 4a, Cl 4b: no free
    # parameter, so any sample on it is rock salt), then CsCl (Pm-3m), never rock salt.
    kbr = S.rotated_permuted_shifted(
        Crystal(S.rocksalt(6.6).lattice, S.rocksalt().frac_coords, [S.K] * 4 + [35] * 4), seed=1)
    caesium_chloride = Crystal(np.eye(3) * 4.1, [[0, 0, 0], [0.5, 0.5, 0.5]], [55, S.CL])
    test = write_extxyz(tmp_path / "test.extxyz", [kbr, S.perovskite()])
    train = write_extxyz(tmp_path / "train.extxyz", [caesium_chloride, S.rocksalt()])
    out = tmp_path / "eval"
    assert evaluate("--checkpoint", "mp20_csp", "--spacegroup-from-analogues", "--data", str(test),
                    "--train-data", str(train), "--k", "2", "--steps", "20", "--out", str(out)) == 0
    data = json.loads((out / "metrics.json").read_text())
    assert data["extra"]["spacegroup_from_analogues"] is True
    assert data["extra"]["num_targets_in_p1"] == 1  # SrTiO3 has no analogue of its formula type
    assert [c["status"] for c in data["per_target"][0]["candidates"]] == ["match", "no_match"]
    assert "1 of 2 targets have no analogue or a P1 one" in capsys.readouterr().out


def test_model_sampled_on_each_targets_own_group(tmp_path, capsys):
    # KBr rock salt is Fm-3m with K 4a, Br 4b (no free parameter: any sample on it is rock salt);
    # three atoms at generic positions have no group above P1 and are sampled unconstrained.
    kbr = S.rotated_permuted_shifted(
        Crystal(S.rocksalt(6.6).lattice, S.rocksalt().frac_coords, [S.K] * 4 + [35] * 4), seed=3)
    test = write_extxyz(tmp_path / "test.extxyz", [kbr, S.generic_three()])
    out = tmp_path / "eval"
    assert evaluate("--checkpoint", "mp20_csp", "--spacegroup-from-target", "--data", str(test),
                    "--k", "2", "--steps", "20", "--out", str(out)) == 0
    data = json.loads((out / "metrics.json").read_text())
    assert data["extra"]["spacegroup_from_target"] is True
    assert data["extra"]["num_targets_in_p1"] == 1
    assert [c["status"] for c in data["per_target"][0]["candidates"]] == ["match", "match"]
    assert "1 of 2 targets are P1 (or have no group) and were sampled unconstrained" in capsys.readouterr().out


def test_analogue_groups_are_refused_with_a_baseline(tmp_path, perovskite_files, capsys):
    test, train = perovskite_files
    assert evaluate("--baseline", "train", "--spacegroup-from-analogues", "--data", str(test),
                    "--train-data", str(train), "--out", str(tmp_path / "o")) == 1
    err = capsys.readouterr().err
    assert "--spacegroup-from-analogues needs a CSP checkpoint (no --baseline)" in err
    assert len(err.strip().splitlines()) == 1


def test_model_refines_the_nearest_analogue_from_a_low_noise_level(tmp_path, capsys):
    # KBr rock salt from NaCl rock salt noised to t = 1 (0.005 fractional): still rock salt
    kbr = S.rotated_permuted_shifted(Crystal(S.rocksalt(6.6).lattice, S.rocksalt().frac_coords, [S.K] * 4 + [35] * 4),
                                     seed=2)
    test = write_extxyz(tmp_path / "test.extxyz", [kbr, S.perovskite()])
    train = write_extxyz(tmp_path / "train.extxyz", [S.rocksalt()])
    out = tmp_path / "eval"
    assert evaluate("--checkpoint", "mp20_csp", "--refine-analogues", "1", "--data", str(test),
                    "--train-data", str(train), "--k", "1", "--steps", "20", "--out", str(out)) == 0
    data = json.loads((out / "metrics.json").read_text())
    extra = data["extra"]
    assert (extra["refine_analogues_from_timestep"], extra["refine_steps"]) == (1, 1)
    assert extra["num_targets_without_analogue"] == 1  # SrTiO3: sampled from the prior
    first = data["per_target"][0]["candidates"][0]
    assert first["status"] == "match" and first["rms"] < 0.05
    assert "1 of 2 targets have no analogue and were sampled from the prior" in capsys.readouterr().out


@pytest.mark.parametrize("arguments, message", [
    (["--refine-analogues", "0"], "--refine-analogues takes a timestep in 1..1000, got 0"),
    (["--refine-analogues", "10", "--spacegroup-from-analogues"], "choose one of"),
])
def test_bad_refinement_requests_are_one_line_errors(tmp_path, perovskite_files, capsys, arguments, message):
    test, train = perovskite_files
    assert evaluate("--checkpoint", "mp20_csp", "--data", str(test), "--train-data", str(train),
                    "--out", str(tmp_path / "o"), *arguments) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o" / "metrics.json").exists()


@pytest.mark.parametrize("setting", [{"corrector_steps": 5}, {"step_spacing": 2.0}, {"corrector_step_lr": 1e-5},
                                     {"corrector_min_t": 20}])
def test_chunks_sampled_with_other_settings_do_not_merge(tmp_path, capsys, setting):
    targets = [S.perovskite(a=a) for a in (3.9, 4.0, 4.1)]
    test = write_extxyz(tmp_path / "test.extxyz", targets)
    train = write_extxyz(tmp_path / "train.extxyz", [S.perovskite(a=4.0), S.rocksalt()])
    common = ["--baseline", "train", "--data", str(test), "--train-data", str(train), "--k", "1"]
    assert evaluate(*common, "--limit", "1", "--out", str(tmp_path / "a")) == 0
    assert evaluate(*common, "--offset", "1", "--out", str(tmp_path / "b")) == 0
    chunk_b = json.loads((tmp_path / "b" / "metrics.json").read_text())
    chunk_b["extra"].update(setting)  # as an evaluate run with that override records it
    (tmp_path / "b" / "metrics.json").write_text(json.dumps(chunk_b))
    capsys.readouterr()
    merge = load_script("merge_csp_metrics")
    chunks = [str(tmp_path / name / "metrics.json") for name in ("a", "b")]
    assert merge.main([*chunks, "--out", str(tmp_path / "merged")]) == 2
    (key, value), = setting.items()
    assert f"{key} is {value!r}, but" in capsys.readouterr().err
    assert not (tmp_path / "merged").exists()


def test_ranked_evaluation_takes_a_template_table_for_a_checkpoint_without_one(tmp_path, perovskite_files, capsys):
    test, _ = perovskite_files
    ranked = ["--ranked", "--checkpoint", "perov5_csp", "--potential", "emt", "--data", str(test)]
    assert evaluate(*ranked, "--out", str(tmp_path / "a")) == 1
    assert "perov5_csp.safetensors ships no template table: pass --templates TABLE" in capsys.readouterr().err
    assert evaluate(*ranked, "--templates", str(tmp_path / "missing.json.gz"), "--out", str(tmp_path / "b")) == 1
    assert "--templates: no such table file" in capsys.readouterr().err
    assert evaluate("--checkpoint", "perov5_csp", "--data", str(test), "--templates", "t.json.gz",
                    "--out", str(tmp_path / "c")) == 1
    err = capsys.readouterr().err
    assert "--templates is predict's template table: it goes with --ranked" in err and len(err.strip().splitlines()) == 1


def test_chunks_of_a_test_set_merge_to_the_whole_run(tmp_path, capsys):
    """`evaluate --offset M --limit L` scores test structures M+1..M+L; the merge script joins
    chunks into the run over all of them, and refuses chunks that overlap or differ."""
    targets = [S.perovskite(a=a) for a in (3.9, 4.0, 4.1, 4.2, 4.3)] + [S.rocksalt()]
    test = write_extxyz(tmp_path / "test.extxyz", targets)
    train = write_extxyz(tmp_path / "train.extxyz", [S.perovskite(a=4.0), S.rocksalt(), S.generic_three()])
    common = ["--baseline", "train", "--data", str(test), "--train-data", str(train), "--k", "3"]
    assert evaluate(*common, "--out", str(tmp_path / "whole")) == 0
    assert evaluate(*common, "--limit", "2", "--out", str(tmp_path / "a")) == 0
    assert evaluate(*common, "--offset", "2", "--out", str(tmp_path / "b")) == 0
    chunk_b = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert chunk_b["extra"]["test_offset"] == 2 and chunk_b["summary"]["n_targets"] == 4
    capsys.readouterr()

    merge = load_script("merge_csp_metrics")
    chunks = [str(tmp_path / name / "metrics.json") for name in ("b", "a")]  # any order
    assert merge.main([*chunks, "--out", str(tmp_path / "merged")]) == 0
    merged = json.loads((tmp_path / "merged" / "metrics.json").read_text())
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    # per-target labels and counts agree; the baseline draws its geometry per chunk with the same seed
    assert [t["label"] for t in merged["per_target"]] == [t["label"] for t in whole["per_target"]]
    assert merged["summary"]["n_targets"] == 6 and merged["extra"]["num_test_structures"] == 6
    assert merged["extra"]["merged_from"] == [chunks[1], chunks[0]]
    assert merged["extra"]["num_target_atoms"] == whole["extra"]["num_target_atoms"]
    assert (tmp_path / "merged" / "rmse_histogram.png").read_bytes().startswith(b"\x89PNG")

    assert merge.main([chunks[1], chunks[1], "--out", str(tmp_path / "bad")]) == 2
    assert "overlap between" in capsys.readouterr().err
    assert evaluate(*common[:-1], "2", "--offset", "2", "--out", str(tmp_path / "k2")) == 0
    capsys.readouterr()
    assert merge.main([chunks[1], str(tmp_path / "k2" / "metrics.json"), "--out", str(tmp_path / "bad")]) == 2
    assert "k is 2, but" in capsys.readouterr().err
    assert evaluate(*common, "--offset", "6", "--out", str(tmp_path / "empty")) != 0
    assert "after skipping the first 6" in capsys.readouterr().err


@pytest.mark.parametrize("option,attribute,key", [("--corrector-step-lr", "corrector_step_lr", "corrector_step_lr"),
                                                   ("--noise-scale", "noise_scale", "coord_noise_scale")])
def test_a_coordinate_setting_reaches_the_sampler_and_the_record(tmp_path, perovskite_files, monkeypatch,
                                                                  option, attribute, key):
    import diffcrystal.generator

    test, _ = perovskite_files
    seen = []
    original = diffcrystal.generator.run_sampler

    def spy(joint, *args, **kwargs):
        seen.append(getattr(joint.fields["coords"], attribute))
        return original(joint, *args, **kwargs)

    monkeypatch.setattr(diffcrystal.generator, "run_sampler", spy)
    recorded = Generator.from_checkpoint(resolve_checkpoint("perov5_csp", "csp")).experiment.diffusion.to_dict()[key]
    override = 0.3 * recorded
    out = tmp_path / "eval"
    assert evaluate("--checkpoint", "perov5_csp", "--data", str(test), "--k", "1", "--steps", "2",
                    option, repr(override), "--out", str(out)) == 0
    assert seen and all(value == override for value in seen)
    assert json.loads((out / "metrics.json").read_text())["extra"][key] == override
    seen.clear()
    assert evaluate("--checkpoint", "perov5_csp", "--data", str(test), "--k", "1", "--steps", "2",
                    "--out", str(tmp_path / "default")) == 0
    assert seen and all(value == recorded for value in seen)  # the checkpoint's own value
    assert key not in json.loads((tmp_path / "default" / "metrics.json").read_text())["extra"]


def test_the_noise_scale_window_reaches_the_sampler_and_the_record(tmp_path, perovskite_files, monkeypatch):
    import diffcrystal.generator

    test, _ = perovskite_files
    seen = []
    original = diffcrystal.generator.run_sampler
    monkeypatch.setattr(diffcrystal.generator, "run_sampler", lambda joint, *a, **kw: seen.append(
        (joint.fields["coords"].noise_scale, joint.fields["coords"].noise_scale_max_t)) or original(joint, *a, **kw))
    out = tmp_path / "eval"
    assert evaluate("--checkpoint", "perov5_csp", "--data", str(test), "--k", "1", "--steps", "2",
                    "--noise-scale", "0.5", "--noise-scale-max-t", "400", "--out", str(out)) == 0
    assert seen and set(seen) == {(0.5, 400)}
    extra = json.loads((out / "metrics.json").read_text())["extra"]
    assert (extra["coord_noise_scale"], extra["coord_noise_scale_max_t"]) == (0.5, 400)


@pytest.mark.parametrize("option,message", [
    ("--corrector-step-lr=-1e-6", "corrector step_lr must be a finite number >= 0"),
    ("--corrector-step-lr=nan", "corrector step_lr must be a finite number >= 0"),
    ("--noise-scale=-0.5", "coordinate noise scale must be a finite number >= 0"),
    ("--noise-scale-max-t=400", "--noise-scale-max-t bounds the steps of --noise-scale: give both"),
    ("--step-spacing=0", "sampling.step_spacing: 0.0; expected a finite number > 0"),
    ("--step-spacing=nan", "sampling.step_spacing: nan; expected a finite number > 0"),
    ("--corrector-steps=-1", "sampling.corrector_steps: -1; expected >= 0"),
    ("--corrector-min-t=-1", "sampling.corrector_min_t: -1; expected >= 0"),
])
def test_a_sampler_setting_out_of_range_is_refused_in_one_line(tmp_path, perovskite_files, capsys, option, message):
    test, _ = perovskite_files
    assert evaluate("--checkpoint", "perov5_csp", "--data", str(test), "--k", "1", option,
                    "--out", str(tmp_path / "o")) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o" / "metrics.json").exists()


@pytest.mark.parametrize("option", [("--corrector-step-lr", "1e-6"), ("--noise-scale", "0.5")])
def test_a_coordinate_setting_with_a_baseline_is_refused(tmp_path, perovskite_files, capsys, option):
    test, train = perovskite_files
    assert evaluate("--baseline", "prototype", "--data", str(test), "--train-data", str(train),
                    *option, "--out", str(tmp_path / "o")) == 1
    assert "a --baseline samples nothing" in capsys.readouterr().err


def test_an_earlier_evaluation_is_never_overwritten(tmp_path, perovskite_files, monkeypatch, capsys):
    test, train = perovskite_files
    monkeypatch.chdir(tmp_path)
    arguments = ("--baseline", "prototype", "--data", str(test), "--train-data", str(train), "--k", "1")
    assert evaluate(*arguments) == 0 and evaluate(*arguments) == 0  # the default: a new folder each time
    first = tmp_path / "evaluation" / f"baseline-prototype_{tmp_path.name}_test"
    second = first.with_name(f"{first.name}-2")
    assert (first / "metrics.json").is_file() and (second / "metrics.json").is_file()
    kept = (first / "metrics.json").read_bytes()
    capsys.readouterr()
    assert evaluate(*arguments, "--out", str(first)) == 1  # an explicit --out holding one: refused
    message = capsys.readouterr().err.strip()
    assert "\n" not in message and "already holds an evaluation (metrics.json)" in message
    assert (first / "metrics.json").read_bytes() == kept
def test_device_chooses_where_the_model_samples(tmp_path, perovskite_files, monkeypatch, capsys):
    import torch

    test, train = perovskite_files
    original = Generator.from_checkpoint.__func__
    devices = []

    def recording(cls, path, device="cpu"):
        devices.append(torch.device(device))
        return original(cls, path, device=device)

    monkeypatch.setattr(Generator, "from_checkpoint", classmethod(recording))
    assert evaluate("--checkpoint", "perov5_csp", "--data", str(test), "--k", "1", "--steps", "2",
                    "--device", "cpu", "--out", str(tmp_path / "cpu")) == 0
    assert devices == [torch.device("cpu")]
    if not torch.cuda.is_available():
        assert evaluate("--checkpoint", "perov5_csp", "--data", str(test), "--device", "cuda",
                        "--out", str(tmp_path / "cuda")) == 1
        assert "--device cuda requested but no CUDA device is available" in capsys.readouterr().err
    assert evaluate("--baseline", "prototype", "--data", str(test), "--train-data", str(train),
                    "--device", "cpu", "--out", str(tmp_path / "baseline")) == 1
    assert capsys.readouterr().err == ("diffcrystal evaluate: error: --device is a sampler setting; "
                                       "a --baseline samples nothing\n")
    assert not (tmp_path / "baseline").exists()


def test_test_set_without_rows_leaves_no_output_folder(tmp_path, perovskite_files, capsys):
    _, train = perovskite_files
    empty = tmp_path / "empty.csv"
    empty.write_text("material_id,cif\n")
    out = tmp_path / "evaluation" / "o"
    assert evaluate("--baseline", "prototype", "--data", str(empty), "--train-data", str(train),
                    "--out", str(out)) == 1
    err = capsys.readouterr().err
    assert err.startswith("diffcrystal evaluate: error: ") and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "evaluation").exists()


def test_evaluation_files_follow_the_umask(tmp_path, perovskite_files):
    import os
    import stat

    test, train = perovskite_files
    previous = os.umask(0o022)
    try:
        assert evaluate("--baseline", "prototype", "--data", str(test), "--train-data", str(train),
                        "--out", str(tmp_path / "o")) == 0
    finally:
        os.umask(previous)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "o").iterdir()}
    assert modes == dict.fromkeys(["metrics.json", "metrics.md", "rmse_histogram.png"], 0o644)


def test_every_takes_the_same_targets_as_the_ranked_evaluation(tmp_path, perovskite_files):
    import json as _json

    test, train = perovskite_files
    out = tmp_path / "every"
    assert evaluate("--baseline", "prototype", "--data", str(test), "--train-data", str(train), "--k", "1",
                    "--offset", "1", "--every", "2", "--limit", "2", "--out", str(out)) == 0
    report = _json.loads((out / "metrics.json").read_text())
    from diffcrystal.data.readers import read_crystals

    expected = [c.label for c in read_crystals(test, canonical=False, progress=False).crystals[1::2][:2]]
    assert [t["label"] for t in report["per_target"]] == expected
    assert report["extra"]["test_every"] == 2


def test_step_spacing_reaches_the_sampler_and_the_record(tmp_path, perovskite_files, monkeypatch):
    import diffcrystal.generator

    test, _ = perovskite_files
    seen = []
    original = diffcrystal.generator.run_sampler

    def spy(*args, **kwargs):
        seen.append(kwargs["spacing"])
        return original(*args, **kwargs)

    monkeypatch.setattr(diffcrystal.generator, "run_sampler", spy)
    out = tmp_path / "eval"
    assert evaluate("--checkpoint", "perov5_csp", "--data", str(test), "--k", "1", "--steps", "2",
                    "--step-spacing", "2.5", "--out", str(out)) == 0
    assert seen and all(spacing == 2.5 for spacing in seen)
    assert json.loads((out / "metrics.json").read_text())["extra"]["step_spacing"] == 2.5
    seen.clear()
    assert evaluate("--checkpoint", "perov5_csp", "--data", str(test), "--k", "1", "--steps", "2",
                    "--out", str(tmp_path / "default")) == 0
    assert seen and all(spacing == 1.0 for spacing in seen)  # the bundled checkpoint's even grid
    assert "step_spacing" not in json.loads((tmp_path / "default" / "metrics.json").read_text())["extra"]


@pytest.mark.parametrize("option,setting,value", [("--corrector-steps", "corrector_steps", 3),
                                                  ("--corrector-min-t", "corrector_min_t", 20)])
def test_corrector_settings_reach_the_sampler_and_the_record(tmp_path, perovskite_files, monkeypatch,
                                                             option, setting, value):
    import diffcrystal.generator

    test, _ = perovskite_files
    seen = []
    original = diffcrystal.generator.run_sampler
    monkeypatch.setattr(diffcrystal.generator, "run_sampler",
                        lambda *a, **kw: seen.append(kw[setting]) or original(*a, **kw))
    out = tmp_path / "eval"
    assert evaluate("--checkpoint", "perov5_csp", "--data", str(test), "--k", "1", "--steps", "2",
                    option, str(value), "--out", str(out)) == 0
    assert seen and set(seen) == {value}
    assert json.loads((out / "metrics.json").read_text())["extra"][setting] == value


@pytest.mark.parametrize("option", ["--steps=50", "--corrector-steps=1", "--corrector-min-t=0", "--step-spacing=2",
                                    "--corrector-step-lr=1e-5"])
def test_a_sampler_setting_with_ranked_is_refused_not_ignored(tmp_path, perovskite_files, capsys, option):
    test, _ = perovskite_files
    assert evaluate("--ranked", "--checkpoint", "perov5_csp", "--potential", "emt", "--data", str(test), option,
                    "--out", str(tmp_path / "o")) == 1
    err = capsys.readouterr().err
    assert f"{option.split('=')[0]} is a sampler setting; --ranked samples as predict does" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


@pytest.mark.parametrize("options, message", [
    (["--far-samples", "20"], "--far-samples and --far-distance are predict's: they go with --ranked"),
    (["--ranked", "--far-samples", "-1"], "--far-samples must be a whole number >= 0"),
    (["--ranked", "--far-distance", "-2"], "--far-distance must be a finite number >= 0"),
])
def test_far_sample_options_are_checked_before_any_work(tmp_path, perovskite_files, capsys, options, message):
    test, _ = perovskite_files
    assert evaluate("--checkpoint", "perov5_csp", "--potential", "emt", "--data", str(test), *options,
                    "--out", str(tmp_path / "x")) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
