"""Reading every format, reporting bad entries, caching."""

import logging

import ase.db
import ase.io
import numpy as np
import pandas as pd
import pytest
from ase import Atoms
from pymatgen.core import Lattice, Structure

from diffcrystal.data import cache as cache_store
from diffcrystal.data.crystal import Crystal
from diffcrystal.data.readers import detect_format, read_crystals
from diffcrystal.errors import InputError

CUBIC_A = 4.0
"""Edge of the small cubic test cells, Å."""


def rocksalt() -> Structure:
    """Conventional (8-atom) rock-salt NaCl cell, a = 5.64 Å."""
    fcc = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
    return Structure(Lattice.cubic(5.64), ["Na"] * 4 + ["Cl"] * 4, np.vstack([fcc, (fcc + 0.5) % 1.0]))


def cscl() -> Structure:
    return Structure(Lattice.cubic(CUBIC_A), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def good_cif() -> str:
    return cscl().to(fmt="cif")


def bad_cifs() -> dict[str, str]:
    """Named malformed CIF strings, each built from a good one."""
    cif = good_cif()
    disordered = Structure(Lattice.cubic(CUBIC_A), [{"Cs": 0.6, "K": 0.4}, "Cl"],
                           [[0, 0, 0], [0.5, 0.5, 0.5]])
    return {
        "garbage": "this is not\na CIF",
        "zero_volume": cif.replace(f"_cell_length_a   {CUBIC_A:.8f}", "_cell_length_a   0.00000000"),
        "nan_coordinate": cif.replace("0.50000000  0.50000000  0.50000000", "nan  0.5  0.5"),
        "unknown_element": cif.replace("  Cs  Cs0", "  Xx  Xx0"),
        "disordered": disordered.to(fmt="cif"),
    }


def read(path, **kwargs):
    kwargs.setdefault("cache", False)
    kwargs.setdefault("workers", 1)
    kwargs.setdefault("progress", False)
    return read_crystals(path, **kwargs)


def write_csv(path, cifs, ids=None, extra=None):
    table = pd.DataFrame({"material_id": ids or [f"m{i}" for i in range(len(cifs))], "cif": cifs})
    for name, values in (extra or {}).items():
        table[name] = values
    table.to_csv(path)  # with an unnamed index column, as CDVAE's files
    return path


def test_bad_cifs_really_are_bad():
    cases = bad_cifs()
    assert "0.00000000" in cases["zero_volume"] and "nan" in cases["nan_coordinate"]
    assert "Xx" in cases["unknown_element"]


def test_csv_properties_and_labels(tmp_path):
    path = write_csv(tmp_path / "good.csv", [good_cif(), good_cif()],
                     extra={"energy": [1.5, np.nan], "formula": ["CsCl", "CsCl"], "n": [3, 4]})
    result = read(path)
    assert [c.label for c in result.crystals] == ["m0", "m1"]
    assert result.crystals[0].properties == {"energy": 1.5, "n": 3}
    assert result.crystals[1].properties == {"n": 4}  # missing values left out
    assert result.skipped == [] and not result.from_cache


def test_gzipped_csv_reads_as_the_csv(tmp_path):
    import gzip

    plain = write_csv(tmp_path / "good.csv", [good_cif(), good_cif()], extra={"energy": [1.5, 2.5]})
    packed = tmp_path / "good.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    expected, found = read(plain), read(packed)
    assert [c.label for c in found.crystals] == [c.label for c in expected.crystals]
    assert [c.properties for c in found.crystals] == [c.properties for c in expected.crystals]
    for a, b in zip(found.crystals, expected.crystals):
        np.testing.assert_array_equal(a.lattice, b.lattice)
        np.testing.assert_array_equal(a.frac_coords, b.frac_coords)
    with pytest.raises(InputError, match="cannot tell the format"):
        (tmp_path / "good.json.gz").write_bytes(b"")
        read(tmp_path / "good.json.gz")


def test_csv_multiline_quoted_cif(tmp_path):
    """A CIF cell holding a comma and quotes survives the CSV round trip."""
    cif = good_cif().replace("data_CsCl", "data_CsCl\n# a comment, with \"quotes\"")
    result = read(write_csv(tmp_path / "q.csv", [cif]))
    assert len(result.crystals) == 1


def test_csv_bad_rows_are_reported(tmp_path, caplog):
    cases = bad_cifs()
    cifs = [good_cif(), *cases.values(), None]
    path = write_csv(tmp_path / "mixed.csv", cifs)
    with caplog.at_level(logging.WARNING):
        result = read(path)
    assert len(result.crystals) == 1
    sources = [entry.source for entry in result.skipped]
    assert sources == [f"mixed.csv row {i} (material_id m{i})" for i in range(1, len(cifs))]
    reasons = {name: entry.reason for name, entry in zip([*cases, "missing"], result.skipped)}
    assert "Singular matrix" in reasons["zero_volume"] or "volume" in reasons["zero_volume"]
    assert "NaN" in reasons["nan_coordinate"]
    assert "unknown element 'Xx'" in reasons["unknown_element"]
    assert "partial occupancy" in reasons["disordered"]
    assert "empty CIF" in reasons["missing"]
    assert all("\n" not in reason for reason in reasons.values())
    assert not any("deprecated" in reason for reason in reasons.values())  # pymatgen's, not the data's
    assert "skipped 6 of 7 entries" in caplog.text


def test_order_disorder(tmp_path):
    path = write_csv(tmp_path / "d.csv", [bad_cifs()["disordered"]])
    with pytest.raises(InputError, match="partial occupancy"):
        read(path)
    (crystal,) = read(path, order_disorder=True).crystals
    assert crystal.formula == "CsCl"


def test_all_bad_raises(tmp_path):
    path = write_csv(tmp_path / "bad.csv", [bad_cifs()["garbage"]] * 2)
    with pytest.raises(InputError, match="none of the 2 entries could be read"):
        read(path)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("nocif.csv", "a,b\n1,2\n", "no 'cif' column"),
        ("empty.csv", "", "cannot read as CSV"),
        ("table.txt", "x", "cannot tell the format"),
    ],
)
def test_unreadable_files(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        read(path)


def test_missing_path(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read(tmp_path / "absent.csv")


def test_cif_folder(tmp_path):
    folder = tmp_path / "cifs"
    folder.mkdir()
    (folder / "a_good.cif").write_text(good_cif())
    (folder / "b_empty.cif").write_text("")
    (folder / "c_garbage.cif").write_text(bad_cifs()["garbage"])
    (folder / "d_disordered.cif").write_text(bad_cifs()["disordered"])
    (folder / "notes.txt").write_text("ignored")
    assert detect_format(folder) == "cif_dir"
    result = read(folder)
    assert [c.label for c in result.crystals] == ["a_good"]
    assert {e.source: e.reason.split(" (")[0] for e in result.skipped} == {
        "b_empty.cif": "empty file",
        "c_garbage.cif": "Invalid CIF file with no structures!",
        "d_disordered.cif": "partial occupancy",
    }
    assert len(read(folder, order_disorder=True).crystals) == 2
    single = read(folder / "a_good.cif")
    assert len(single.crystals) == 1


def test_empty_folder(tmp_path):
    with pytest.raises(InputError, match="holds no .cif files"):
        read(tmp_path)


def test_canonical_option(tmp_path):
    conventional = rocksalt()
    path = write_csv(tmp_path / "nacl.csv", [conventional.to(fmt="cif")])
    assert read(path).crystals[0].num_atoms == 2
    kept = read(path, canonical=False).crystals[0]
    assert kept.num_atoms == 8
    np.testing.assert_allclose(kept.lattice, conventional.lattice.matrix, atol=1e-6)


def test_extxyz(tmp_path):
    good = cscl()
    frames = [Crystal.from_structure(good).to_atoms() for _ in range(2)]
    frames[0].info["energy_ref"] = -3.5
    frames[1].info["material_id"] = "frame-id"
    molecule = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
    path = tmp_path / "frames.extxyz"
    ase.io.write(path, [frames[0], molecule, frames[1]], format="extxyz")
    text = path.read_text()
    broken = "2\nLattice=\"4 0 0 0 4 0 0 0 4\" Properties=species:S:1:pos:R:3 pbc=\"T T T\"\nCs 0 0 0\nCl 2 2 x\n"
    path.write_text(text + broken + "3\ntruncated\nCs 0 0 0\n")
    result = read(path)
    assert len(result.crystals) == 2
    assert result.crystals[0].properties == {"energy_ref": -3.5}
    assert [c.label for c in result.crystals] == ["frames.extxyz frame 0", "frame-id"]
    sources = [entry.source.split(" (")[0] for entry in result.skipped]
    assert sources == ["frames.extxyz frame 1", "frames.extxyz frame 3", "frames.extxyz frame 4"]
    assert "not periodic" in result.skipped[0].reason
    assert "truncated frame" in result.skipped[2].reason


def test_ase_db(tmp_path):
    path = tmp_path / "structures.db"
    with ase.db.connect(str(path)) as database:
        database.write(Crystal.from_structure(cscl()).to_atoms(), material_id="db-1", gap=1.25)
        database.write(Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]]))
    result = read(path)
    (crystal,) = result.crystals
    assert crystal.label == "db-1" and crystal.properties == {"gap": 1.25}
    assert result.skipped[0].source == "structures.db id 2"


