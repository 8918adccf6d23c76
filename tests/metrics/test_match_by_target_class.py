"""``scripts/studies/match_by_target_class.py``: @1 counts split by atoms, elements and crystal
system, on five hand-built crystals whose classes are known, against metrics files built by hand."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from ase.build import bulk
from ase.io import write
from ase.spacegroup import crystal

from tests.script_loading import load_script

PRECISE = {"status": "match", "rms": 0.05}
LOOSE = {"status": "match", "rms": 0.3}
MISS = {"status": "no_match", "rms": None}


def known_crystals(path: Path) -> Path:
    """Cu (1 atom, cubic), NaCl (2, cubic), ZnO wurtzite (4, hexagonal), rutile TiO2 (6,
    tetragonal) and SrTiO3 (5, cubic, 3 elements), labelled by material_id."""
    structures = {
        "cu": bulk("Cu", "fcc", a=3.6),
        "nacl": bulk("NaCl", "rocksalt", a=5.64),
        "zno": bulk("ZnO", "wurtzite", a=3.25, c=5.21),
        "tio2": crystal(["Ti", "O"], basis=[(0, 0, 0), (0.3, 0.3, 0)], spacegroup=136,
                        cellpar=[4.59, 4.59, 2.96, 90, 90, 90]),
        "sto": crystal(["Sr", "Ti", "O"], basis=[(0, 0, 0), (0.5, 0.5, 0.5), (0.5, 0.5, 0)], spacegroup=221,
                       cellpar=[3.9, 3.9, 3.9, 90, 90, 90]),
    }
    for label, atoms in structures.items():
        atoms.info["material_id"] = label
    write(path, list(structures.values()), format="extxyz")
    return path


def metrics(path: Path, first: dict[str, dict], task: str = "csp") -> Path:
    report = {"task": task, "per_target": [{"label": label, "candidates": [c, PRECISE]} for label, c in first.items()]}
    path.write_bytes(gzip.compress(json.dumps(report).encode(), mtime=0))
    return path


def test_counts_per_class_follow_the_first_candidate(tmp_path, capsys):
    script = load_script("studies/match_by_target_class")
    data = known_crystals(tmp_path / "known.extxyz")
    model = metrics(tmp_path / "model.json.gz", {"cu": PRECISE, "nacl": LOOSE, "zno": MISS, "tio2": PRECISE, "sto": MISS})
    everything = metrics(tmp_path / "all.json.gz", {label: PRECISE for label in ("cu", "nacl", "zno", "tio2", "sto")})
    out = tmp_path / "report.json"
    assert script.main(["--data", str(data), "--run", f"model={model}", "--run", f"all={everything}",
                        "--out", str(out)]) == 0
    splits = json.loads(out.read_text())["splits"]
    atoms = splits["atoms in the primitive cell"]
    assert list(atoms) == ["1-4", "5-8"]  # empty bins are left out
    assert atoms["1-4"] == {"targets": 3, "model": {"samples": 3, "matched": 2, "precise": 1},
                            "all": {"samples": 3, "matched": 3, "precise": 3}}
    assert atoms["5-8"] == {"targets": 2, "model": {"samples": 2, "matched": 1, "precise": 1},
                            "all": {"samples": 2, "matched": 2, "precise": 2}}
    elements = splits["distinct elements"]
    assert {name: (row["targets"], row["model"]["matched"], row["model"]["precise"]) for name, row in elements.items()} \
        == {"1": (1, 1, 1), "2": (3, 2, 1), "3": (1, 0, 0)}
    systems = splits["crystal system (spglib, 0.1 Å)"]
    assert {name: (row["targets"], row["model"]["matched"], row["model"]["precise"]) for name, row in systems.items()} \
        == {"tetragonal": (1, 1, 1), "hexagonal": (1, 0, 0), "cubic": (3, 2, 1)}
    assert "| 1-4 | 3 | 66.7 / 33.3 % | 100.0 / 100.0 % |" in capsys.readouterr().out

    # every candidate counts with --per-sample: each target's second candidate is PRECISE
    assert script.main(["--data", str(data), "--run", f"model={model}", "--per-sample", "--out", str(out)]) == 0
    per_sample = json.loads(out.read_text())
    assert per_sample["per_sample"] is True
    assert per_sample["splits"]["atoms in the primitive cell"]["1-4"] == {
        "targets": 3, "model": {"samples": 6, "matched": 5, "precise": 4}}
    assert "| 1-4 | 3 | 83.3 / 66.7 % |" in capsys.readouterr().out


def test_a_run_without_every_target_or_of_another_task_is_refused(tmp_path, capsys):
    script = load_script("studies/match_by_target_class")
    data = known_crystals(tmp_path / "known.extxyz")
    partial = metrics(tmp_path / "partial.json.gz", {"cu": PRECISE})
    assert script.main(["--data", str(data), "--run", f"m={partial}", "--out", str(tmp_path / "r.json")]) == 1
    assert "--run m: lacks 4 of the 5 targets" in capsys.readouterr().err
    denovo = metrics(tmp_path / "denovo.json.gz", {"cu": PRECISE}, task="denovo")
    assert script.main(["--data", str(data), "--run", f"m={denovo}", "--out", str(tmp_path / "r.json")]) == 1
    assert "not a CSP evaluation" in capsys.readouterr().err
    assert script.main(["--data", str(data), "--run", "nameless", "--out", str(tmp_path / "r.json")]) == 1
    assert "expected NAME=METRICS_FILE" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()
