"""``potential learn``: the disagreement measure, the selection, the loop with injected fast
students (EMT teacher), the CLI's one-line errors and (slow) the real nequip path."""

import csv
import json
from dataclasses import replace

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.io import read, write

from diffcrystal.cli.main import main
from diffcrystal.errors import InputError
from diffcrystal.potential.active_learning import (
    LearnSettings,
    force_disagreement,
    learn,
    most_disagreeing,
)


def test_force_disagreement_is_the_largest_atom_rms_deviation_from_the_mean():
    forces = np.random.default_rng(0).normal(size=(4, 5, 3))
    expected = 0.0
    for atom in range(5):
        mean = sum(forces[m, atom] for m in range(4)) / 4
        squared = [sum((forces[m, atom, k] - mean[k]) ** 2 for k in range(3)) for m in range(4)]
        expected = max(expected, (sum(squared) / 4) ** 0.5)
    assert force_disagreement(forces) == pytest.approx(expected, rel=1e-12)
    assert force_disagreement(np.repeat(forces[:1], 3, axis=0)) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(InputError, match="members >= 2"):
        force_disagreement(forces[:1])


def test_most_disagreeing_takes_the_largest_first():
    assert most_disagreeing([0.1, 0.5, 0.3, 0.5, 0.0], 3) == [1, 3, 2]
    assert most_disagreeing([0.2, 0.1], 5) == [0, 1]