def test_workers_give_the_same_result(tmp_path):
    path = write_csv(tmp_path / "many.csv", [good_cif()] * 70 + [bad_cifs()["garbage"]])
    serial = read(path, workers=1)
    parallel = read(path, workers=2)
    assert [c.label for c in parallel.crystals] == [c.label for c in serial.crystals]
    assert parallel.skipped == serial.skipped


def test_cache_hit_and_invalidation(tmp_path):
    cache_dir = tmp_path / "cache"
    path = write_csv(tmp_path / "data.csv", [good_cif(), bad_cifs()["garbage"]],
                     extra={"energy": [1.0, 2.0]})
    first = read(path, cache=True, cache_dir=cache_dir)
    second = read(path, cache=True, cache_dir=cache_dir)
    assert not first.from_cache and second.from_cache
    assert second.skipped == first.skipped
    for a, b in zip(first.crystals, second.crystals):
        np.testing.assert_array_equal(a.lattice, b.lattice)
        np.testing.assert_array_equal(a.frac_coords, b.frac_coords)
        np.testing.assert_array_equal(a.atomic_numbers, b.atomic_numbers)
        assert (a.label, a.properties) == (b.label, b.properties)
    # other options, other entry
    assert not read(path, cache=True, cache_dir=cache_dir, canonical=False).from_cache
    # changed source: re-parsed, never stale
    write_csv(path, [good_cif()] * 3)
    third = read(path, cache=True, cache_dir=cache_dir)
    assert not third.from_cache and len(third.crystals) == 3 and not third.skipped
    assert read(path, cache=True, cache_dir=cache_dir).from_cache


