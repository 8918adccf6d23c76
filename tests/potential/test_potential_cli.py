"""``diffcrystal relax`` / ``rank`` / ``potential`` end to end with EMT on a tiny folder."""

import csv
import hashlib
import sys
import zipfile

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, make_supercell
from ase.io import read, write

from diffcrystal.cli.main import main
from diffcrystal.potential.calculators import Potential
from diffcrystal.potential.relax import _init_worker, _relax_in_worker, RelaxSettings


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
                 "--workers", "1", "--quiet"])
    assert code == 0
    assert digest(sample_folder) == before  # inputs untouched
    rows = read_rows(out / "summary.csv")
    assert [r["id"] for r in rows] == ["l12", "dup", "cu"]
    for row in rows:
        assert row["space_group"] == "P1"  # input column kept
        assert row["status"] == "converged" and row["potential"] == "emt"
        assert float(row["max_force_eV_A"]) < 0.02
        assert (out / row["cif"]).is_file()
    assert {r["id"]: r["spacegroup_symbol"] for r in rows} == {"l12": "Pm-3m", "dup": "Pm-3m", "cu": "Fm-3m"}
    assert not list(out.glob(".*tmp*"))  # no temporary files left


def test_relaxed_summary_describes_the_relaxed_structure_in_the_sample_schema(sampled_folder, tmp_path):
    """One schema: the sample summary's column names, with the relaxed structure's values, its
    lattice; the sample's verdicts on the unrelaxed structure kept as input_*."""
    from diffcrystal.sample_writer import SUMMARY_COLUMNS as SAMPLE_COLUMNS

    out = tmp_path / "relaxed"
    assert main(["relax", str(sampled_folder), "--potential", "emt", "--out", str(out), "--quiet"]) == 0
    rows = read_rows(out / "summary.csv")
    columns = list(rows[0])
    assert len(columns) == len(set(columns)) and "num_atoms" not in columns
    assert not [c for c in columns if c.startswith("space_group")]
    structural = ["formula", "n_atoms", "spacegroup_symbol", "spacegroup_number", "spacegroup_symbol_tight",
                  "spacegroup_number_tight", "crystal_system", "volume_per_atom_A3", "density_g_cm3",
                  "min_distance_A"]
    assert set(structural) <= set(SAMPLE_COLUMNS) and set(structural) <= set(columns)
    copper = next(r for r in rows if r["id"] == "000002")
    relaxed = read(out / copper["cif"])
    assert float(copper["volume_per_atom_A3"]) == pytest.approx(relaxed.get_volume() / len(relaxed), rel=1e-4)
    assert float(copper["a_A"]) == pytest.approx(relaxed.cell.cellpar()[0], rel=1e-4)
    assert abs(float(copper["a_A"]) - 3.55) > 0.01  # relaxed, not the sample's 3.55 Å
    assert copper["spacegroup_symbol"] == "Fm-3m" and copper["crystal_system"] == "cubic"
    assert copper["n_atoms"] == "4" and copper["input_valid"] == "True"
    assert float(copper["min_distance_A"]) == pytest.approx(float(copper["a_A"]) / 2 ** 0.5, rel=1e-2)


def test_rank_deduplicates_and_reports_hull(sample_folder, tmp_path):
    references = tmp_path / "known"
    references.mkdir()
    write(references / "Cu.cif", bulk("Cu", "fcc", a=3.6, cubic=True))
    write(references / "Au.cif", bulk("Au", "fcc", a=4.1, cubic=True))
    out = tmp_path / "ranked"
    code = main(["rank", str(sample_folder), "--potential", "emt", "--out", str(out), "--workers", "2",
                 "--reference", str(references), "--quiet"])
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
    summary = read_rows(out / "relaxed" / "summary.csv")
    assert [r["id"] for r in summary] == ["l12", "dup", "cu"]  # input order
    dup = summary[1]  # the supercell is the same crystal before relaxing: relaxed once, as l12
    assert dup["status"] == "duplicate" and "the same crystal as l12" in dup["reason"] and dup["steps"] == "0"
    kept = tmp_path / "kept"
    assert main(["rank", str(sample_folder), "--potential", "emt", "--out", str(kept), "--workers", "1",
                 "--keep-duplicates", "--quiet"]) == 0
    assert [r["status"] for r in read_rows(kept / "relaxed" / "summary.csv")] == ["converged"] * 3
    assert int(next(r for r in read_rows(kept / "ranked.csv") if r["formula"] == "Cu3Au")["group_size"]) == 2


def test_cli_errors_are_one_line(sample_folder, tmp_path, capsys):
    assert main(["relax", str(sample_folder), "--potential", "nope", "--out", str(tmp_path / "o")]) == 1
    message = capsys.readouterr().err.strip()
    assert "\n" not in message and "sevennet-0" in message
    assert main(["relax", str(sample_folder), "--potential", "emt", "--out", str(sample_folder)]) == 1
    assert "input" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["relax", "rank"])