class WrongEMT(Calculator):
    """EMT plus a smooth force error of size ``scale`` eV/Å whose shape depends on ``seed``: a
    fast stand-in for a fitted student."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, scale, seed):
        super().__init__()
        self.scale = scale
        self.wave = np.random.default_rng(seed).normal(size=(3, 3))

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        exact = self.atoms.copy()
        exact.calc = EMT()
        energy = exact.get_potential_energy() + self.scale * len(exact)
        forces = exact.get_forces() + self.scale * np.sin(self.atoms.positions @ self.wave)
        self.results = {"energy": energy, "free_energy": energy, "forces": forces,
                        "stress": exact.get_stress()}


class FakeFitter:
    """Fits nothing: a :class:`WrongEMT` whose error shrinks as 1/frames; remembers each student
    (by ``round-<r>/<member>``) and writes its size and seed into its folder for ``load``."""

    def __init__(self):
        self.students, self.fitted = {}, []

    def fit(self, frames, folder, seed):
        self.fitted.append(folder.relative_to(folder.parent.parent).as_posix())
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "student.json").write_text(json.dumps([2.0 / len(frames), seed]))
        return self.load(folder)

    def load(self, folder):
        student = WrongEMT(*json.loads((folder / "student.json").read_text()))
        self.students[folder.relative_to(folder.parent.parent).as_posix()] = student
        return student


def metal_cells():
    cells = [("Cu", 3.6), ("Al", 4.05), ("Cu", 3.7), ("Ni", 3.52), ("Al", 3.95), ("Ni", 3.6)]
    return [(f"{element}{i}", bulk(element, "fcc", a=a, cubic=True)) for i, (element, a) in enumerate(cells)]


def test_loop_selects_the_most_disagreeing_frames_and_records_every_round(tmp_path):
    out = tmp_path / "learn"
    settings = LearnSettings(rounds=2, ensemble=3, initial=8, per_round=5, held_out_share=0.34, seed=3)
    fitter = FakeFitter()
    seen = []

    def after_round(line):  # learn.json is complete and valid after every round
        seen.append((line, json.loads((out / "learn.json").read_text())))
        assert not [p for p in out.iterdir() if p.name.startswith(".")]

    result = learn(metal_cells(), out, EMT(), fitter, settings, teacher_name="emt", log=after_round)

    record = result.record
    assert [len(snapshot["rounds"]) for _, snapshot in seen] == [1, 2, 3]
    assert json.loads((out / "learn.json").read_text()) == record
    assert [r["frames"] for r in record["rounds"]] == [8, 13, 18]
    assert [r["control"]["frames"] for r in record["rounds"]] == [8, 13, 18]
    assert seen[1][0].startswith("round 1: 13 frames (+5 of a pool of")

    held_out, training = set(record["held_out_candidates"]), set(record["training_candidates"])
    assert len(held_out) == 2 and len(training) == 4 and not held_out & training
    held_frames = read(out / "held_out.extxyz", index=":")
    assert len(held_frames) == record["held_out_frames"] and {f.info["candidate"] for f in held_frames} == held_out
    for round_index in range(3):
        for name in ["train.extxyz"] + (["control_train.extxyz"] if round_index else []):
            frames = read(out / f"round-{round_index}" / name, index=":")
            assert {f.info["candidate"] for f in frames} <= training

    for round_index in (1, 2):
        pool = read(out / f"round-{round_index}" / "pool.extxyz", index=":")
        members = [fitter.students[f"round-{round_index - 1}/member-{m}"] for m in range(3)]
        for frame in pool:  # the recorded disagreement is the previous ensemble's
            forces = []
            for member in members:
                atoms = frame.copy()
                atoms.calc = member
                forces.append(atoms.get_forces())
            assert frame.info["disagreement"] == pytest.approx(force_disagreement(forces), abs=1e-6)
        ranked = sorted(pool, key=lambda f: -f.info["disagreement"])
        selected = [f for f in pool if f.info["selected"]]
        assert len(selected) == 5
        assert min(f.info["disagreement"] for f in selected) >= ranked[5].info["disagreement"]
        added = read(out / f"round-{round_index}" / "train.extxyz", index=":")[-5:]
        assert sorted(f.positions.sum() for f in added) == pytest.approx(sorted(f.positions.sum() for f in selected))
        assert {f.info["origin"] for f in pool} == {"relaxation", "rattled"}

    # the fake students get better with more frames: the measured MAE must show it
    maes = [r["student"]["force_mae_meV_A"] for r in record["rounds"]]
    assert maes[0] > maes[1] > maes[2]
    assert set(record["rounds"][1]["student"]["uncertainty"]) >= {"spearman", "top_decile_max_error_meV_A",
                                                                  "rest_max_error_meV_A"}
    assert result.final_student == out / "round-2" / "member-0"


def test_a_cap_per_candidate_spreads_the_batch_over_structures(tmp_path):
    out = tmp_path / "capped"
    learn(metal_cells(), out, EMT(), FakeFitter(),
          LearnSettings(rounds=1, ensemble=2, initial=6, per_round=3, held_out_share=0.34, max_per_candidate=1),
          log=lambda line: None)
    pool = read(out / "round-1" / "pool.extxyz", index=":")
    best = {}  # each candidate's most disagreeing frame
    for frame in pool:
        key = frame.info["candidate"]
        if key not in best or frame.info["disagreement"] > best[key].info["disagreement"]:
            best[key] = frame
    expected = sorted(best.values(), key=lambda f: -f.info["disagreement"])[:3]
    selected = [f for f in pool if f.info["selected"]]
    assert sorted(f.info["disagreement"] for f in selected) == sorted(f.info["disagreement"] for f in expected)
    assert len({f.info["candidate"] for f in selected}) == 3


def test_without_control_no_control_student_is_fitted(tmp_path):
    fitter = FakeFitter()
    record = learn(metal_cells(), tmp_path / "o", EMT(), fitter,
                   LearnSettings(rounds=1, ensemble=2, initial=4, per_round=2, control=False),
                   log=lambda line: None).record
    assert all("control" not in r for r in record["rounds"])
    assert sorted(fitter.students) == ["round-0/member-0", "round-0/member-1", "round-1/member-0", "round-1/member-1"]


def test_a_stopped_run_resumes_as_if_uninterrupted(tmp_path):
    settings = LearnSettings(rounds=2, ensemble=2, initial=6, per_round=3, seed=5)
    whole = learn(metal_cells(), tmp_path / "whole", EMT(), FakeFitter(), settings, log=lambda line: None).record
    out = tmp_path / "stopped"
    learn(metal_cells(), out, EMT(), FakeFitter(), replace(settings, rounds=1), log=lambda line: None)
    lines, fitter = [], FakeFitter()
    resumed = learn(metal_cells(), out, EMT(), fitter, settings, resume=True, log=lines.append).record
    assert [line.split(":")[0] for line in lines] == ["round 2"]
    assert fitter.fitted == ["round-2/member-0", "round-2/member-1", "round-2/control"]
    assert {"round-1/member-0", "round-1/member-1"} <= set(fitter.students)

    def without_time(rounds):
        return [{k: v for k, v in entry.items() if k != "seconds"} for entry in rounds]

    assert without_time(resumed["rounds"][:2]) == without_time(whole["rounds"][:2])
    assert resumed["settings"] == whole["settings"] and resumed["rounds"][2]["frames"] == 12
    assert resumed["rounds"][2]["student"]["force_mae_meV_A"] == pytest.approx(
        whole["rounds"][2]["student"]["force_mae_meV_A"], abs=0.05)
    for name in ("train.extxyz", "control_train.extxyz"):  # the same frames chosen, to round-off
        again, first = (read(folder / "round-2" / name, index=":") for folder in (out, tmp_path / "whole"))
        assert np.allclose([f.positions for f in again], [f.positions for f in first], atol=1e-6)

    with pytest.raises(InputError, match="other settings"):
        learn(metal_cells(), out, EMT(), FakeFitter(), replace(settings, per_round=4), resume=True)
    with pytest.raises(InputError, match="cannot resume: no"):
        learn(metal_cells(), tmp_path / "new", EMT(), FakeFitter(), settings, resume=True)


def test_learn_settings_are_checked():
    with pytest.raises(InputError, match="at least 2 members"):
        LearnSettings(ensemble=1)
    with pytest.raises(InputError, match="max_per_candidate"):
        LearnSettings(max_per_candidate=0)
    with pytest.raises(InputError, match="initial must be at least 3"):
        LearnSettings(initial=2)  # the CLI's own bound: the API and the CLI agree
    with pytest.raises(InputError, match="held-out share"):
        LearnSettings(held_out_share=1.0)
    with pytest.raises(InputError, match="at least 2 candidates"):
        learn(metal_cells()[:1], "unused", EMT(), FakeFitter())


@pytest.fixture
def cif_folder(tmp_path):
    folder = tmp_path / "cifs"
    folder.mkdir()
    for label, atoms in metal_cells()[:3]:
        write(folder / f"{label}.cif", atoms)
    return folder


def one_line_error(capsys, arguments):
    code = main(["potential", "learn", *arguments])
    message = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in message, message
    return message


def test_cli_errors_are_one_line(cif_folder, tmp_path, capsys):
    out = str(tmp_path / "out")
    assert "--ensemble must be at least 2" in one_line_error(capsys, [str(cif_folder), "--out", out, "--ensemble", "1"])
    assert "--held-out-share" in one_line_error(capsys, [str(cif_folder), "--out", out, "--held-out-share", "0"])

    empty = tmp_path / "empty"
    empty.mkdir()
    with open(empty / "summary.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([["id", "cif"], ["s0", ""]])
    assert "no candidate structures" in one_line_error(capsys, [str(empty), "--out", out, "--teacher", "emt"])

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "old.txt").write_text("keep me")
    assert "not empty" in one_line_error(capsys, [str(cif_folder), "--out", str(busy), "--teacher", "emt"])
    assert "cannot resume: no" in one_line_error(capsys, [str(cif_folder), "--out", str(busy), "--teacher", "emt",
                                                          "--resume"])
    assert (busy / "old.txt").read_text() == "keep me"

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert "is a file" in one_line_error(capsys, [str(cif_folder), "--out", str(blocker), "--teacher", "emt"])
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # 2 rounds x (2 members + control) nequip-train runs: ~2-4 min on a busy 2-core machine
def test_cli_learns_with_real_nequip_students(cif_folder, tmp_path, capsys):
    out = tmp_path / "learned"
    assert main(["potential", "learn", str(cif_folder), "--out", str(out), "--teacher", "emt", "--rounds", "1",
                 "--ensemble", "2", "--initial", "6", "--per-round", "3", "--epochs", "2", "--features", "8",
                 "--held-out-share", "0.34", "--no-compile"]) == 0
    printed = capsys.readouterr().out
    assert "round 0: 6 frames" in printed and "round 1: 9 frames" in printed
    record = json.loads((out / "learn.json").read_text())
    assert [r["frames"] for r in record["rounds"]] == [6, 9]
    for entry in record["rounds"]:
        assert np.isfinite(entry["student"]["force_mae_meV_A"]) and np.isfinite(entry["control"]["force_mae_meV_A"])
    for member in ("member-0", "member-1", "control"):
        assert (out / "round-1" / member / "train" / "best.ckpt").is_file()
    assert not (out / "model.nequip.pt2").exists()
