"""`diffcrystal sample` and `diffcrystal evaluate` end to end with tiny generators made in the test."""

import csv
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from diffcrystal.cli.main import main
from diffcrystal.sample_writer import SUMMARY_COLUMNS

STEPS = "6"


def run_sample(checkpoint, out, *extra):
    return main(["sample", "--checkpoint", str(checkpoint), "--steps", STEPS, "--out", str(out), "--quiet", *extra])


def summary_rows(folder):
    with open(folder / "summary.csv", newline="") as stream:
        return list(csv.DictReader(stream))


def test_csp_files_and_summary(tmp_path, tiny_generators, capsys):
    assert run_sample(tiny_generators["csp"], tmp_path / "out", "--composition", "SrTiO3", "--n", "3",
                      "--formula-units", "1,2", "--batch-size", "2") == 0
    rows = summary_rows(tmp_path / "out")
    assert tuple(rows[0]) == SUMMARY_COLUMNS
    assert [r["id"] for r in rows] == ["000000", "000001", "000002"]
    assert [int(r["n_atoms"]) for r in rows if r["cif"]] == [n for n, r in zip([5, 10, 5], rows) if r["cif"]]
    for row in rows:
        assert row["valid"] in ("True", "False")
        assert row["valid"] == "True" or row["invalid_reason"]
        if row["cif"]:
            assert (tmp_path / "out" / row["cif"]).read_text().startswith("# generated using pymatgen")
            assert float(row["volume_per_atom_A3"]) > 0 and int(row["spacegroup_number"]) >= 1
    assert [r["formula_units"] for r in rows] == ["1", "2", "1"]
    symmetrized = [r["symmetrized_cif"] for r in rows if r["symmetrized_cif"]]
    assert (tmp_path / "out" / "cif_symmetrized").exists() == bool(symmetrized)  # no empty folder
    for row in rows:
        assert row["valid"] == str(row["structure_valid"] == row["density_plausible"] == "True")
        assert row["charge_neutral"] == "True"
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["mode"] == "csp" and run["num_steps"] == int(STEPS) and len(run["checkpoint_sha256"]) == 64
    assert run["composition"] == "SrTiO3" and run["validity_checks"] == ["structure", "density"]
    out = capsys.readouterr().out
    valid = sum(r["valid"] == "True" for r in rows)
    assert f"valid: {valid}/3 (checks: atoms more than 0.5 Å apart" in out and "van der Waals volume)" in out
    for z, atoms, members in ((1, 5, [0, 2]), (2, 10, [1])):
        z_valid = sum(rows[i]["valid"] == "True" for i in members)
        assert f"Z={z} ({atoms} atoms per cell): {z_valid}/{len(members)} valid" in out
    assert "SrTiO3 is charge neutral with SMACT's oxidation states" in out


def test_run_json_keeps_the_formula_as_typed(tmp_path, tiny_generators):
    assert run_sample(tiny_generators["csp"], tmp_path / "o", "--composition", "Ti Sr O3", "--n", "1") == 0
    assert json.loads((tmp_path / "o" / "run.json").read_text())["composition"] == "TiSrO3"  # not 'O3TiSr'


def test_same_seed_same_structures(tmp_path, tiny_generators):
    for name, seed in (("a", "7"), ("b", "7"), ("c", "8")):
        assert run_sample(tiny_generators["csp"], tmp_path / name, "--composition", "NaCl", "--n", "2", "--seed", seed) == 0
    cif = "cif/000001.cif"
    assert (tmp_path / "a" / cif).read_text() == (tmp_path / "b" / cif).read_text()
    assert (tmp_path / "a" / cif).read_text() != (tmp_path / "c" / cif).read_text()


def test_interrupted_run_resumes_to_the_same_result(tmp_path, tiny_generators, monkeypatch, capsys):
    from diffcrystal.generator import Generator

    args = ("--composition", "CsCl", "--n", "4", "--batch-size", "2", "--seed", "3")
    assert run_sample(tiny_generators["csp"], tmp_path / "full", *args) == 0

    original = Generator.sample
    calls = {"n": 0}

    def interrupted(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, *a, **k)

    monkeypatch.setattr(Generator, "sample", interrupted)
    assert run_sample(tiny_generators["csp"], tmp_path / "cut", *args) == 130
    assert len(summary_rows(tmp_path / "cut")) == 2
    assert not [p for p in (tmp_path / "cut").rglob("*.tmp")]
    monkeypatch.setattr(Generator, "sample", original)
    assert run_sample(tiny_generators["csp"], tmp_path / "cut", *args) == 1  # refuses without --resume
    capsys.readouterr()
    assert run_sample(tiny_generators["csp"], tmp_path / "cut", *args, "--resume") == 0
    out = capsys.readouterr().out
    assert "4 structures: 2 kept from the earlier run, 2 sampled in" in out and "valid: " in out
    assert f"{sum(r['valid'] == 'True' for r in summary_rows(tmp_path / 'cut'))}/4 (checks" in out
    for i in range(4):
        cif = f"cif/00000{i}.cif"
        assert (tmp_path / "cut" / cif).read_text() == (tmp_path / "full" / cif).read_text()


