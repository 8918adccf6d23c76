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
    assert float(salt["min_distance_A"]) == pytest.approx(2.82, abs=1e-3)
    assert float(salt["volume_per_atom_A3"]) == pytest.approx(5.64**3 / 8, rel=1e-4)
    assert float(salt["density_g_cm3"]) == pytest.approx(2.16, abs=0.02)  # NaCl, 2.16 g/cm3
    assert (tmp_path / "out" / salt["cif"]).is_file() and (tmp_path / "out" / salt["symmetrized_cif"]).is_file()
    assert bad["valid"] == "False" and "apart" in bad["invalid_reason"]
    assert failed["valid"] == "False" and failed["cif"] == "" and "degenerate" in failed["invalid_reason"]
    from ase.io import read

    frames = read(tmp_path / "out" / "samples.extxyz", index=":")
    assert [f.info["id"] for f in frames] == ["a", "b"]


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
