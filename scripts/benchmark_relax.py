"""Benchmark relax-and-rank and per-call cost of potentials; prints one JSON object.

Candidates: ``--n`` copies of YBa2Cu3O7 (13 atoms, Pmmm; Jorgensen et al., PRB 41, 1863 (1990)
coordinates rounded) — rattled (Gaussian, ``--rattle`` Å), strained (symmetric, entries up to
``--strain``), and in two of every three copies with cations swapped (Y<->Ba) or the chain
oxygen moved to the a axis, so the batch holds several distinct crystals.

    python scripts/benchmark_relax.py --n 100 --workers 2 --potential sevennet-0 \
        [--student runs/student] [--calls 20] [--out bench/]

``wall_s`` times :func:`diffcrystal.potential.relax_and_rank` end to end (reading CIFs,
process start-up, model loading in each worker, relaxing, deduplicating, writing).
``worker_cpu_s`` is the CPU time the worker processes used; on a shared machine
``wall_s_if_cores_dedicated = worker_cpu_s / workers`` estimates the wall time with the cores
to oneself. ``per_call_ms`` times single energy+forces+stress calls, after one warm-up call, on the first
``--calls`` candidates, in this process with 1 torch thread: median wall and CPU time (CPU
time is the fairer number on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

YBCO_CELL_A = (3.82, 3.89, 11.68)
YBCO_SITES = [
    ("Y", (0.5, 0.5, 0.5)), ("Ba", (0.5, 0.5, 0.184)), ("Ba", (0.5, 0.5, 0.816)),
    ("Cu", (0.0, 0.0, 0.0)), ("Cu", (0.0, 0.0, 0.355)), ("Cu", (0.0, 0.0, 0.645)),
    ("O", (0.0, 0.5, 0.0)), ("O", (0.5, 0.0, 0.378)), ("O", (0.5, 0.0, 0.622)),
    ("O", (0.0, 0.5, 0.377)), ("O", (0.0, 0.5, 0.623)), ("O", (0.0, 0.0, 0.159)),
    ("O", (0.0, 0.0, 0.841)),
]


def ybco():
    from ase import Atoms

    symbols, frac = zip(*YBCO_SITES)
    return Atoms(symbols, scaled_positions=frac, cell=np.diag(YBCO_CELL_A), pbc=True)


def candidates(n: int, rattle: float, strain: float, seed: int) -> list:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        atoms = ybco()
        if i % 3 == 1:  # swap Y with one Ba
            symbols = atoms.get_chemical_symbols()
            symbols[0], symbols[1] = symbols[1], symbols[0]
            atoms.set_chemical_symbols(symbols)
        elif i % 3 == 2:  # chain oxygen on the a axis instead of b
            frac = atoms.get_scaled_positions()
            frac[6] = (0.5, 0.0, 0.0)
            atoms.set_scaled_positions(frac)
        epsilon = rng.uniform(-strain, strain, (3, 3))
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + (epsilon + epsilon.T) / 2), scale_atoms=True)
        atoms.positions += rng.normal(0.0, rattle, atoms.positions.shape)
        out.append(atoms)
    return out


def per_call_ms(potential: str, structures: list) -> dict:
    import torch

    from diffcrystal.potential import load_calculator

    torch.set_num_threads(1)
    calculator = load_calculator(potential)
    times, cpu_times = [], []
    for atoms in structures:
        atoms = atoms.copy()
        atoms.calc = calculator
        atoms.get_potential_energy()  # warm-up (neighbour list, first-call compilation)
        atoms.positions += 1e-3
        start, cpu_start = time.perf_counter(), time.process_time()
        atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    return {"wall_ms": round(1e3 * float(np.median(times)), 1),
            "cpu_ms": round(1e3 * float(np.median(cpu_times)), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--potential", default="sevennet-0")
    parser.add_argument("--student", default=None, help="fitted model (path) to time per call")
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--fmax", type=float, default=0.02)
    parser.add_argument("--rattle", type=float, default=0.1)
    parser.add_argument("--strain", type=float, default=0.04)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-relax", action="store_true", help="only time per-call costs")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from ase.io import write

    from diffcrystal.potential import RelaxSettings, relax_and_rank
    from diffcrystal.potential.relax import available_cores

    structures = candidates(args.n, args.rattle, args.strain, args.seed)
    report: dict = {"n": args.n, "atoms_per_candidate": len(structures[0]), "workers": args.workers,
                    "cores_available": available_cores(), "potential": args.potential,
                    "fmax": args.fmax, "max_steps": args.steps}
    out = args.out or Path(tempfile.mkdtemp(prefix="benchmark_relax_"))
    if not args.skip_relax:
        inputs = out / "candidates"
        inputs.mkdir(parents=True, exist_ok=True)
        for i, atoms in enumerate(structures):
            write(inputs / f"ybco-{i:03d}.cif", atoms)
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        ranking = relax_and_rank([inputs], out / "ranked", args.potential,
                                 RelaxSettings(fmax=args.fmax, max_steps=args.steps),
                                 workers=args.workers, progress=False)
        report["wall_s"] = round(time.perf_counter() - start, 1)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        worker_cpu = (children.ru_utime - children_before.ru_utime
                      + children.ru_stime - children_before.ru_stime)
        report["worker_cpu_s"] = round(worker_cpu, 1)
        # What the batch would take with the cores to itself (the machine here is shared):
        # all worker CPU time spread evenly over ``workers`` cores.
        report["wall_s_if_cores_dedicated"] = round(worker_cpu / args.workers, 1)
        report["load_average_1min_after"] = round(os.getloadavg()[0], 2)
        statuses: dict = {}
        for result in ranking.results:
            statuses[result.status] = statuses.get(result.status, 0) + 1
        report["statuses"] = statuses
        report["mean_steps"] = round(float(np.mean([r.steps for r in ranking.results])), 1)
        report["distinct"] = len(ranking.entries)
        report["lowest_energy_per_atom_eV"] = (
            round(ranking.entries[0].best.energy_per_atom, 4) if ranking.entries else None)
        report["ranked_csv"] = str(ranking.ranked_csv)
    sample = structures[: args.calls]
    report["per_call_ms"] = {args.potential: per_call_ms(args.potential, sample)}
    if args.student:
        report["per_call_ms"][args.student] = per_call_ms(args.student, sample)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":  # guard required: relaxation workers are spawned processes
    main()