def test_cache_files_are_pickle_free_and_atomic(tmp_path):
    cache_dir = tmp_path / "cache"
    path = write_csv(tmp_path / "data.csv", [good_cif()])
    read(path, cache=True, cache_dir=cache_dir)
    (entry,) = cache_dir.iterdir()  # no temporary files left behind
    assert entry.suffix == ".npz" and entry.name.startswith("data.csv-")
    with np.load(entry, allow_pickle=False) as archive:
        assert archive["lattices"].shape == (1, 3, 3)


def test_damaged_cache_is_a_miss(tmp_path, caplog):
    cache_dir = tmp_path / "cache"
    path = write_csv(tmp_path / "data.csv", [good_cif()])
    read(path, cache=True, cache_dir=cache_dir)
    (entry,) = cache_dir.iterdir()
    entry.write_bytes(b"not a zip file")
    with caplog.at_level(logging.WARNING):
        again = read(path, cache=True, cache_dir=cache_dir)
    assert not again.from_cache and "unreadable cache file" in caplog.text
    assert read(path, cache=True, cache_dir=cache_dir).from_cache


def test_cache_folder_changes_with_the_folder_content(tmp_path):
    folder = tmp_path / "cifs"
    folder.mkdir()
    (folder / "a.cif").write_text(good_cif())
    files = [(f.name, f) for f in sorted(folder.iterdir())]
    options = {"canonical": True}
    key = cache_store.cache_key(files, options)
    (folder / "a.cif").rename(folder / "b.cif")
    renamed = [(f.name, f) for f in sorted(folder.iterdir())]
    assert cache_store.cache_key(renamed, options) != key
    assert cache_store.cache_key(renamed, {"canonical": False}) != cache_store.cache_key(renamed, options)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv(cache_store.CACHE_ENV_VAR, str(tmp_path))
    assert cache_store.default_cache_dir() == tmp_path
    monkeypatch.delenv(cache_store.CACHE_ENV_VAR)
    assert cache_store.default_cache_dir() == cache_store.DEFAULT_CACHE_DIR.expanduser()