def test_denovo_generates_species(tmp_path, tiny_generators, capsys):
    assert run_sample(tiny_generators["denovo"], tmp_path / "out", "--n", "3") == 0
    rows = summary_rows(tmp_path / "out")
    assert len(rows) == 3 and all(r["formula"] or r["invalid_reason"] for r in rows)
    assert all(r["formula_units"] == "" for r in rows)
    for row in rows:  # de novo, SMACT charge neutrality is one of the checks
        checks = (row["structure_valid"], row["density_plausible"], row["charge_neutral"])
        assert row["valid"] == str(checks == ("True",) * 3)
    out = capsys.readouterr().out
    assert "charge neutral with SMACT's oxidation states)" in out
    elements = Counter(len(set(re.findall(r"[A-Z][a-z]?", r["formula"]))) for r in rows if r["formula"])
    listed = ", ".join(f"{e}: {c}" for e, c in sorted(elements.items())) or "no formulas"
    assert f"elements per formula (no check limits it; SMACT passes many-element formulas): {listed}\n" in out
    charge_failures = sum(r["charge_neutral"] == "False" for r in rows)
    assert f"charge {charge_failures}" in out and "Z=" not in out


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--composition", "Li0.5CoO2"], "fractional"),
        (["--composition", "XxO2"], "Xx"),
        (["--composition", "NaCl", "--n", "0"], "--n must be at least 1"),
        (["--n", "2"], "pass --composition"),
        (["--composition", "NaCl", "--steps", "100000"], "--steps must be in"),
        (["--composition", "NaCl", "--steps", "0"], "--steps must be in 1..100, got 0"),
        (["--composition", ""], "--composition is empty"),
        (["--composition", "  "], "--composition is empty"),
    ],
)
def test_bad_requests_are_one_line_errors(tmp_path, tiny_generators, capsys, arguments, message):
    code = main(["sample", "--checkpoint", str(tiny_generators["csp"]), "--out", str(tmp_path / "o"), "--quiet", *arguments])
    err = capsys.readouterr().err
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1, err


def never_sample(monkeypatch):
    from diffcrystal.generator import Generator

    def fail(*_args, **_kwargs):
        raise AssertionError("sampling started")

    monkeypatch.setattr(Generator, "sample", fail)


def test_output_that_cannot_be_created_fails_before_sampling(tmp_path, tiny_generators, capsys, monkeypatch):
    never_sample(monkeypatch)
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert run_sample(tiny_generators["csp"], blocker / "out", "--composition", "NaCl", "--n", "1") == 1
    err = capsys.readouterr().err
    assert "cannot create output folder" in err and len(err.strip().splitlines()) == 1


def test_output_that_cannot_be_written_fails_before_sampling(tmp_path, tiny_generators, capsys, monkeypatch):
    from diffcrystal import sample_writer

    never_sample(monkeypatch)
    out = tmp_path / "out"
    real_probe = sample_writer.probe_writable

    def read_only_folder(folder):  # what a read-only mount answers, even to root
        if Path(folder) == out:
            raise PermissionError(13, "Permission denied")
        real_probe(folder)

    monkeypatch.setattr(sample_writer, "probe_writable", read_only_folder)
    assert run_sample(tiny_generators["csp"], out, "--composition", "NaCl", "--n", "1") == 1
    err = capsys.readouterr().err
    assert f"output folder {out} is not writable: Permission denied" in err and len(err.strip().splitlines()) == 1


RESUMED = ["--composition", "NaCl", "--n", "4", "--batch-size", "2", "--seed", "3"]


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory, tiny_generators):
    """A run of ``RESUMED`` with 2 of its 4 samples written (as if interrupted)."""
    out = tmp_path_factory.mktemp("interrupted") / "o"
    assert run_sample(tiny_generators["csp"], out, *RESUMED, "--n", "2") == 0
    run = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps({**run, "n": 4}))
    return out


