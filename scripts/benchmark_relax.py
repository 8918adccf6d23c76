"""Benchmark relax-and-rank with each engine on the same candidates; prints one JSON object.

Candidates: ``--n`` copies of YBa2Cu3O7 (13 atoms, Pmmm; Jorgensen et al., PRB 41, 1863 (1990)
coordinates rounded) — rattled (Gaussian, ``--rattle`` Å), strained (symmetric, entries up to
``--strain``), and in two of every three copies with cations swapped (Y<->Ba) or the chain
oxygen moved to the a axis, so the batch holds several distinct crystals.

    python scripts/benchmark_relax.py --n 100 --workers 2 --potential sevennet-0 \
        [--engines batched ase] [--optimizer FIRE|BFGS] [--prerelax runs/student] [--calls 20] [--out bench/]

For each engine (``--engines``; and ``batched`` with ``--prerelax STUDENT`` when given),
``runs.<name>.wall_s`` times :func:`diffcrystal.potential.relax_and_rank` end to end (reading
CIFs, process start-up and model loading, relaxing every candidate (no merging of duplicates), writing) and ``cpu_s`` the
CPU time of this process and its workers together; on a shared machine
``cpu_s / workers`` estimates the wall time with the cores to oneself. ``comparison`` gives
the ASE / batched ratios, whether every structure got the same verdict, and the largest
energy (meV/atom) and lattice-length (%) differences between the engines (and between the
pre-relaxed and plain batched runs, with whether the converged ranking changed).
``per_call_ms`` times single energy+forces+stress calls, after one warm-up call, on the first
``--calls`` candidates, in this process with 1 torch thread: median wall and CPU time (CPU
time is the fairer number on a shared machine); ``batched_call_ms_per_structure`` the batched
evaluator of SevenNet-0 and of a student bundle on the same candidates, per structure, for
each ``--chunk-atoms`` (atoms per model call). ``--skip-relax`` times only the calls:

    OMP_NUM_THREADS=1 python scripts/benchmark_relax.py --skip-relax --calls 80 \
        --prerelax mp20-student --chunk-atoms 13 104 1040
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


def batched_call_ms(potential: str, structures: list, max_atoms: int | None = None, repeats: int = 3) -> dict:
    """CPU and wall ms per structure of ``potential``'s batched evaluator
    (:func:`~diffcrystal.potential.evaluators.batch_evaluator`: SevenNet-0's or a student
    bundle's) on ``structures``, in chunks of at most ``max_atoms`` atoms (the evaluator's
    default when ``None``): the best of ``repeats`` passes after a warm-up pass, 1 torch thread."""
    import torch

    from diffcrystal.potential import resolve_potential

    torch.set_num_threads(1)
    evaluator = resolve_potential(potential).evaluator()
    if max_atoms is not None:
        evaluator.max_atoms = max_atoms
    evaluator(structures)
    walls, cpus = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        evaluator(structures)
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu_start)
    n = len(structures)
    return {"structures": n, "max_atoms_per_call": evaluator.max_atoms,
            "wall_ms": round(1e3 * min(walls) / n, 2), "cpu_ms": round(1e3 * min(cpus) / n, 2)}


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children, s."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def relax_run(inputs: Path, out: Path, potential: str, settings, workers: int):
    """Relax and rank ``inputs`` once; (report dict, RankingReport)."""
    from diffcrystal.potential import relax_and_rank

    cpu_before, start = cpu_seconds(), time.perf_counter()
    ranking = relax_and_rank([inputs], out, potential, settings, workers=workers, progress=False,
                             merge_duplicates=False)  # every candidate relaxed: the engines are compared per structure
    wall = time.perf_counter() - start
    cpu = cpu_seconds() - cpu_before
    statuses: dict = {}
    for result in ranking.results:
        statuses[result.status] = statuses.get(result.status, 0) + 1
    report = {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
              "wall_s_if_cores_dedicated": round(cpu / workers, 1),
              "structures_per_s": round(len(ranking.results) / wall, 3),
              "load_average_1min_after": round(os.getloadavg()[0], 2),
              "statuses": statuses,
              "mean_steps": round(float(np.mean([r.steps for r in ranking.results])), 1),
              "distinct": len(ranking.entries),
              "lowest_energy_per_atom_eV": (round(ranking.entries[0].best.energy_per_atom, 4)
                                            if ranking.entries else None),
              "ranked_csv": str(ranking.ranked_csv)}
    if settings.prerelax:
        report["mean_prerelax_steps"] = round(float(np.mean([r.prerelax_steps for r in ranking.results])), 1)
    return report, ranking


def compare(first, second) -> dict:
    """Agreement of two rankings of the same candidates (RankingReport each)."""
    same_verdict = all(a.status == b.status for a, b in zip(first.results, second.results))
    both = [(a, b) for a, b in zip(first.results, second.results) if a.atoms is not None and b.atoms is not None]
    energy = max((abs(a.energy_per_atom - b.energy_per_atom) for a, b in both), default=float("nan"))
    lattice = max((float(np.max(np.abs(a.atoms.cell.cellpar()[:3] / b.atoms.cell.cellpar()[:3] - 1)))
                   for a, b in both), default=float("nan"))
    return {"same_verdicts": same_verdict,
            "same_step_counts": f"{sum(a.steps == b.steps for a, b in zip(first.results, second.results))} of {len(first.results)}",
            "max_energy_difference_meV_atom": round(1e3 * energy, 4) if both else None,
            "max_lattice_difference_percent": round(100 * lattice, 4) if both else None,
            # the same distinct crystals (groups of candidates) in the same order; the member
            # chosen to stand for a group may differ when its members' energies tie to ~0.01 meV
            "same_ranking": ([sorted(e.members) for e in first.entries]
                             == [sorted(e.members) for e in second.entries])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--potential", default="sevennet-0")
    parser.add_argument("--engines", nargs="*", default=["batched", "ase"], choices=["batched", "ase"],
                        help="engines to time (none: only the --prerelax run)")
    parser.add_argument("--prerelax", default=None, help="student (fitted model folder, bundle or "
                        "bundled name) for a batched run pre-relaxed with it; also timed per call "
                        "and, for a bundle, per batched call")
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--chunk-atoms", type=int, nargs="*", default=None,
                        help="atoms per batched call to time (default: each evaluator's own)")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--optimizer", choices=("FIRE", "BFGS"), default="FIRE", help="for every run (default FIRE)")
    parser.add_argument("--fmax", type=float, default=0.02)
    parser.add_argument("--rattle", type=float, default=0.1)
    parser.add_argument("--strain", type=float, default=0.04)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-relax", action="store_true", help="only time per-call costs")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from ase.io import write

    from diffcrystal.potential import RelaxSettings, resolve_potential
    from diffcrystal.potential.threads import available_cores

    structures = candidates(args.n, args.rattle, args.strain, args.seed)
    report: dict = {"n": args.n, "atoms_per_candidate": len(structures[0]), "workers": args.workers,
                    "cores_available": available_cores(), "potential": args.potential,
                    "fmax": args.fmax, "max_steps": args.steps, "optimizer": args.optimizer}
    out = args.out or Path(tempfile.mkdtemp(prefix="benchmark_relax_"))
    if not args.skip_relax:
        inputs = out / "candidates"
        inputs.mkdir(parents=True, exist_ok=True)
        for i, atoms in enumerate(structures):
            write(inputs / f"ybco-{i:03d}.cif", atoms)
        runs = [(engine, RelaxSettings(fmax=args.fmax, max_steps=args.steps, optimizer=args.optimizer, engine=engine))
                for engine in args.engines]
        if args.prerelax:
            runs.append(("batched_prerelax", RelaxSettings(fmax=args.fmax, max_steps=args.steps, optimizer=args.optimizer,
                                                           engine="batched", prerelax=args.prerelax)))
        report["runs"], rankings = {}, {}
        for name, settings in runs:
            report["runs"][name], rankings[name] = relax_run(inputs, out / name, args.potential,
                                                             settings, args.workers)
        comparison = {}
        if "batched" in rankings and "ase" in rankings:
            ase, batched = report["runs"]["ase"], report["runs"]["batched"]
            comparison["ase_vs_batched"] = {
                "wall_ratio": round(ase["wall_s"] / batched["wall_s"], 2),
                "cpu_ratio": round(ase["cpu_s"] / batched["cpu_s"], 2),
                **compare(rankings["ase"], rankings["batched"])}
        if "batched_prerelax" in rankings and "batched" in rankings:
            plain, chained = report["runs"]["batched"], report["runs"]["batched_prerelax"]
            comparison["prerelax_vs_batched"] = {
                "wall_saved_s": round(plain["wall_s"] - chained["wall_s"], 1),
                "cpu_saved_s": round(plain["cpu_s"] - chained["cpu_s"], 1),
                **compare(rankings["batched"], rankings["batched_prerelax"])}
        report["comparison"] = comparison
    sample = structures[: args.calls]
    report["per_call_ms"] = {args.potential: per_call_ms(args.potential, sample)}
    if args.prerelax:
        report["per_call_ms"][args.prerelax] = per_call_ms(args.prerelax, sample)
    report["batched_call_ms_per_structure"] = {}
    for potential in (args.potential, args.prerelax):
        if potential is not None and resolve_potential(potential).kind in ("sevennet-0", "student"):
            report["batched_call_ms_per_structure"][potential] = [
                batched_call_ms(potential, sample, max_atoms) for max_atoms in args.chunk_atoms or [None]]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":  # guard required: relaxation workers are spawned processes
    main()