def test_cuda_without_a_gpu_is_one_line_before_any_work(command, sample_folder, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    out = tmp_path / "o"
    assert main([command, str(sample_folder), "--potential", "emt", "--device", "cuda", "--out", str(out)]) == 1
    assert capsys.readouterr().err.strip() == (
        f"diffcrystal {command}: error: --device cuda requested but no CUDA device is available")
    assert not out.exists()


def test_potential_frames_and_label(sample_folder, tmp_path):
    frames = tmp_path / "frames.extxyz"
    assert main(["potential", "frames", str(sample_folder / "cu.cif"), "--copies", "3", "--out", str(frames)]) == 0
    labelled = tmp_path / "labelled.extxyz"
    assert main(["potential", "label", "--teacher", "emt", "--frames", str(frames), "--out", str(labelled)]) == 0
    read_back = read(labelled, index=":")
    assert len(read_back) == 3
    assert np.isfinite(read_back[0].get_potential_energy()) and read_back[0].get_forces().shape == (4, 3)
    assert read_back[0].get_stress().shape == (6,)


@pytest.fixture
def sampled_folder(tmp_path):
    """A folder as ``diffcrystal sample`` writes it: CIFs in ``cif/``, their paths in the ``cif``
    column, and a row without a structure (a sample that was no crystal)."""
    folder = tmp_path / "Cu3Au"
    (folder / "cif").mkdir(parents=True)
    write(folder / "cif" / "000000.cif", rattled(cu3au_l12(), 1))
    write(folder / "cif" / "000002.cif", rattled(bulk("Cu", "fcc", a=3.55, cubic=True), 3))
    (folder / "cif_symmetrized").mkdir()
    write(folder / "cif_symmetrized" / "000000.cif", cu3au_l12())
    with open(folder / "summary.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "formula", "valid", "invalid_reason", "cif", "symmetrized_cif"])
        writer.writerow(["000000", "Cu3Au", "True", "", "cif/000000.cif", "cif_symmetrized/000000.cif"])
        writer.writerow(["000001", "", "False", "lattice collapsed", "", ""])
        writer.writerow(["000002", "Cu", "True", "", "cif/000002.cif", ""])
    return folder


def test_relax_reads_the_cif_column_of_a_sample_folder(sampled_folder, tmp_path, capsys):
    out = tmp_path / "relaxed"
    code = main(["relax", str(sampled_folder), "--potential", "emt", "--out", str(out),
                 "--workers", "1", "--quiet"])
    assert code == 0
    rows = read_rows(out / "summary.csv")
    assert [r["id"] for r in rows] == ["000000", "000001", "000002"]
    assert list(rows[0])[:3] == ["id", "formula", "n_atoms"]  # the relaxed structure first
    assert list(rows[0])[-4:] == ["input_valid", "input_invalid_reason", "input_cif", "input_symmetrized_cif"]
    assert [r["status"] for r in rows] == ["converged", "failed", "converged"]
    assert "lattice collapsed" in rows[1]["reason"] and rows[1]["cif"] == ""
    assert all((out / r["cif"]).is_file() for r in rows if r["cif"])
    # the sample's own CIF paths still lead to the sample's files
    assert (out / rows[0]["input_cif"]).resolve() == (sampled_folder / "cif" / "000000.cif").resolve()
    assert (out / rows[0]["input_symmetrized_cif"]).resolve() == (sampled_folder / "cif_symmetrized" / "000000.cif").resolve()
    assert "relaxed 3 structures: 2 converged, 1 failed" in capsys.readouterr().out
    # the relaxed folder is itself a sample folder: rank reads it (CIFs beside its summary)
    ranked = tmp_path / "ranked"
    assert main(["rank", str(out), "--potential", "emt", "--out", str(ranked), "--workers", "1",
                 "--quiet"]) == 0
    assert {r["id"] for r in read_rows(ranked / "ranked.csv")} == {"000000", "000002"}


def test_sample_row_naming_a_missing_cif_is_a_one_line_error(sampled_folder, tmp_path, capsys):
    (sampled_folder / "cif" / "000002.cif").unlink()
    assert main(["relax", str(sampled_folder), "--potential", "emt", "--out", str(tmp_path / "o")]) == 1
    message = capsys.readouterr().err.strip()
    assert "\n" not in message and "row 4: cif/000002.cif not found" in message


def test_unconverged_structures_are_ranked_separately(sample_folder, tmp_path, capsys):
    out = tmp_path / "ranked"
    code = main(["rank", str(sample_folder), "--potential", "emt", "--out", str(out), "--steps", "2",
                 "--workers", "1", "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "2 not converged (max force up to" in printed and "1 duplicate" in printed  # 'dup' is l12's supercell
    assert "ranked 0 distinct converged" in printed
    assert read_rows(out / "ranked.csv") == []  # header only: nothing converged in 2 steps
    unconverged = read_rows(out / "ranked_unconverged.csv")
    assert len(unconverged) == 2  # l12 and its supercell 'dup' are one crystal
    assert sorted(next(r for r in unconverged if r["formula"] == "Cu3Au")["group_members"].split()) == ["dup", "l12"]
    assert all(r["converged"] == "False" and float(r["max_force_eV_A"]) > 0.02 for r in unconverged)
    assert float(unconverged[0]["energy_per_atom_eV"]) <= float(unconverged[1]["energy_per_atom_eV"])
    summary = read_rows(out / "relaxed" / "summary.csv")
    assert [r["status"] for r in summary] == ["not_converged", "duplicate", "not_converged"]
    assert all("not reached in 2 steps" in r["reason"] for r in summary if r["status"] == "not_converged")
    assert (out / "ranking.png").stat().st_size > 0


@pytest.mark.parametrize("command", ["relax", "rank"])
def test_unusable_out_fails_before_any_relaxation(command, sample_folder, tmp_path, capsys, monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("relaxation started before --out was checked")

    monkeypatch.setattr("diffcrystal.potential.rank.relax_many", must_not_run)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for out, expected in [(blocker / "out", "cannot create output folder"), (blocker, "is a file")]:
        code = main([command, str(sample_folder), "--potential", "emt", "--out", str(out), "--quiet"])
        message = capsys.readouterr().err.strip()
        assert code == 1 and "\n" not in message and expected in message
        assert message.startswith(f"diffcrystal {command}: error:")
    assert blocker.read_text() == "not a folder"


def test_unwritable_out_is_reported(sample_folder, tmp_path, capsys, monkeypatch):
    """A folder that refuses new files (as a read-only one does for non-root users)."""
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    code = main(["rank", str(sample_folder), "--potential", "emt", "--out", str(tmp_path / "x"), "--quiet"])
    message = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in message and "is not writable" in message and "Permission denied" in message
    assert not (tmp_path / "x").exists()


def test_garbage_model_file_fails_fast(sample_folder, tmp_path, capsys):
    model = tmp_path / "model.nequip.pt2"
    model.write_bytes(b"\x00not a model" * 64)
    code = main(["rank", str(sample_folder), "--potential", str(model), "--out", str(tmp_path / "o"),
                 "--quiet"])
    message = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in message and "not a compiled NequIP/Allegro model" in message
    assert str(model) in message and not (tmp_path / "o").exists()


def junk_archive(path):
    """A zip archive (as real models are) that holds no model."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("data.txt", "not a model")
    return path


def test_worker_that_cannot_load_the_potential_reports_it_once():
    """A worker whose potential fails to load keeps the error (no traceback per worker, no
    broken pool) and its first task raises it as one line."""
    from diffcrystal.errors import InputError
    from diffcrystal.potential.relax import _WORKER

    try:
        _init_worker(Potential("no-such-potential"), 1)
        with pytest.raises(InputError) as error:
            _relax_in_worker(0, "x", cu3au_l12(), RelaxSettings(), None)
    finally:
        _WORKER.clear()
    assert "unknown potential 'no-such-potential'" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.slow  # each worker imports nequip (~25 s on a busy 2-core machine)
def test_model_that_does_not_load_fails_with_one_line_and_nonzero_exit(sample_folder, tmp_path, capfd):
    model = junk_archive(tmp_path / "junk.nequip.pt2")
    code = main(["relax", str(sample_folder), "--potential", str(model), "--out", str(tmp_path / "o"),
                 "--workers", "2", "--quiet"])
    captured = capfd.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("diffcrystal")]
    assert code == 1 and len(errors) == 1
    assert "cannot load as a compiled NequIP/Allegro model" in errors[0] and str(model) in errors[0]
    assert "Traceback" not in captured.err and "worker died" not in captured.err + captured.out
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("potential", ["sevennet-0", "model"])
def test_missing_potential_package_names_the_extra(potential, sample_folder, tmp_path, capsys, monkeypatch):
    package = "sevenn" if potential == "sevennet-0" else "nequip"
    if potential == "model":
        potential = str(junk_archive(tmp_path / "m.nequip.pt2"))
    monkeypatch.setitem(sys.modules, package, None)  # as if not installed: find_spec gives None
    code = main(["relax", str(sample_folder), "--potential", potential, "--out", str(tmp_path / "o"),
                 "--workers", "2", "--quiet"])
    message = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in message
    assert f"needs the package {package}" in message and 'pip install "diffcrystal[potential]"' in message
