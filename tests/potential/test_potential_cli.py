"""``diffcrystal relax`` / ``rank`` / ``potential`` end to end with EMT on a tiny folder."""

import csv
import hashlib

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, make_supercell
from ase.io import read, write

from diffcrystal.cli.main import main


def cu3au_l12(a=3.74):
    return Atoms("AuCu3", scaled_positions=[[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
                 cell=np.eye(3) * a, pbc=True)


def rattled(atoms, seed):
    out = atoms.copy()
    out.rattle(0.03, seed=seed)
    return out


@pytest.fixture
def sample_folder(tmp_path):
    """A sample folder: summary.csv (id, space_group of the raw sample) + <id>.cif; 'dup' is a
    supercell of 'l12' (same crystal), 'cu' another crystal."""
    folder = tmp_path / "samples"
    folder.mkdir()
    structures = {
        "l12": rattled(cu3au_l12(), 1),
        "dup": rattled(make_supercell(cu3au_l12(3.8), np.diag([1, 1, 2])), 2),
        "cu": rattled(bulk("Cu", "fcc", a=3.55, cubic=True), 3),
    }
    for name, atoms in structures.items():
        write(folder / f"{name}.cif", atoms)
    with open(folder / "summary.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "space_group"])
        for name in structures:
            writer.writerow([name, "P1"])
    return folder


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_relax_writes_cifs_and_extended_summary(sample_folder, tmp_path):
    before = digest(sample_folder)
    out = tmp_path / "relaxed"
    code = main(["relax", str(sample_folder), "--potential", "emt", "--out", str(out),
                 "--workers", "1", "--no-progress"])
    assert code == 0
    assert digest(sample_folder) == before  # inputs untouched
    rows = read_rows(out / "summary.csv")
    assert [r["id"] for r in rows] == ["l12", "dup", "cu"]
    for row in rows:
        assert row["space_group"] == "P1"  # input column kept
        assert row["status"] == "converged" and row["potential"] == "emt"
        assert float(row["max_force_eV_A"]) < 0.02
        assert (out / row["cif"]).is_file()
    assert {r["id"]: r["space_group_relaxed"] for r in rows} == {"l12": "Pm-3m", "dup": "Pm-3m", "cu": "Fm-3m"}
    assert not list(out.glob(".*tmp*"))  # no temporary files left


def test_rank_deduplicates_and_reports_hull(sample_folder, tmp_path):
    references = tmp_path / "known"
    references.mkdir()
    write(references / "Cu.cif", bulk("Cu", "fcc", a=3.6, cubic=True))
    write(references / "Au.cif", bulk("Au", "fcc", a=4.1, cubic=True))
    out = tmp_path / "ranked"
    code = main(["rank", str(sample_folder), "--potential", "emt", "--out", str(out), "--workers", "2",
                 "--reference", str(references), "--no-progress"])
    assert code == 0
    rows = read_rows(out / "ranked.csv")
    assert len(rows) == 2
    l12 = next(r for r in rows if r["formula"] == "Cu3Au")
    assert int(l12["group_size"]) == 2 and set(l12["group_members"].split()) == {"l12", "dup"}
    assert float(l12["e_above_hull_eV_atom"]) < 0
    cu = next(r for r in rows if r["formula"] == "Cu")
    assert abs(float(cu["e_above_hull_eV_atom"])) < 1e-3  # on the hull, to relaxation precision
    assert [int(r["rank"]) for r in rows] == [1, 2]
    assert float(rows[0]["energy_per_atom_eV"]) <= float(rows[1]["energy_per_atom_eV"])
    assert {r["potential"] for r in rows} == {"emt"}
    assert (out / "ranking.png").stat().st_size > 0
    assert len(read_rows(out / "relaxed" / "summary.csv")) == 3


def test_cli_errors_are_one_line(sample_folder, tmp_path, capsys):
    assert main(["relax", str(sample_folder), "--potential", "nope", "--out", str(tmp_path / "o")]) == 1
    message = capsys.readouterr().err.strip()
    assert "\n" not in message and "sevennet-0" in message
    assert main(["relax", str(sample_folder), "--potential", "emt", "--out", str(sample_folder)]) == 1
    assert "input" in capsys.readouterr().err


def test_potential_frames_and_label(sample_folder, tmp_path):
    frames = tmp_path / "frames.extxyz"
    assert main(["potential", "frames", str(sample_folder / "cu.cif"), "--copies", "3", "--out", str(frames)]) == 0
    labelled = tmp_path / "labelled.extxyz"
    assert main(["potential", "label", "--teacher", "emt", "--frames", str(frames), "--out", str(labelled)]) == 0
    read_back = read(labelled, index=":")
    assert len(read_back) == 3
    assert np.isfinite(read_back[0].get_potential_energy()) and read_back[0].get_forces().shape == (4, 3)
    assert read_back[0].get_stress().shape == (6,)
