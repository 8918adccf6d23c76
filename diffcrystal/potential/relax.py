"""Relax crystals (positions and cell) and record what happened, one structure or a set.

One relaxation is ASE ``FIRE`` (or ``BFGS``) on a ``FrechetCellFilter`` (positions and cell
together, at zero pressure), stopped when the largest generalised force is below ``fmax``
(eV/Å; stress components are scaled by the cell volume, ASE's convention) or after
``max_steps`` steps; after every step the structure is checked for an explosion
(:func:`~diffcrystal.potential.results.explosion_reason`). An exploded, unreadable or failing
structure gives a :class:`~diffcrystal.potential.results.RelaxResult` with ``status``
``'exploded'`` or ``'failed'`` and a ``reason``; it never stops the batch.

:func:`relax_many` resolves the potential once (:func:`~diffcrystal.potential.calculators.resolve_potential`),
refuses structures with elements it has no parameters for, and runs one of two engines
(:data:`~diffcrystal.potential.results.ENGINES`): ``batched`` (default) relaxes the whole set
with one batched potential call per step (:mod:`~diffcrystal.potential.batched_relax`);
``ase`` runs one ASE optimizer per structure. With ``workers > 1`` on CPU both spread the set
over a process pool (``spawn``), each worker building its calculator once; a pool whose
workers all die raises. Optionally a fast potential pre-relaxes every structure first
(``RelaxSettings.prerelax``), and every relaxation can keep its trajectory
(:mod:`~diffcrystal.potential.trajectory`). A potential that cannot be loaded (missing
package, bad model file) raises :class:`InputError` before any structure is relaxed.
"""

from __future__ import annotations

import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from diffcrystal.data.crystal import Crystal
from diffcrystal.errors import InputError
from diffcrystal.potential.calculators import DEFAULT_POTENTIAL, Potential, resolve_potential
from diffcrystal.potential.results import (
    RelaxResult,
    RelaxSettings,
    explosion_reason,
    prepared_atoms,
    record_final,
)
from diffcrystal.potential.threads import limited_threads, thread_environment
from diffcrystal.potential.trajectory import TrajectoryRecorder, trajectory_path

DEFAULT_WORKERS = 2
"""Worker processes of :func:`relax_many` and the CLI (the CPU machines here have 2 cores)."""

PRERELAX_TRAJECTORY_FOLDER = "prerelax"
"""Sub-folder of the trajectory folder holding the pre-relaxation trajectories."""


class _Exploded(Exception):
    """Raised from the per-step check to stop an optimizer on a structure that blew up."""


class WorkersDied(RuntimeError):
    """Every worker process of a relaxation pool died before relaxing a structure."""


def _optimizer_class(name: str):
    from ase.optimize import BFGS, FIRE

    return {"FIRE": FIRE, "BFGS": BFGS}[name]


def relax_atoms(atoms, calculator, settings: RelaxSettings = RelaxSettings(), label: str = "",
                potential: str = "", threads: int | None = 1,
                trajectory: str | Path | None = None) -> RelaxResult:
    """Relax one structure (positions and cell) with ``calculator``; never raises on bad input.

    ``atoms``: ASE ``Atoms`` (periodic) or :class:`Crystal`; ``potential``: the label recorded.
    ``threads`` caps torch and BLAS threads while relaxing (``None``: leave them); see
    :func:`~diffcrystal.potential.threads.limited_threads`. ``trajectory``: write every step
    there (ASE ``.traj``). Returns a :class:`RelaxResult`.
    """
    if threads is None:
        return _relax_atoms(atoms, calculator, settings, label, potential, trajectory)
    with limited_threads(threads):
        return _relax_atoms(atoms, calculator, settings, label, potential, trajectory)


def _relax_atoms(atoms, calculator, settings: RelaxSettings, label: str, potential: str,
                 trajectory: str | Path | None) -> RelaxResult:
    from ase.filters import FrechetCellFilter

    result = RelaxResult(label=label, status="failed", potential=potential)
    recorder = TrajectoryRecorder()
    try:
        atoms = prepared_atoms(atoms, result)
        if atoms is None:
            return result
        atoms.calc = calculator
        cell_filter = FrechetCellFilter(atoms)
        optimizer = _optimizer_class(settings.optimizer)(cell_filter, logfile=None)

        energies: list[float] = []  # eV, one per optimizer step (step 0 first)

        def check() -> None:
            energies.append(float(atoms.get_potential_energy()))
            forces, stress = atoms.get_forces(), atoms.get_stress()
            if trajectory is not None:
                recorder.record(atoms, energies[-1], forces, stress)
            why = explosion_reason(atoms, energies[-1], forces, stress)
            if why:
                raise _Exploded(why)

        optimizer.attach(check, interval=1)
        try:
            converged = bool(optimizer.run(fmax=settings.fmax, steps=settings.max_steps))
        except _Exploded as exploded:
            result.status, result.reason = "exploded", f"step {optimizer.nsteps}: {exploded}"
            result.steps = int(optimizer.nsteps)
            return result
        energy = float(atoms.get_potential_energy())
        stress = atoms.get_stress()
        reason = explosion_reason(atoms, energy, atoms.get_forces(), stress)
        result.steps = int(optimizer.nsteps)
        if reason:
            result.status, result.reason = "exploded", f"final: {reason}"
            return result
        tested = float(np.linalg.norm(cell_filter.get_forces(), axis=1).max())  # what fmax was tested on
        record_final(result, atoms, energy, tested, stress, converged, energies, settings)
    except Exception as error:  # a bad structure must never stop the batch
        result.status, result.reason = "failed", f"{type(error).__name__}: {error}"
        result.atoms = None
    finally:
        if trajectory is not None and recorder.frames:
            recorder.write(trajectory)
    return result