@pytest.mark.parametrize(
    "changed, message",
    [
        (["--seed", "4"], "--seed 4 (the run used 3)"),
        (["--composition", "CsCl"], "--composition CsCl (the run used NaCl)"),
        (["--steps", "5"], "--steps 5 (the run used 6)"),
        (["--corrector-steps", "3"], "--corrector-steps 3 (the run used 1)"),
        (["--corrector-min-t", "20"], "--corrector-min-t 20 (the run used 0)"),
        (["--noise-scale", "0.5"], "--noise-scale 0.5 (the run used 1.0)"),
        (["--checkpoint", "perov5_csp"], "perov5_csp.safetensors (the run used"),
    ],
)
def test_resume_with_other_options_is_refused(tmp_path, tiny_generators, interrupted_run, capsys, monkeypatch,
                                              changed, message):
    import shutil

    out = shutil.copytree(interrupted_run, tmp_path / "o")
    run_json, summary = (out / "run.json").read_text(), (out / "summary.csv").read_text()
    never_sample(monkeypatch)
    options = {"--checkpoint": str(tiny_generators["csp"]), "--steps": STEPS}
    arguments = RESUMED + ["--out", str(out), "--quiet", "--resume"]
    for name, value in options.items():
        if name not in changed:
            arguments += [name, value]
    code = main(["sample", *arguments, *changed])
    err = capsys.readouterr().err
    assert code == 1 and "cannot resume" in err and message in err and len(err.strip().splitlines()) == 1, err
    assert (out / "run.json").read_text() == run_json and (out / "summary.csv").read_text() == summary


def test_corrector_steps_are_applied_recorded_and_checked(tmp_path, tiny_generators, capsys):
    from diffcrystal.generator import Generator

    assert Generator.from_checkpoint(tiny_generators["csp"]).experiment.sampling.corrector_steps == 1
    out = tmp_path / "o"
    assert run_sample(tiny_generators["csp"], out, "--composition", "NaCl", "--n", "2", "--corrector-steps", "3") == 0
    assert "+ 3 corrector steps each" in capsys.readouterr().out
    run = json.loads((out / "run.json").read_text())
    assert run["corrector_steps"] == 3 and run["experiment"]["sampling"]["corrector_steps"] == 3
    assert run_sample(tiny_generators["csp"], tmp_path / "bad", "--composition", "NaCl", "--n", "1",
                      "--corrector-steps", "-1") == 1
    err = capsys.readouterr().err
    assert "invalid config value sampling.corrector_steps: -1; expected >= 0" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()


def test_corrector_min_t_is_applied_recorded_and_checked(tmp_path, tiny_generators, capsys):
    out = tmp_path / "o"
    assert run_sample(tiny_generators["csp"], out, "--composition", "NaCl", "--n", "2", "--corrector-min-t", "20") == 0
    assert "+ 1 corrector step each above t = 20" in capsys.readouterr().out
    run = json.loads((out / "run.json").read_text())
    assert run["corrector_min_t"] == 20 and run["experiment"]["sampling"]["corrector_min_t"] == 20
    assert run_sample(tiny_generators["csp"], tmp_path / "bad", "--composition", "NaCl", "--n", "1",
                      "--corrector-min-t", "-5") == 1
    err = capsys.readouterr().err
    assert "invalid config value sampling.corrector_min_t: -5; expected >= 0" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()


def test_noise_scale_reaches_the_sampler_and_is_recorded_and_checked(tmp_path, tiny_generators, capsys, monkeypatch):
    from diffcrystal.diffusion.coords import CoordDiffusion

    factors = []
    real_factor = CoordDiffusion.noise_factor

    def recorded_factor(self, t):
        factors.append(real_factor(self, t))
        return factors[-1]

    monkeypatch.setattr(CoordDiffusion, "noise_factor", recorded_factor)
    out = tmp_path / "o"
    assert run_sample(tiny_generators["csp"], out, "--composition", "NaCl", "--n", "2", "--noise-scale", "0.5") == 0
    assert factors and set(factors) == {0.5}  # every reverse and corrector step of the coordinates
    assert "coordinate noise × 0.5, csp checkpoint" in capsys.readouterr().out
    run = json.loads((out / "run.json").read_text())
    assert run["coord_noise_scale"] == 0.5 and run["experiment"]["diffusion"]["coord_noise_scale"] == 0.5
    factors.clear()
    assert run_sample(tiny_generators["csp"], tmp_path / "default", "--composition", "NaCl", "--n", "1") == 0
    assert set(factors) == {1.0} and "coordinate noise" not in capsys.readouterr().out
    for bad in ("-1", "nan", "inf"):
        assert run_sample(tiny_generators["csp"], tmp_path / "bad", "--composition", "NaCl", "--n", "1",
                          "--noise-scale", bad) == 1
        err = capsys.readouterr().err
        assert re.search("noise.scale must", err) and bad in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "bad").exists()


