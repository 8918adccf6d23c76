"""``diffcrystal info`` through the CLI entry point."""

import numpy as np
import pandas as pd
from pymatgen.core import Lattice, Structure

from diffcrystal.cli.main import main

GARBAGE = "not a CIF"


def rocksalt() -> Structure:
    """Conventional (8-atom) rock-salt NaCl cell, a = 5.64 Å."""
    fcc = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
    return Structure(Lattice.cubic(5.64), ["Na"] * 4 + ["Cl"] * 4, np.vstack([fcc, (fcc + 0.5) % 1.0]))


def write_dataset(path):
    cells = [
        Structure(Lattice.cubic(4.1), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        rocksalt(),
        Structure(Lattice.cubic(3.9), ["Sr", "Ti", "O", "O", "O"],
                  [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]),
    ]
    cifs = [cell.to(fmt="cif") for cell in cells] + [GARBAGE, GARBAGE]
    pd.DataFrame({"material_id": [f"id{i}" for i in range(len(cifs))], "cif": cifs}).to_csv(path)
    return path


def test_info_prints_summary(tmp_path, capsys):
    path = write_dataset(tmp_path / "small.csv")
    code = main(["info", str(path), "--workers", "1", "--cache-dir", str(tmp_path / "cache")])
    out = capsys.readouterr().out
    assert code == 0
    assert "small.csv: 3 structures read, 2 skipped" in out
    assert "Cl 2/2" in out  # element: structures containing / atoms
    assert "Atoms per cell:" in out and "  5 | " in out
    assert "Pm-3m (221)" in out and "Fm-3m (225)" in out
    assert "Skipped: 2" in out and "2 x Invalid CIF file with no structures!" in out
    assert "small.csv row 3 (material_id id3)" in out
    assert "loaded in" in out


def test_info_options(tmp_path, capsys):
    path = write_dataset(tmp_path / "small.csv")
    assert main(["info", str(path), "--workers", "1", "--no-cache", "--no-canonical"]) == 0
    out = capsys.readouterr().out
    assert "  8 | " in out  # conventional NaCl cell kept
    assert not (tmp_path / "cache").exists()


def test_info_bad_input_is_one_line(tmp_path, capsys):
    assert main(["info", str(tmp_path / "absent.csv")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("diffcrystal info: error: no such file") and "\n" not in err


def test_info_reports_atoms_on_their_own_images(tmp_path, capsys):
    """A cell with c = 0.01 Å passes the volume check but puts every atom 0.01 Å from its
    own image: info counts it as skipped and names its row and the reason."""
    flat = Structure(Lattice.orthorhombic(5.0, 5.0, 0.01), ["Cu"], [[0, 0, 0]])
    path = tmp_path / "flat.csv"
    pd.DataFrame({"material_id": ["ok", "flat"], "cif": [rocksalt().to(fmt="cif"), flat.to(fmt="cif")]}).to_csv(path)
    assert main(["info", str(path), "--workers", "1", "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert "flat.csv: 1 structure read, 1 skipped" in out
    assert "1 x atoms too close to their own periodic image" in out
    assert "flat.csv row 1 (material_id flat): atoms too close to their own periodic image: 0.01 Å" in out
