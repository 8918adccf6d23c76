"""How many sampled structures match a known crystal (the CSP protocol's matcher).

    python scripts/match_known_structure.py samples/YBa2Cu3O7 --reference YBa2Cu3O7
    diffcrystal sample --composition NaCl --n 20 --out samples/NaCl && \\
        python scripts/match_known_structure.py samples/NaCl --reference NaCl

``--reference`` is a CIF file or the name of a built-in experimental structure
(:data:`KNOWN_STRUCTURES`). Every sample of the folder's ``samples.extxyz`` is compared with
it by :func:`diffcrystal.metrics.csp_metrics` (StructureMatcher stol 0.5, angle_tol 10,
ltol 0.3; invalid samples count as non-matches); prints and optionally writes a JSON with
the number of matches and the normalised RMS of each.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from diffcrystal.data.crystal import Crystal
from diffcrystal.data.readers import read_crystals
from diffcrystal.metrics import csp_metrics

KNOWN_STRUCTURES = {
    # Experimental room-temperature structures: space group (a setting pymatgen's
    # Structure.from_spacegroup builds), lattice parameters (a, b, c in Å; alpha, beta, gamma
    # in degrees) and one representative of each Wyckoff orbit.
    # Orthorhombic YBa2Cu3O7 (Pmmm, No. 47), neutron diffraction
    # (Jorgensen et al., Phys. Rev. B 41, 1863 (1990)).
    "YBa2Cu3O7": {
        "spacegroup": "Pmmm",
        "lattice": (3.8227, 3.8872, 11.6802, 90, 90, 90),
        "sites": [
            ("Y", (0.5, 0.5, 0.5)),
            ("Ba", (0.5, 0.5, 0.1843)),
            ("Cu", (0.0, 0.0, 0.0)),
            ("Cu", (0.0, 0.0, 0.3556)),
            ("O", (0.0, 0.5, 0.0)),
            ("O", (0.0, 0.0, 0.1584)),
            ("O", (0.5, 0.0, 0.3782)),
            ("O", (0.0, 0.5, 0.3773)),
        ],
    },
    # Layered LiCoO2 (R-3m, No. 166, hexagonal axes): Co 3a, Li 3b, O 6c with z = 0.2604
    # (Co-O 1.92 Å, Li-O 2.09 Å; Akimoto et al., J. Solid State Chem. 141, 298 (1998)).
    "LiCoO2": {
        "spacegroup": "R-3m",
        "lattice": (2.8156, 2.8156, 14.0542, 90, 90, 120),
        "sites": [("Co", (0.0, 0.0, 0.0)), ("Li", (0.0, 0.0, 0.5)), ("O", (0.0, 0.0, 0.2604))],
    },
    # Rutile TiO2 (P4_2/mnm, No. 136): Ti 2a, O 4f (x, x, 0) with x = 0.3048
    # (Abrahams & Bernstein, J. Chem. Phys. 55, 3206 (1971)).
    "TiO2": {
        "spacegroup": "P4_2/mnm",
        "lattice": (4.5937, 4.5937, 2.9587, 90, 90, 90),
        "sites": [("Ti", (0.0, 0.0, 0.0)), ("O", (0.3048, 0.3048, 0.0))],
    },
    # Zinc-blende GaAs (F-43m, No. 216), a = 5.6533 Å.
    "GaAs": {
        "spacegroup": "F-43m",
        "lattice": (5.6533, 5.6533, 5.6533, 90, 90, 90),
        "sites": [("Ga", (0.0, 0.0, 0.0)), ("As", (0.25, 0.25, 0.25))],
    },
    # Wurtzite ZnO (P6_3mc, No. 186): Zn and O on 2b, u = 0.382 (a = 3.2498, c = 5.2066 Å).
    "ZnO": {
        "spacegroup": "P6_3mc",
        "lattice": (3.2498, 3.2498, 5.2066, 90, 90, 120),
        "sites": [("Zn", (1 / 3, 2 / 3, 0.0)), ("O", (1 / 3, 2 / 3, 0.382))],
    },
    # Rock-salt NaCl (Fm-3m, No. 225), a = 5.6402 Å.
    "NaCl": {
        "spacegroup": "Fm-3m",
        "lattice": (5.6402, 5.6402, 5.6402, 90, 90, 90),
        "sites": [("Na", (0.0, 0.0, 0.0)), ("Cl", (0.5, 0.5, 0.5))],
    },
    # Diamond Si (Fd-3m, No. 227), a = 5.4310 Å, built as the two F-43m sites 4a + 4c that
    # together make the diamond lattice (setting-independent; spglib finds Fd-3m).
    "Si": {
        "spacegroup": "F-43m",
        "lattice": (5.4310, 5.4310, 5.4310, 90, 90, 90),
        "sites": [("Si", (0.0, 0.0, 0.0)), ("Si", (0.25, 0.25, 0.25))],
    },
    # Fluorite CaF2 (Fm-3m, No. 225): Ca 4a, F 8c; a = 5.4626 Å.
    "CaF2": {
        "spacegroup": "Fm-3m",
        "lattice": (5.4626, 5.4626, 5.4626, 90, 90, 90),
        "sites": [("Ca", (0.0, 0.0, 0.0)), ("F", (0.25, 0.25, 0.25))],
    },
}
"""Built-in experimental structures by formula; :func:`reference_crystal` builds their
primitive cells."""

EXPECTED_SPACE_GROUPS = {
    "YBa2Cu3O7": 47, "LiCoO2": 166, "TiO2": 136, "GaAs": 216, "ZnO": 186, "NaCl": 225, "Si": 227, "CaF2": 225,
}
"""International number spglib must find for each built-in structure (checked by the tests)."""


def reference_crystal(spec: str) -> Crystal:
    """A built-in structure by name (its primitive cell, the cell CSP samples for Z = 1),
    else the (first) structure of a CIF file."""
    from pymatgen.core import Lattice, Structure

    if spec in KNOWN_STRUCTURES:
        known = KNOWN_STRUCTURES[spec]
        species, coords = zip(*known["sites"])
        structure = Structure.from_spacegroup(
            known["spacegroup"], Lattice.from_parameters(*known["lattice"]), list(species), list(coords)
        )
        return Crystal.from_structure(structure.get_primitive_structure(tolerance=0.01), label=spec)
    (crystal,) = read_crystals(spec, canonical=False, cache=False, progress=False).crystals[:1]
    return crystal


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("samples", type=Path, help="output folder of `diffcrystal sample`")
    parser.add_argument("--reference", required=True, help=f"CIF file or one of {sorted(KNOWN_STRUCTURES)}")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, help="write the result as JSON here")
    args = parser.parse_args(argv)

    reference = reference_crystal(args.reference)
    loaded = read_crystals(args.samples / "samples.extxyz", canonical=False, cache=False, progress=False)
    samples = loaded.crystals  # frames the reader refuses (e.g. overlapping atoms) count as invalid
    metrics = csp_metrics([samples], [reference], workers=args.workers, progress=False)
    (target,) = metrics.per_target
    rms = [c.rms for c in target.candidates if c.matched]
    result = {
        "samples": str(args.samples),
        "reference": args.reference,
        "reference_atoms": reference.num_atoms,
        "n_samples": len(samples) + len(loaded.skipped),
        "n_invalid": metrics.n_invalid + len(loaded.skipped),
        "n_matched": len(rms),
        "best_rms": min(rms) if rms else None,
        "matched_rms": rms,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "matched_rms"}, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