# ---------------------------------------------------------------------- batches
_WORKER: dict = {}


def _init_worker(potential: Potential, threads: int) -> None:
    """Load the worker's calculator; a failure is kept (not raised, which would print a
    traceback per worker and break the pool) and reported by the first task."""
    try:
        if potential.label != "emt":  # EMT needs no torch; skip its import cost
            import torch

            torch.set_num_threads(threads)
        potential.calculator  # noqa: B018  (loads it)
        _WORKER["potential"] = potential
    except Exception as error:
        message = (str(error) if isinstance(error, InputError)
                   else f"cannot load potential {potential.label}: {type(error).__name__}: {error}")
        _WORKER["error"] = (message.strip().splitlines() or [""])[0]


def _relax_in_worker(index: int, label: str, atoms, settings: RelaxSettings, trajectory_dir):
    if "error" in _WORKER:
        raise InputError(_WORKER["error"])
    potential = _WORKER["potential"]
    trajectory = trajectory_path(trajectory_dir, label) if trajectory_dir is not None else None
    return index, relax_atoms(atoms, potential.calculator, settings, label, potential.label,
                              threads=None, trajectory=trajectory)


def _relax_batch_in_worker(indices: list[int], items: list, settings: RelaxSettings, trajectory_dir):
    """Relax ``items`` together with the batched engine in a worker; (indices, results)."""
    from diffcrystal.potential.batched_relax import relax_batched

    if "error" in _WORKER:
        raise InputError(_WORKER["error"])
    return indices, relax_batched(items, _WORKER["potential"], settings, progress=False, threads=None,
                                  trajectory_dir=trajectory_dir)


def _labelled(structures: Iterable) -> list[tuple[str, object]]:
    out = []
    for i, item in enumerate(structures):
        if isinstance(item, tuple):
            out.append((str(item[0]), item[1]))
        elif isinstance(item, Crystal):
            out.append((item.label or str(i), item))
        else:
            out.append((str(item.info.get("label", i)), item))
    return out


def relax_many(
    structures: Sequence,
    potential: str | Potential = DEFAULT_POTENTIAL,
    settings: RelaxSettings = RelaxSettings(),
    workers: int = DEFAULT_WORKERS,
    device: str = "cpu",
    threads_per_worker: int = 1,
    progress: bool = True,
    calculator=None,
    trajectory_dir: str | Path | None = None,
) -> list[RelaxResult]:
    """Relax a batch; results in input order, one per structure, never raising for one of them.

    Parameters
    ----------
    structures : ASE ``Atoms`` (label from ``atoms.info['label']``), :class:`Crystal` (its
        ``label``) or ``(label, Atoms | Crystal | MissingStructure)`` pairs (a missing one gives
        a ``failed`` result with its reason).
    potential : a name or model path, or a resolved
        :class:`~diffcrystal.potential.calculators.Potential` (then ``device`` and
        ``calculator`` are its own).
    workers : worker processes; 1 relaxes in this process (with ``calculator`` if given).
    threads_per_worker : torch / BLAS threads in each worker process (and in this process while
        relaxing when ``workers=1``).
    progress : show a tqdm progress bar (structures finished, and structures per second).
    trajectory_dir : write each relaxation's steps to ``<trajectory_dir>/<label>.traj`` (ASE
        trajectory; a pre-relaxation's to its ``prerelax/`` sub-folder).

    Raises :class:`InputError` for a potential that does not resolve or load, or structures
    with elements it has no parameters for (naming them), before relaxing anything;
    :class:`WorkersDied` when every worker process died.

    ``settings.engine`` ``'batched'`` relaxes the structures together with batched potential
    calls: all of them in this process with ``workers=1`` or on a GPU ``device``, else in batches
    of :data:`CPU_BATCH_STRUCTURES` over ``workers`` processes; ``'ase'`` runs one ASE
    optimizer per structure over ``workers`` processes. With ``settings.prerelax`` every
    structure is first relaxed with that potential (same engine, ``fmax`` and step cap) and
    then with ``potential`` from where it ended (from its input when the pre-relaxation left
    no structure).
    """
    if workers < 1:
        raise InputError(f"workers must be >= 1, got {workers}")
    potential = resolve_potential(potential, device, calculator)
    items = _labelled(structures)
    potential.check_elements(items)
    if settings.prerelax is not None:
        student = resolve_potential(settings.prerelax, potential.device)
        student.check_elements(items)
        plain = replace(settings, prerelax=None)
        first = relax_many(items, student, plain, workers, student.device, threads_per_worker, progress,
                           trajectory_dir=(None if trajectory_dir is None
                                           else Path(trajectory_dir) / PRERELAX_TRAJECTORY_FOLDER))
        starts = [(name, done.atoms if done.atoms is not None else item)
                  for (name, item), done in zip(items, first)]
        results = relax_many(starts, potential, plain, workers, potential.device, threads_per_worker,
                             progress, trajectory_dir=trajectory_dir)
        for result, done in zip(results, first):
            result.prerelax_status, result.prerelax_steps = done.status, done.steps
        return results
    if settings.engine == "batched" and (workers == 1 or len(items) <= 1 or potential.device != "cpu"):
        from diffcrystal.potential.batched_relax import relax_batched

        return relax_batched(items, potential, settings, progress, threads=threads_per_worker,
                             trajectory_dir=trajectory_dir)
    return _relax_pool(items, potential, settings, workers, threads_per_worker, progress, trajectory_dir)