def test_package_exports():
    import diffcrystal.data as data

    for name in data.__all__:
        assert getattr(data, name) is not None
    with pytest.raises(AttributeError):
        data.no_such_name


def test_atoms_closer_than_the_validity_bound_are_skipped_with_row_and_reason(tmp_path):
    """A cell with c = 0.01 Å (each atom 0.01 Å from its own image, volume 0.25 Å³ passes the
    volume check), a sheared cell whose short lattice vector hides in a combination of two
    long ones, and two atoms 0.2 Å apart are reported and skipped, in every format."""
    flat = Structure(Lattice.orthorhombic(5.0, 5.0, 0.01), ["Cu"], [[0, 0, 0]])
    sheared = Structure(Lattice([[5, 0, 0], [4.9, 0.3, 0], [0, 0, 5]]), ["Cu"], [[0, 0, 0]])
    overlapping = Structure(Lattice.cubic(CUBIC_A), ["Na", "Cl"], [[0, 0, 0], [0.05, 0, 0]])
    path = write_csv(tmp_path / "close.csv", [good_cif()] + [s.to(fmt="cif") for s in (flat, sheared, overlapping)])
    result = read(path)
    assert [c.label for c in result.crystals] == ["m0"]
    assert [str(entry) for entry in result.skipped] == [
        "close.csv row 1 (material_id m1): atoms too close to their own periodic image: 0.01 Å "
        "(a lattice vector shorter than the minimum interatomic distance 0.5 Å)",
        "close.csv row 2 (material_id m2): atoms too close to their own periodic image: 0.316 Å "
        "(a lattice vector shorter than the minimum interatomic distance 0.5 Å)",
        "close.csv row 3 (material_id m3): atoms too close: atom 0 (Na) and atom 1 (Cl) 0.2 Å "
        "apart (minimum interatomic distance 0.5 Å)",
    ]
    frames = tmp_path / "close.extxyz"
    ase.io.write(frames, [Crystal.from_structure(s).to_atoms() for s in (cscl(), flat)], format="extxyz")
    (skipped,) = read(frames).skipped
    assert skipped.source.startswith("close.extxyz frame 1") and "own periodic image: 0.01 Å" in skipped.reason


def test_atoms_at_the_bound_are_kept(tmp_path):
    """The bound is strict: a 1-atom cubic cell of edge 0.6 Å and atoms 0.55 Å apart stay."""
    tiny = Structure(Lattice.cubic(0.6), ["H"], [[0, 0, 0]])
    pair = Structure(Lattice.cubic(5.0), ["H", "H"], [[0, 0, 0], [0.11, 0, 0]])
    result = read(write_csv(tmp_path / "ok.csv", [tiny.to(fmt="cif"), pair.to(fmt="cif")]))
    assert len(result.crystals) == 2 and result.skipped == []


def test_ids_read_back_as_written(tmp_path):
    """Sample ids that ``diffcrystal sample`` writes into samples.extxyz (SampleWriter, ids
    like 000000) and material ids with leading zeros in a CSV come back as the same strings."""
    from diffcrystal.sample_writer import EXTXYZ_NAME, SampleWriter

    crystals = [Crystal.from_structure(cscl()), Crystal.from_structure(rocksalt())]
    SampleWriter(tmp_path / "samples").write_batch(crystals, ["000000", "000001"])
    result = read(tmp_path / "samples" / EXTXYZ_NAME)
    assert [c.label for c in result.crystals] == ["000000", "000001"]
    assert all("id" not in c.properties for c in result.crystals)
    csv_result = read(write_csv(tmp_path / "ids.csv", [good_cif()] * 2, ids=["000123", "1e3"]))
    assert [c.label for c in csv_result.crystals] == ["000123", "1e3"]


def test_tests_write_no_cache_into_home(temporary_dataset_cache, tmp_path):
    """The session fixture of tests/conftest.py sends the default dataset cache (and
    matplotlib's folder) away from the user's home."""
    import os
    from pathlib import Path

    read(write_csv(tmp_path / "cached.csv", [good_cif()]), cache=True)
    assert len(list(temporary_dataset_cache.glob("cached.csv-*.npz"))) == 1
    for folder in (temporary_dataset_cache, Path(os.environ["MPLCONFIGDIR"])):
        assert Path.home().resolve() not in folder.resolve().parents
