"""Deployment check of a potential by molecular dynamics: Bussi NVT, then NVE; energy drift,
fluctuation and ns/day (``diffcrystal.potential.md_check``), for a relaxed candidate:

    OMP_NUM_THREADS=2 python scripts/check_md.py predictions/YBa2Cu3O7/relaxed/rank-001.cif \\
        --potential runs/student --supercell 2 2 1 --out benchmarks/md_check_student.json

``--potential`` takes what ``rank --potential`` takes: a name (sevennet-0, emt, ...) or a folder
with a compiled NequIP/Allegro model (``model.nequip.pt2``, as ``potential fit`` writes it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from diffcrystal.atomic_write import atomic_write_text
from diffcrystal.errors import InputError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("structure", type=Path, help="CIF of the crystal to simulate")
    parser.add_argument("--potential", default="sevennet-0", help="potential name or compiled-model folder")
    parser.add_argument("--supercell", type=int, nargs=3, default=(1, 1, 1), metavar=("NA", "NB", "NC"))
    parser.add_argument("--temperature", type=float, default=300.0, help="K")
    parser.add_argument("--timestep", type=float, default=1.0, help="fs")
    parser.add_argument("--nvt", type=int, default=200, help="NVT steps before the NVE run")
    parser.add_argument("--nve", type=int, default=1000, help="NVE steps measured")
    parser.add_argument("--seed", type=int, default=0, help="initial velocities and thermostat noise")
    parser.add_argument("--out", type=Path, default=None, help="JSON report (default: print only)")
    args = parser.parse_args(argv)
    try:
        from diffcrystal.potential.calculators import resolve_potential
        from diffcrystal.potential.io import read_candidates
        from diffcrystal.potential.md_check import run_md_check

        if min(args.supercell) < 1:
            raise InputError(f"--supercell needs three counts >= 1, got {list(args.supercell)}")
        items = read_candidates([args.structure])
        if len(items) != 1:
            raise InputError(f"{args.structure}: expected one crystal, found {len(items)}")
        atoms = items[0][1] * tuple(args.supercell)
        potential = resolve_potential(args.potential)
        potential.check_elements(items)
        check = run_md_check(atoms, potential.calculator, args.temperature, args.timestep, args.nvt, args.nve,
                             args.seed)
    except InputError as error:
        print(f"check_md: error: {error}", file=sys.stderr)
        return 1
    report = {"structure": str(args.structure), "potential": potential.label, "supercell": list(args.supercell),
              **dataclasses.asdict(check)}
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, json.dumps(report, indent=1) + "\n")
    print(f"{check.atoms} atoms, {check.nve_steps} NVE steps of {check.timestep_fs:g} fs after {check.nvt_steps} NVT "
          f"at {check.temperature_K:g} K: drift {check.drift_meV_atom_ps:.4f} meV/atom/ps, fluctuation "
          f"{check.fluctuation_meV_atom:.4f} meV/atom, mean T {check.mean_temperature_K:.0f} K, "
          f"{check.ns_per_day:.3f} ns/day")
    return 0


if __name__ == "__main__":
    sys.exit(main())
