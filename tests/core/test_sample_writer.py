"""Streaming sample output: files, summary columns and types, resume safety."""

import csv
import os

import numpy as np
import pytest

from diffcrystal.data.crystal import Crystal, CrystalError
from diffcrystal.errors import InputError
from diffcrystal.sample_writer import SUMMARY_COLUMNS, SampleWriter


def rocksalt() -> Crystal:
    frac = [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5],
            [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5], [0.5, 0.5, 0.5]]
    return Crystal(np.eye(3) * 5.64, frac, [11] * 4 + [17] * 4)


def overlapping() -> Crystal:
    return Crystal(np.diag([4.0, 4.5, 5.0]), [[0.1, 0.2, 0.3], [0.12, 0.2, 0.3]], [6, 6])


def read_summary(path):
    with open(path / "summary.csv", newline="") as stream:
        return list(csv.DictReader(stream))


def test_batch_files_and_columns(tmp_path):
    writer = SampleWriter(tmp_path / "out")
    writer.write_batch([rocksalt(), overlapping(), CrystalError("degenerate lattice")], ["a", "b", "c"])
    rows = read_summary(tmp_path / "out")
    assert tuple(rows[0]) == SUMMARY_COLUMNS
    salt, bad, failed = rows
    assert salt["spacegroup_number"] == "225" and salt["spacegroup_symbol"] == "Fm-3m"
    assert salt["crystal_system"] == "cubic" and salt["valid"] == "True"
    assert (salt["structure_valid"], salt["density_plausible"], salt["charge_neutral"]) == ("True",) * 3
    assert float(salt["min_distance_A"]) == pytest.approx(2.82, abs=1e-3)
    assert float(salt["volume_per_atom_A3"]) == pytest.approx(5.64**3 / 8, rel=1e-4)
    assert float(salt["density_g_cm3"]) == pytest.approx(2.16, abs=0.02)  # NaCl, 2.16 g/cm3
    assert (tmp_path / "out" / salt["cif"]).is_file() and (tmp_path / "out" / salt["symmetrized_cif"]).is_file()
    assert bad["valid"] == "False" and bad["structure_valid"] == "False" and "apart" in bad["invalid_reason"]
    assert failed["valid"] == "False" and failed["cif"] == "" and "degenerate" in failed["invalid_reason"]
    from ase.io import read

    frames = read(tmp_path / "out" / "samples.extxyz", index=":")
    assert [f.info["id"] for f in frames] == ["a", "b"]


def test_extxyz_frames_are_in_the_orientation_their_cif_reads_back_in(tmp_path):
    from ase.io import read
    from pymatgen.io.cif import CifParser
    from scipy.spatial.transform import Rotation

    crystal = rocksalt()
    rotation = Rotation.from_euler("zyx", [30, 50, 70], degrees=True).as_matrix()
    rotated = Crystal(crystal.lattice @ np.diag([1.0, 1.1, 1.2]) @ rotation.T, crystal.frac_coords,
                      crystal.atomic_numbers)  # a sampler's arbitrary frame: L -> L R^T
    SampleWriter(tmp_path).write_batch([rotated], ["x"])
    (frame,) = read(tmp_path / "samples.extxyz", index=":")
    (row,) = read_summary(tmp_path)
    cif = CifParser(tmp_path / row["cif"]).parse_structures(primitive=False)[0]
    assert np.allclose(frame.cell.array, cif.lattice.matrix, atol=1e-5)
    assert np.allclose(frame.cell.array[2, :2], 0.0) and np.isclose(frame.cell.array[0, 1], 0.0)  # c along z, a in xz
    assert np.allclose(frame.get_scaled_positions(), rotated.frac_coords, atol=1e-6)
    assert np.allclose(frame.cell.cellpar(), Crystal.to_atoms(rotated).cell.cellpar())


def test_existing_run_is_not_overwritten(tmp_path):
    SampleWriter(tmp_path).write_batch([rocksalt()], ["000000"])
    with pytest.raises(InputError, match="--resume"):
        SampleWriter(tmp_path)
    assert len(read_summary(tmp_path)) == 1


def test_resume_drops_partial_line(tmp_path):
    SampleWriter(tmp_path).write_batch([rocksalt(), rocksalt()], ["000000", "000001"])
    with open(tmp_path / "summary.csv", "a") as stream:
        stream.write("000002,NaCl,8,Fm-3")  # an append cut by an interrupt
    resumed = SampleWriter(tmp_path, resume=True)
    assert resumed.num_done == 2
    assert [r["id"] for r in read_summary(tmp_path)] == ["000000", "000001"]


