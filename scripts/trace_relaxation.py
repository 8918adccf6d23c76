"""Trace relaxations step by step: energy, largest force, volume and closest pair per step.

    python scripts/trace_relaxation.py samples/YBa2Cu3O7 --ids 000003 000004 --steps 500 --out trace.jsonl

Each structure of a sample folder (``--ids``: which; default all with a CIF) is relaxed as
``diffcrystal relax`` does (FIRE or BFGS on a ``FrechetCellFilter``, ``--fixed-cell`` to leave
the cell alone), stopping at ``--fmax``, at ``--steps`` or when two atoms come closer than
:data:`~diffcrystal.symmetry.MIN_DISTANCE_A`. One JSON line per structure: ``id``,
``converged``, ``steps``, ``stopped`` (why, if not converged) and ``trace``, a list of
``[step, energy per atom (eV/atom), max atomic force (eV/Å), max generalised force (eV/Å),
volume per atom (Å³), closest pair (Å)]``. Used to find why relaxations do not converge
(``docs/benchmarks.md``).
"""

import argparse
import json
import sys

import numpy as np

from diffcrystal.potential import load_calculator
from diffcrystal.potential.io import read_candidates
from diffcrystal.potential.results import DEFAULT_FMAX_EV_A, DEFAULT_MAX_STEPS
from diffcrystal.potential.threads import limited_threads
from diffcrystal.symmetry import MIN_DISTANCE_A


class _TooClose(Exception):
    pass


def trace(atoms, calculator, fmax: float, steps: int, optimizer: str, fixed_cell: bool) -> dict:
    """Relax ``atoms`` (ASE) and record one row per step (see the module docstring)."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS, FIRE

    atoms = atoms.copy()
    atoms.calc = calculator
    target = atoms if fixed_cell else FrechetCellFilter(atoms)
    runner = {"FIRE": FIRE, "BFGS": BFGS}[optimizer](target, logfile=None)
    rows = []

    def record() -> None:
        distances = atoms.get_all_distances(mic=True)
        np.fill_diagonal(distances, np.inf)
        rows.append([runner.nsteps, float(atoms.get_potential_energy()) / len(atoms),
                     float(np.linalg.norm(atoms.get_forces(), axis=1).max()),
                     float(np.linalg.norm(target.get_forces(), axis=1).max()),
                     float(atoms.get_volume()) / len(atoms), float(distances.min())])
        if rows[-1][5] < MIN_DISTANCE_A:
            raise _TooClose(f"atoms {rows[-1][5]:.3f} Å apart at step {runner.nsteps}")

    runner.attach(record, interval=1)
    try:
        converged, stopped = bool(runner.run(fmax=fmax, steps=steps)), ""
    except _TooClose as error:
        converged, stopped = False, str(error)
    if not converged and not stopped:
        stopped = f"step cap {steps}"
    return {"converged": converged, "steps": runner.nsteps, "stopped": stopped, "trace": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="sample folder (summary.csv + CIFs)")
    parser.add_argument("--ids", nargs="*", help="sample ids (default: all with a CIF)")
    parser.add_argument("--potential", default="sevennet-0")
    parser.add_argument("--fmax", type=float, default=DEFAULT_FMAX_EV_A, help="eV/Å")
    parser.add_argument("--steps", type=int, default=DEFAULT_MAX_STEPS)
    parser.add_argument("--optimizer", choices=["FIRE", "BFGS"], default="FIRE")
    parser.add_argument("--fixed-cell", action="store_true", help="relax positions only")
    parser.add_argument("--out", required=True, help="JSON lines file (appended to)")
    args = parser.parse_args(argv)
    calculator = load_calculator(args.potential)
    for label, atoms in read_candidates([args.folder]):
        if args.ids and label not in args.ids:
            continue
        with limited_threads(1):
            line = {"id": label, **trace(atoms, calculator, args.fmax, args.steps, args.optimizer,
                                         args.fixed_cell)}
        with open(args.out, "a") as handle:
            handle.write(json.dumps(line) + "\n")
        last = line["trace"][-1]
        print(f"{label}: converged {line['converged']} after {line['steps']} steps ({line['stopped']}); "
              f"E {last[1]:.3f} eV/atom, max force {last[2]:.3g} eV/Å, closest pair {last[5]:.2f} Å",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