def test_resume_of_a_run_recorded_before_the_noise_scale_sampled_at_its_config_s(
        tmp_path, tiny_generators, interrupted_run, capsys, monkeypatch):
    import shutil

    out = shutil.copytree(interrupted_run, tmp_path / "o")
    run = json.loads((out / "run.json").read_text())
    del run["coord_noise_scale"], run["experiment"]["diffusion"]["coord_noise_scale"]  # as written before it
    (out / "run.json").write_text(json.dumps(run))
    never_sample(monkeypatch)
    arguments = RESUMED + ["--out", str(out), "--quiet", "--resume", "--checkpoint", str(tiny_generators["csp"]),
                           "--steps", STEPS]
    assert main(["sample", *arguments, "--noise-scale", "0.7"]) == 1
    assert "--noise-scale 0.7 (the run used 1.0)" in capsys.readouterr().err
    with pytest.raises(AssertionError, match="sampling started"):  # accepted: 1 is what the old run used
        main(["sample", *arguments])


def test_resume_of_a_run_recorded_before_corrector_min_t_ran_the_corrector_at_every_step(
        tmp_path, tiny_generators, interrupted_run, capsys, monkeypatch):
    import shutil

    out = shutil.copytree(interrupted_run, tmp_path / "o")
    run = json.loads((out / "run.json").read_text())
    del run["corrector_min_t"], run["experiment"]["sampling"]["corrector_min_t"]  # as written before the setting
    (out / "run.json").write_text(json.dumps(run))
    never_sample(monkeypatch)
    arguments = RESUMED + ["--out", str(out), "--quiet", "--resume", "--checkpoint", str(tiny_generators["csp"]),
                           "--steps", STEPS]
    assert main(["sample", *arguments, "--corrector-min-t", "10"]) == 1
    assert "--corrector-min-t 10 (the run used 0)" in capsys.readouterr().err
    with pytest.raises(AssertionError, match="sampling started"):  # accepted: 0 is what the old run used
        main(["sample", *arguments])


def test_resume_of_a_run_recorded_before_corrector_steps_reads_them_from_its_config(
        tmp_path, tiny_generators, interrupted_run, capsys, monkeypatch):
    import shutil

    out = shutil.copytree(interrupted_run, tmp_path / "o")
    run = json.loads((out / "run.json").read_text())
    del run["corrector_steps"]  # as written before the option existed
    (out / "run.json").write_text(json.dumps(run))
    never_sample(monkeypatch)
    arguments = RESUMED + ["--out", str(out), "--quiet", "--resume", "--checkpoint", str(tiny_generators["csp"]),
                           "--steps", STEPS, "--corrector-steps", "2"]
    assert main(["sample", *arguments]) == 1
    assert "--corrector-steps 2 (the run used 1)" in capsys.readouterr().err


def test_resume_of_a_finished_run_samples_nothing_and_reports_all(tmp_path, tiny_generators, capsys, monkeypatch):
    args = ("--composition", "NaCl", "--n", "3", "--batch-size", "2", "--formula-units", "1,2")
    assert run_sample(tiny_generators["csp"], tmp_path / "o", *args) == 0
    first = capsys.readouterr().out
    never_sample(monkeypatch)
    assert run_sample(tiny_generators["csp"], tmp_path / "o", *args, "--resume") == 0
    again = capsys.readouterr().out
    assert len(summary_rows(tmp_path / "o")) == 3
    assert "3 structures: 3 kept from the earlier run, 0 sampled in" in again
    assert first.split("valid:")[1].split("files:")[0] == again.split("valid:")[1].split("files:")[0]


