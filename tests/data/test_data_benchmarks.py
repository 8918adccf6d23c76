"""Reading the benchmark CSVs of ../shared/data (skipped when the folder is absent).

The fast tests read a slice of rows of each file; reading the files fully (and checking the
row counts of the data README) is marked slow (about a minute on 2 cores).
"""

import pandas as pd
import pytest

from diffcrystal.cli.main import main
from diffcrystal.data.readers import read_crystals

FILES = {
    "perov_5/train.csv": 3787,
    "perov_5/test.csv": 1893,
    "carbon_24/train.csv": 2032,
    "carbon_24/test.csv": 1015,
}
"""Benchmark file -> number of rows (from ../shared/data/README.md)."""

SLICE_ROWS = 40
"""Rows read by the fast tests."""

PEROV_ATOMS = 5
MAX_CARBON_ATOMS = 24


def check(name: str, crystals):
    if name.startswith("perov_5"):
        assert all(c.num_atoms == PEROV_ATOMS for c in crystals)
        assert all("heat_ref" in c.properties for c in crystals)
    else:
        assert all(set(c.atomic_numbers.tolist()) == {6} for c in crystals)
        assert all(c.num_atoms <= MAX_CARBON_ATOMS for c in crystals)
        assert all("energy_per_atom" in c.properties for c in crystals)


@pytest.mark.parametrize("name", list(FILES))
def test_read_slice(shared_data, tmp_path, name):
    table = pd.read_csv(shared_data / name, nrows=SLICE_ROWS)
    part = tmp_path / name.replace("/", "_")
    table.to_csv(part, index=False)
    result = read_crystals(part, workers=1, cache=False, progress=False)
    assert len(result.crystals) == SLICE_ROWS and result.skipped == []
    assert [c.label for c in result.crystals] == [str(i) for i in table["material_id"]]
    check(name, result.crystals)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FILES))
def test_read_full(shared_data, tmp_path, name):
    result = read_crystals(shared_data / name, cache=False, progress=False)
    assert len(result.crystals) == FILES[name] and result.skipped == []
    check(name, result.crystals)


@pytest.mark.slow
def test_info_on_benchmark(shared_data, tmp_path, capsys):
    assert main(["info", str(shared_data / "perov_5/train.csv"), "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "3,787 structures read, 0 skipped" in out
    assert main(["info", str(shared_data / "perov_5/train.csv"), "--cache-dir", str(tmp_path)]) == 0
    assert "from cache" in capsys.readouterr().out
