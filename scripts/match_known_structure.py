"""How many sampled structures match a known crystal (the CSP protocol's matcher).

    python scripts/match_known_structure.py samples/YBa2Cu3O7 --reference YBa2Cu3O7

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
    # Orthorhombic YBa2Cu3O7 (Pmmm, No. 47), neutron diffraction at room temperature
    # (Jorgensen et al., Phys. Rev. B 41, 1863 (1990)); lattice in Å, Wyckoff sites.
    "YBa2Cu3O7": {
        "spacegroup": "Pmmm",
        "abc": (3.8227, 3.8872, 11.6802),
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
}


def reference_crystal(spec: str) -> Crystal:
    """A built-in structure by name, else the (first) structure of a CIF file."""
    from pymatgen.core import Lattice, Structure

    if spec in KNOWN_STRUCTURES:
        known = KNOWN_STRUCTURES[spec]
        species, coords = zip(*known["sites"])
        structure = Structure.from_spacegroup(
            known["spacegroup"], Lattice.orthorhombic(*known["abc"]), list(species), list(coords)
        )
        return Crystal.from_structure(structure, label=spec)
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
    samples = read_crystals(args.samples / "samples.extxyz", canonical=False, cache=False, progress=False).crystals
    metrics = csp_metrics([samples], [reference], workers=args.workers, progress=False)
    (target,) = metrics.per_target
    rms = [c.rms for c in target.candidates if c.matched]
    result = {
        "samples": str(args.samples),
        "reference": args.reference,
        "reference_atoms": reference.num_atoms,
        "n_samples": len(samples),
        "n_invalid": metrics.n_invalid,
        "n_matched": len(rms),
        "best_rms": min(rms) if rms else None,
        "matched_rms": rms,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "matched_rms"}, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