def test_no_temporary_files_left(tmp_path):
    SampleWriter(tmp_path).write_batch([rocksalt()], ["x"])
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_folder_is_a_clear_error(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(InputError, match="cannot create|not writable"):
        SampleWriter(locked / "out")


def test_output_path_that_is_a_file_is_a_clear_error(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(InputError, match="cannot create output folder"):
        SampleWriter(target)


def test_checks_are_separate_columns_and_valid_uses_the_chosen_ones(tmp_path):
    dense_si = Crystal(np.eye(3) * 5.431 / 3 ** (1 / 3), [[0, 0, 0], [0.25, 0.25, 0.25], [0.5, 0.5, 0],
                       [0.75, 0.75, 0.25], [0.5, 0, 0.5], [0.75, 0.25, 0.75], [0, 0.5, 0.5], [0.25, 0.75, 0.75]], [14] * 8)
    nacl2 = Crystal(np.eye(3) * 5.64, [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0]], [11, 17, 17])  # not charge neutral
    SampleWriter(tmp_path / "all").write_batch([dense_si, nacl2], ["si", "nacl2"], [3, 1])
    si, salt = read_summary(tmp_path / "all")
    assert (si["structure_valid"], si["density_plausible"], si["valid"]) == ("True", "False", "False")
    assert "too dense" in si["invalid_reason"] and si["formula_units"] == "3"
    assert (salt["structure_valid"], salt["density_plausible"], salt["charge_neutral"]) == ("True", "True", "False")
    assert salt["valid"] == "False" and "not charge neutral" in salt["invalid_reason"]
    SampleWriter(tmp_path / "csp", validity_checks=("structure", "density")).write_batch([nacl2], ["nacl2"])
    (row,) = read_summary(tmp_path / "csp")
    assert row["charge_neutral"] == "False" and row["valid"] == "True" and row["invalid_reason"] == ""
    with pytest.raises(ValueError, match="unknown validity checks"):
        SampleWriter(tmp_path / "x", validity_checks=("structure", "charm"))


def distorted_perovskite_with_merged_atoms() -> Crystal:
    """SrTiO3 with an O atom 0.1 Å from Sr: invalid, yet spglib finds symmetry at 0.1 Å."""
    frac = [[0.99, 0.0052, 0.9978], [0.4953, 0.4916, 0.4997], [0.4994, 0.496, 0.9861],
            [0.4829, 0.0013, 0.5018], [0.9882, 0.0075, 0.9849]]
    return Crystal(np.eye(3) * 3.9, frac, [38, 22, 8, 8, 8])


def test_symmetrised_cif_only_for_valid_structures(tmp_path):
    from diffcrystal.symmetry import space_group

    crystal = distorted_perovskite_with_merged_atoms()
    assert space_group(crystal).number > 1
    SampleWriter(tmp_path).write_batch([crystal], ["x"])
    (row,) = read_summary(tmp_path)
    assert row["valid"] == "False" and row["symmetrized_cif"] == "" and row["cif"]
    assert not (tmp_path / "cif_symmetrized").exists()


def pm_lico_no2() -> Crystal:
    """A symmetrised Pm LiCoNO2 sample whose CIF written at symprec 0.1 Å by pymatgen expands
    to 9 atoms when read back (seen in a de novo run)."""
    from pymatgen.core import Lattice

    lattice = Lattice.from_parameters(3.69634422, 3.73951274, 3.77971552, 90, 90.93451872, 90).matrix
    frac = [[0.85043359, 0.5, 0.18353003], [0.36183354, 0, 0.23655127], [0.85977542, 0, 0.72637945],
            [0.87366545, 0.5, 0.85758454], [0.36349014, 0, 0.68777126]]
    return Crystal(lattice, frac, [27, 8, 8, 7, 3])


def test_cif_that_does_not_read_back_is_reported_not_written(tmp_path, monkeypatch):
    from pymatgen.io.cif import CifWriter

    from diffcrystal import sample_writer
    from diffcrystal.sample_writer import cif_reading_problem

    structure = pm_lico_no2().to_structure()
    assert "reads back as" in cif_reading_problem(str(CifWriter(structure, symprec=0.1)), structure)
    assert cif_reading_problem(str(CifWriter(structure, symprec=1e-3)), structure) == ""
    assert "does not parse" in cif_reading_problem("data_x\n_cell_length_a 3\n", structure)

    SampleWriter(tmp_path / "ok").write_batch([pm_lico_no2()], ["x"])
    (row,) = read_summary(tmp_path / "ok")
    assert row["symmetrized_cif"] and row["cif_problem"] == ""
    monkeypatch.setattr(sample_writer, "SYMMETRIZED_CIF_SYMPREC_A", 0.1)  # the tolerance that broke it
    SampleWriter(tmp_path / "bad").write_batch([pm_lico_no2()], ["x"])
    (row,) = read_summary(tmp_path / "bad")
    assert row["symmetrized_cif"] == "" and "symmetrised CIF reads back as" in row["cif_problem"]
    assert row["cif"] and not (tmp_path / "bad" / "cif_symmetrized").exists()


def test_noble_gas_sample_prints_no_pymatgen_warning(tmp_path):
    """pymatgen warns once per process about noble gases; run in a fresh interpreter."""
    import subprocess
    import sys

    script = (
        "import numpy as np, warnings; warnings.simplefilter('always');"
        "from diffcrystal.data.crystal import Crystal; from diffcrystal.sample_writer import SampleWriter;"
        f"SampleWriter({str(tmp_path / 'out')!r}).write_batch([Crystal(np.eye(3) * 5.0, [[0, 0, 0]], [18])], ['ar'])"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert read_summary(tmp_path / "out")[0]["formula"] == "Ar"
    bare = subprocess.run([sys.executable, "-c", "from pymatgen.core import Composition; Composition('Ar').reduced_formula"],
                          capture_output=True, text=True, timeout=300)
    assert "No Pauling electronegativity" in bare.stderr  # what the writer keeps off the terminal