CPU_BATCH_STRUCTURES = 8
"""Most structures per batched relaxation a CPU worker process takes at a time (fewer when
that leaves a worker idle): on CPU a batched
call saves nothing per structure (:data:`~diffcrystal.potential.evaluators.DEFAULT_MAX_ATOMS_PER_CALL`),
so ``workers`` processes share the set in small batches (the cores in use without the
synchronisation cost of multi-threaded torch on a busy machine, and a progress bar that moves)."""

WORKERS_DIED_HINT = ("a script that relaxes with workers > 1 must start its work under "
                     "`if __name__ == \"__main__\":` (worker processes re-import it), or pass workers=1")
"""What to do about a pool whose workers all died (the usual cause: an unguarded script)."""


def _relax_pool(items, potential: Potential, settings: RelaxSettings, workers: int,
                threads_per_worker: int, progress: bool, trajectory_dir) -> list[RelaxResult]:
    """:func:`relax_many` in this process (``workers=1``, ``ase`` engine) or over a ``spawn``
    process pool: one ASE optimizer per structure (``ase``) or batched relaxations of
    :data:`CPU_BATCH_STRUCTURES` structures (``batched``) per task."""
    from tqdm.auto import tqdm

    results: list[RelaxResult | None] = [None] * len(items)
    bar = tqdm(total=len(items), desc=f"relax {settings.engine} ({potential.short_name})",
               disable=not progress, unit="structure")
    if settings.engine == "batched":
        size = max(1, min(CPU_BATCH_STRUCTURES, math.ceil(len(items) / workers)))
        tasks = [(_relax_batch_in_worker, list(range(start, min(start + size, len(items)))),
                  items[start:start + size], settings, trajectory_dir) for start in range(0, len(items), size)]
    else:
        tasks = [(_relax_in_worker, i, name, atoms, settings, trajectory_dir)
                 for i, (name, atoms) in enumerate(items)]
    if workers == 1 or len(items) <= 1:
        for i, (name, atoms) in enumerate(items):
            trajectory = trajectory_path(trajectory_dir, name) if trajectory_dir is not None else None
            results[i] = relax_atoms(atoms, potential.calculator, settings, name, potential.label,
                                     threads_per_worker, trajectory)
            bar.update()
    else:
        context = multiprocessing.get_context("spawn")
        try:
            with thread_environment(threads_per_worker), ProcessPoolExecutor(
                max_workers=min(workers, len(items)),
                mp_context=context,
                initializer=_init_worker,
                initargs=(potential, threads_per_worker),
            ) as pool:
                futures = [pool.submit(*task) for task in tasks]
                try:
                    for future in as_completed(futures):
                        indices, done = future.result()
                        if isinstance(indices, int):
                            indices, done = [indices], [done]
                        for i, result in zip(indices, done):
                            results[i] = result
                        bar.update(len(indices))
                except InputError:  # the potential did not load: stop at the first report
                    pool.shutdown(wait=True, cancel_futures=True)
                    bar.close()
                    raise
        except BrokenProcessPool as error:
            bar.close()
            if all(r is None for r in results):
                raise WorkersDied(f"every relaxation worker process died ({error}); {WORKERS_DIED_HINT}") from None
            for i, (name, _) in enumerate(items):
                if results[i] is None:
                    results[i] = RelaxResult(name, "failed", potential.label, reason=f"worker died: {error}")
    bar.close()
    return results  # type: ignore[return-value]
