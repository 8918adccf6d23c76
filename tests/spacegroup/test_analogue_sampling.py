"""`diffcrystal sample --analogues`: sampling on the groups of a composition's nearest chemical
analogues, from a table file and from the table shipped with the default model."""

from __future__ import annotations

import csv
import gzip
import json

import numpy as np
import pytest

from diffcrystal.analogues import AnalogueLibrary
from diffcrystal.cli.main import main
from diffcrystal.data.crystal import Crystal
from diffcrystal.errors import InputError
from diffcrystal.symmetry import SYMPREC_TIGHT

NA, CL, CS = 11, 17, 55
STEPS = "10"


def rock_salt(a: float = 5.64) -> Crystal:
    fcc = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    return Crystal(np.eye(3) * a, np.vstack([fcc, fcc + [0.5, 0, 0]]), [NA] * 4 + [CL] * 4, label="rocksalt-NaCl")


def caesium_chloride() -> Crystal:
    return Crystal(np.eye(3) * 4.1, [[0, 0, 0], [0.5, 0.5, 0.5]], [CS, CL], label="B2-CsCl",
                   properties={"e_above_hull": 0.0})


@pytest.fixture
def table(tmp_path):
    library = AnalogueLibrary.from_crystals([caesium_chloride(), rock_salt()])
    return library.write_table(tmp_path / "table.json.gz", source="two hand-made crystals", progress=False)


def test_table_round_trip_keeps_order_distances_and_assignments(table):
    from_crystals = AnalogueLibrary.from_crystals([caesium_chloride(), rock_salt()])
    from_table = AnalogueLibrary.from_table(table)
    for composition in ({19: 1, 35: 1}, {NA: 2, CL: 2}):
        expected = from_crystals.analogues(composition)
        found = from_table.analogues(composition)
        assert [a.template.label for a in found] == [a.template.label for a in expected]
        assert [a.distance for a in found] == [a.distance for a in expected]
        assert [a.assignment() for a in found] == [a.assignment() for a in expected]
    for composition in ({19: 1, 35: 1}, {NA: 2, CL: 2}):  # geometry survives the round trip (1e-6 Å)
        expected = from_crystals.analogues(composition)[0].substituted()
        found = from_table.analogues(composition)[0].substituted()
        assert np.allclose(found.lattice, expected.lattice, atol=1e-6)
        assert np.allclose(found.frac_coords, expected.frac_coords, atol=1e-6)
        assert found.atomic_numbers.tolist() == expected.atomic_numbers.tolist()


def test_assignment_only_table_has_no_geometry(tmp_path):
    """A format-1 table (assignments only) still reads; its templates cannot be substituted."""
    payload = {"format": "diffcrystal-analogue-table-1", "source": "hand-made", "templates": [
        ["nacl", [[NA, 1], [CL, 1]], 2, 0.0, 225, [[NA, "4a"], [CL, "4b"]]]]}
    path = tmp_path / "old.json.gz"
    path.write_bytes(gzip.compress(json.dumps(payload).encode()))
    library = AnalogueLibrary.from_table(path)
    assert not library.has_geometry
    assert library.analogues({19: 1, 35: 1})[0].assignment().spacegroup == 225
    with pytest.raises(InputError, match="without geometry"):
        library.analogues({19: 1, 35: 1})[0].substituted()
    with pytest.raises(InputError, match="no geometry to write"):
        library.write_table(tmp_path / "again.json.gz", source="x", progress=False)