def test_second_run_of_a_composition_names_its_own_folder(tmp_path, tiny_generators, capsys, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    arguments = ["sample", "--checkpoint", str(tiny_generators["csp"]), "--steps", STEPS, "--quiet",
                 "--composition", "NaCl", "--n", "1"]
    assert main(arguments) == 0
    out = capsys.readouterr().out
    assert "\n1 structure in " in out and f"({STEPS} steps + 1 corrector step each, csp checkpoint" in out
    assert out.strip().endswith("next: diffcrystal relax samples/NaCl  (or: diffcrystal rank samples/NaCl)")
    assert "earlier run" not in caplog.text
    assert main(arguments) == 0
    assert "samples/NaCl holds an earlier run; this run goes to samples/NaCl-2" in caplog.text
    assert capsys.readouterr().out.strip().endswith(
        "next: diffcrystal relax samples/NaCl-2  (or: diffcrystal rank samples/NaCl-2)")
    assert len(summary_rows(tmp_path / "samples" / "NaCl-2")) == 1


def test_resume_without_run_record_is_refused(tmp_path, tiny_generators, capsys):
    args = ("--composition", "NaCl", "--n", "2")
    assert run_sample(tiny_generators["csp"], tmp_path / "o", *args) == 0
    (tmp_path / "o" / "run.json").unlink()
    assert run_sample(tiny_generators["csp"], tmp_path / "o", *args, "--resume") == 1
    assert "run.json is missing or unreadable" in capsys.readouterr().err


def test_corrupt_checkpoint_is_a_clear_error(tmp_path, tiny_generators, capsys):
    broken = tmp_path / "broken.safetensors"
    data = bytearray(tiny_generators["csp"].read_bytes())
    data[-3] ^= 0xFF
    broken.write_bytes(bytes(data))
    assert run_sample(broken, tmp_path / "o", "--composition", "NaCl", "--n", "1") == 1
    assert "corrupt checkpoint" in capsys.readouterr().err


def test_unseen_element_and_large_cell_warn(tmp_path, tiny_generators, caplog):
    assert run_sample(tiny_generators["csp"], tmp_path / "o", "--composition", "Au5O5", "--n", "1") == 0
    assert "never saw Au" in caplog.text
    assert "more than the largest training cell" in caplog.text


def test_run_projected_to_take_long_is_announced_after_its_first_batch(tmp_path, tiny_generators, caplog,
                                                                       monkeypatch):
    from diffcrystal import sampling

    assert run_sample(tiny_generators["csp"], tmp_path / "short", "--composition", "NaCl", "--n", "4",
                      "--batch-size", "2") == 0
    assert "batches take about" not in caplog.text  # a few seconds: no warning
    monkeypatch.setattr(sampling, "LONG_RUN_WARNING_S", 0.0)  # as if --n were huge
    assert run_sample(tiny_generators["csp"], tmp_path / "long", "--composition", "NaCl", "--n", "4",
                      "--batch-size", "2") == 0
    assert caplog.text.count("--n 4: the first batch took") == 1
    assert "so the 2 batches take about" in caplog.text and "--resume continues it" in caplog.text


def test_evaluate_csp_writes_metrics(tmp_path, tiny_generators, tiny_data):
    out = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(tiny_generators["csp"]), "--data", str(tiny_data), "--k", "2",
                 "--steps", STEPS, "--out", str(out), "--workers", "1", "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["extra"]["num_test_structures"] == 4 and metrics["extra"]["k"] == 2
    assert (out / "metrics.md").read_text().count("|") > 4


@pytest.mark.parametrize(("primitive", "atoms"), [(False, 8), (True, 2)])
def test_evaluate_samples_the_target_cell_as_given_or_primitive(tmp_path, tiny_generators, primitive, atoms):
    from ase.build import bulk
    from ase.io import write

    data = tmp_path / "nacl.extxyz"
    write(data, bulk("NaCl", "rocksalt", a=5.64, cubic=True))  # conventional cell: 8 atoms, primitive: 2
    out = tmp_path / "eval"
    args = ["evaluate", "--checkpoint", str(tiny_generators["csp"]), "--data", str(data), "--k", "1",
            "--steps", STEPS, "--out", str(out), "--workers", "1", "--quiet"]
    assert main(args + (["--primitive-targets"] if primitive else [])) == 0
    extra = json.loads((out / "metrics.json").read_text())["extra"]
    assert extra["primitive_targets"] is primitive and extra["num_target_atoms"] == atoms


def test_denovo_evaluation_reports_unique_and_novel_shares(tmp_path, tiny_data, tiny_generators, capsys):
    """`evaluate` of a de novo checkpoint measures novelty against the checkpoint's own
    training data by default, and the counts agree with the valid share."""
    import json

    from diffcrystal.cli.main import main

    out = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(tiny_generators["denovo"]), "--data", str(tiny_data),
                 "--n", "6", "--dataset", "mp_20", "--workers", "1", "--quiet", "--out", str(out)]) == 0
    record = json.loads((out / "metrics.json").read_text())
    summary = record["summary"]
    assert summary["n_considered_for_novelty"] == summary["n_valid"]
    assert summary["n_train_for_novelty"] == 4
    assert 0 <= summary["n_unique_and_novel"] <= min(summary["n_unique"], summary["n_novel"])
    assert summary["n_unique"] <= summary["n_valid"]
    assert record["extra"]["novelty_train_data"] == [str(tiny_data)]
    assert "| unique and novel |" in capsys.readouterr().out