@pytest.mark.parametrize("content, message", [
    (b"not gzip", "BadGzipFile"),
    (gzip.compress(b'{"format": "other"}'), "format 'other'"),
    (gzip.compress(b'{"format": "diffcrystal-analogue-table-1", "templates": [[1, 2]]}'), "ValueError"),
])
def test_corrupt_table_is_a_one_line_error(tmp_path, content, message):
    path = tmp_path / "bad.json.gz"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as error:
        AnalogueLibrary.from_table(path)
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_samples_cycle_over_the_analogues_groups_nearest_first(tmp_path, table, capsys):
    from pymatgen.io.cif import CifParser

    out = tmp_path / "kbr"
    assert main(["sample", "--composition", "KBr", "--analogues", str(table), "--checkpoint", "mp20_csp",
                 "--n", "4", "--steps", STEPS, "--out", str(out), "--quiet"]) == 0
    record = json.loads((out / "run.json").read_text())
    # K (Mendeleev 10) is nearer to Na (11) than to Cs (8): rock salt first, B2 second
    assert [a["template"] for a in record["analogues"]] == ["rocksalt-NaCl", "B2-CsCl"]
    assert [a["mendeleev_distance"] for a in record["analogues"]] == [pytest.approx(1.0), pytest.approx(1.5)]
    with open(out / "summary.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [r["requested_spacegroup"] for r in rows] == ["225", "221", "225", "221"]
    for row in rows:
        structure = CifParser(out / row["cif"]).parse_structures(primitive=False)[0]
        assert structure.get_space_group_info(symprec=SYMPREC_TIGHT)[1] == int(row["requested_spacegroup"])
        assert sorted({site.specie.symbol for site in structure}) == ["Br", "K"]
    printed = capsys.readouterr().out
    assert "rocksalt-NaCl" in printed and "requested space group Fm-3m (225): spglib finds it at 0.01 Å in 2/2" in printed


@pytest.mark.parametrize("arguments, message", [
    (["--composition", "NaCl3"], "no analogue of NaCl3: the table holds no AB3 compound"),
    (["--composition", "NaCl", "--spacegroup", "225"], "--analogues needs --composition and no --spacegroup"),
    ([], "--analogues needs --composition and no --spacegroup"),
])
def test_bad_analogue_requests_are_one_line_and_write_nothing(tmp_path, table, capsys, arguments, message):
    out = tmp_path / "never"
    assert main(["sample", "--analogues", str(table), "--n", "2", "--steps", "2", "--out", str(out), "--quiet",
                 *arguments]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_a_distance_cutoff_keeps_only_the_near_analogues(tmp_path, table):
    out = tmp_path / "kbr"
    assert main(["sample", "--composition", "KBr", "--analogues", str(table), "--max-analogue-distance", "1.2",
                 "--checkpoint", "mp20_csp", "--n", "3", "--steps", "2", "--out", str(out), "--quiet"]) == 0
    record = json.loads((out / "run.json").read_text())
    assert [a["template"] for a in record["analogues"]] == ["rocksalt-NaCl"]  # CsCl is at 1.5
    with open(out / "summary.csv", newline="") as stream:
        assert [r["requested_spacegroup"] for r in csv.DictReader(stream)] == ["225"] * 3


@pytest.mark.parametrize("arguments, message", [
    (["--analogues", "TABLE", "--max-analogue-distance", "0.5"],
     "no analogue of KBr within Mendeleev distance 0.5: the nearest, rocksalt-NaCl, is at 1"),
    (["--max-analogue-distance", "2"], "--max-analogue-distance needs --analogues and a distance >= 0, got 2.0"),
    (["--analogues", "TABLE", "--max-analogue-distance", "nan"], "a distance >= 0, got nan"),
])
def test_bad_distance_cutoffs_are_one_line_and_write_nothing(tmp_path, table, capsys, arguments, message):
    out = tmp_path / "never"
    arguments = [str(table) if a == "TABLE" else a for a in arguments]
    assert main(["sample", "--composition", "KBr", "--checkpoint", "mp20_csp", "--n", "2", "--steps", "2",
                 "--out", str(out), "--quiet", *arguments]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_default_model_ships_a_table_whose_nearest_nacl_analogue_is_rock_salt(tmp_path):
    out = tmp_path / "nacl"
    assert main(["sample", "--composition", "NaCl", "--analogues", "--n", "1", "--steps", "2",
                 "--out", str(out), "--quiet"]) == 0
    (first,) = json.loads((out / "run.json").read_text())["analogues"]
    assert (first["formula"], first["spacegroup"], first["mendeleev_distance"]) == ("NaCl", 225, 0)


@pytest.mark.parametrize("damage, message", [("edit", "corrupt bundled analogue table"),
                                             ("delete", "bundled analogue table missing")])
def test_a_damaged_bundled_table_is_refused(tmp_path, table, damage, message):
    from diffcrystal.checkpoint import CheckpointError, bundled_analogue_table, file_sha256

    shipped = tmp_path / "bundle"
    shipped.mkdir()
    (shipped / "model.safetensors").write_bytes(b"weights")
    copy = shipped / "table.json.gz"
    copy.write_bytes(table.read_bytes())
    manifest = {"defaults": {}, "models": {"model": {"file": "model.safetensors", "sha256": "-", "mode": "csp",
                                                     "analogues": {"file": copy.name, "sha256": file_sha256(copy)}}}}
    (shipped / "manifest.json").write_text(json.dumps(manifest))
    assert bundled_analogue_table(shipped / "model.safetensors", shipped) == copy
    if damage == "edit":
        copy.write_bytes(copy.read_bytes() + b"\0")
    else:
        copy.unlink()
    with pytest.raises(CheckpointError, match=message):
        bundled_analogue_table(shipped / "model.safetensors", shipped)


def test_far_analogues_are_left_out_by_default(tmp_path, table, capsys):
    """The default cutoff (DEFAULT_MAX_ANALOGUE_DISTANCE) refuses analogues an MP-20 target
    would hardly ever share its structure with; 'inf' takes them anyway."""
    from diffcrystal.analogues import DEFAULT_MAX_ANALOGUE_DISTANCE

    nearest = AnalogueLibrary.from_table(table).analogues({6: 1, 8: 1})[0]  # CO against NaCl / CsCl
    assert nearest.distance > DEFAULT_MAX_ANALOGUE_DISTANCE
    common = ["sample", "--composition", "CO", "--analogues", str(table), "--checkpoint", "mp20_csp",
              "--n", "2", "--steps", "2", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "never")]) == 1
    err = capsys.readouterr().err
    assert f"within Mendeleev distance {DEFAULT_MAX_ANALOGUE_DISTANCE:g}" in err and err.count("\n") == 1
    assert not (tmp_path / "never").exists()
    assert main([*common, "--max-analogue-distance", "inf", "--out", str(tmp_path / "co")]) == 0
    record = json.loads((tmp_path / "co" / "run.json").read_text())
    assert record["analogues"][0]["mendeleev_distance"] == pytest.approx(nearest.distance, abs=1e-4)
