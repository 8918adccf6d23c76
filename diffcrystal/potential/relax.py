"""Relax crystals (positions and cell) with an ASE calculator and record what happened.

One relaxation is ASE ``FIRE`` (or ``BFGS``) on a ``FrechetCellFilter`` (positions and cell
together, at zero pressure), stopped when the largest generalised force is below ``fmax``
(eV/Å; stress components are scaled by the cell volume, ASE's convention) or after
``max_steps`` steps. After every step the structure is checked; it has *exploded* when

- energy, forces, stress, positions or cell are not finite,
- two atoms are closer than :data:`~diffcrystal.symmetry.MIN_DISTANCE_A` (0.5 Å), or
- the volume per atom exceeds :data:`~diffcrystal.symmetry.MAX_VOLUME_PER_ATOM_A3`.

An exploded, unreadable or failing structure gives a :class:`RelaxResult` with
``status`` ``'exploded'`` or ``'failed'`` and a ``reason``; it never stops the batch. A
structure still above ``fmax`` after ``max_steps`` is ``'not_converged'``: its energy is not
that of a minimum, so :attr:`RelaxResult.rankable` (converged only) keeps it out of the main
ranking; :mod:`~diffcrystal.potential.rank` ranks such structures separately.

:func:`relax_many` runs one of two engines (:data:`ENGINES`): ``batched`` (default) relaxes the
whole set in this process with one batched potential call per step
(:mod:`~diffcrystal.potential.batched_relax`, the same FIRE and cell filter in torch);
``ase`` spreads the structures over a process pool (``spawn``), each worker building its
calculator once (``workers=1``: in this process). Optionally a fast potential pre-relaxes
every structure first (``RelaxSettings.prerelax``). A potential that cannot be loaded
(missing package, bad model file) raises :class:`InputError` before any structure is relaxed.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Literal, Sequence

import numpy as np

from diffcrystal.data.crystal import MIN_VOLUME_A3, Crystal
from diffcrystal.errors import InputError
from diffcrystal.potential.calculators import (
    DEFAULT_POTENTIAL,
    check_model_file,
    load_calculator,
    potential_label,
    require_packages,
)
from diffcrystal.potential.io import MissingStructure
from diffcrystal.symmetry import MAX_VOLUME_PER_ATOM_A3, MIN_DISTANCE_A, space_group

DEFAULT_FMAX_EV_A = 0.02
"""Convergence threshold on the largest (generalised) force, eV/Å (DESIGN.md)."""

DEFAULT_MAX_STEPS = 500
"""Step cap of one relaxation; a structure still above ``fmax`` is recorded as not converged."""

DEFAULT_WORKERS = 2
"""Worker processes of :func:`relax_many` (the CPU machines here have 2 cores)."""

OPTIMIZERS = ("FIRE", "BFGS")
"""ASE optimizers accepted by :class:`RelaxSettings`."""

ENGINES = ("batched", "ase")
"""How a set is relaxed: ``batched`` — all structures in one process, one batched potential
call per FIRE step (:mod:`~diffcrystal.potential.batched_relax`); ``ase`` — one ASE optimizer
per structure over a process pool (the reference)."""

DEFAULT_ENGINE = "batched"
"""Engine for FIRE when none is named (same verdicts as ``ase``; see docs/benchmarks.md);
BFGS runs on ``ase``."""

Status = Literal["converged", "not_converged", "exploded", "failed", "pruned"]
"""``pruned``: dropped by the relaxation funnel (:mod:`~diffcrystal.potential.funnel`) before the end."""

RANKABLE_STATUSES = ("converged",)
"""Statuses whose energies enter the main ranking (minima of the potential)."""


@dataclass(frozen=True)
class RelaxSettings:
    """How to relax: ``fmax`` (eV/Å), ``max_steps``, the ``optimizer`` (``FIRE``/``BFGS``; the
    ``batched`` engine runs FIRE only), the ``engine`` (:data:`ENGINES`; ``None``:
    :data:`DEFAULT_ENGINE` for FIRE, ``ase`` for BFGS) and ``prerelax``: a
    potential (name or fitted-model path, typically a fast student) that relaxes every structure
    first, the main potential finishing from its result (``None``: no pre-relaxation)."""

    fmax: float = DEFAULT_FMAX_EV_A
    max_steps: int = DEFAULT_MAX_STEPS
    optimizer: Literal["FIRE", "BFGS"] = "FIRE"
    engine: Literal["batched", "ase"] | None = None
    prerelax: str | None = None

    def __post_init__(self) -> None:
        if not (self.fmax > 0 and math.isfinite(self.fmax)):
            raise InputError(f"fmax must be a positive number of eV/Å, got {self.fmax}")
        if int(self.max_steps) < 0:
            raise InputError(f"max_steps must be >= 0, got {self.max_steps}")
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"unknown optimizer {self.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
        if self.engine is None:
            object.__setattr__(self, "engine", DEFAULT_ENGINE if self.optimizer == "FIRE" else "ase")
        if self.engine not in ENGINES:
            raise InputError(f"unknown engine {self.engine!r}; valid: {', '.join(ENGINES)}")
        if self.engine == "batched" and self.optimizer != "FIRE":
            raise InputError(f"the batched engine runs FIRE only; use engine 'ase' for {self.optimizer}")


@dataclass
class RelaxResult:
    """Outcome of relaxing one structure.

    ``energy_per_atom`` in eV/atom, ``max_force`` the largest atomic force norm in eV/Å,
    ``stress`` the final Voigt stress (xx, yy, zz, yz, xz, xy) in eV/Å³, ``atoms`` the final
    structure (``None`` when unusable), ``space_group`` / ``space_group_number`` found by spglib
    after relaxation, ``potential`` the :func:`potential_label` used; after a pre-relaxation,
    ``prerelax_status`` / ``prerelax_steps`` are its outcome and steps (``steps`` are the main
    potential's).
    """

    label: str
    status: Status
    potential: str
    energy_per_atom: float = float("nan")
    converged: bool = False
    steps: int = 0
    max_force: float = float("nan")
    stress: tuple[float, ...] = field(default_factory=lambda: (float("nan"),) * 6)
    num_atoms: int = 0
    formula: str = ""
    space_group: str = ""
    space_group_number: int = 0
    reason: str = ""
    atoms: object = None
    prerelax_status: str = ""
    prerelax_steps: int = 0

    @property
    def rankable(self) -> bool:
        """Whether the energy may enter the main ranking (converged, finite)."""
        return self.status in RANKABLE_STATUSES and math.isfinite(self.energy_per_atom)

    @property
    def unconverged(self) -> bool:
        """A finite energy, but forces still above ``fmax`` at the step cap."""
        return self.status == "not_converged" and math.isfinite(self.energy_per_atom)

    @property
    def crystal(self) -> Crystal:
        """The relaxed structure as a :class:`Crystal` (raises when there is none)."""
        if self.atoms is None:
            raise InputError(f"{self.label}: no relaxed structure ({self.status}: {self.reason})")
        return Crystal.from_atoms(self.atoms, label=self.label)

    @property
    def structure(self):
        """The relaxed structure as a pymatgen ``Structure`` (raises when there is none)."""
        return self.crystal.to_structure()

    @property
    def energy(self) -> float:
        """Total energy in eV."""
        return self.energy_per_atom * self.num_atoms


class _Exploded(Exception):
    """Raised from the per-step check to stop an optimizer on a structure that blew up."""


def explosion_reason(atoms, energy: float | None = None, forces=None, stress=None) -> str:
    """Why ``atoms`` (with optional energy in eV, forces (N, 3) eV/Å, stress (6,) eV/Å³) counts as
    exploded, or ``''`` when it is sane. See the module docstring for the criteria."""
    from ase.neighborlist import neighbor_list

    cell = np.asarray(atoms.cell.array, dtype=float)
    positions = np.asarray(atoms.positions, dtype=float)
    if not (np.all(np.isfinite(cell)) and np.all(np.isfinite(positions))):
        return "non-finite positions or cell"
    for name, value in (("energy", energy), ("forces", forces), ("stress", stress)):
        if value is not None and not np.all(np.isfinite(np.asarray(value, dtype=float))):
            return f"non-finite {name}"
    volume = abs(float(np.linalg.det(cell)))
    if volume < MIN_VOLUME_A3:
        return f"cell volume {volume:.3g} Å³ < {MIN_VOLUME_A3} Å³"
    per_atom = volume / len(atoms)
    if per_atom > MAX_VOLUME_PER_ATOM_A3:
        return f"volume per atom {per_atom:.1f} Å³ > {MAX_VOLUME_PER_ATOM_A3} Å³"
    distances = neighbor_list("d", atoms, MIN_DISTANCE_A)
    if distances.size:
        return f"atoms {float(distances.min()):.3f} Å apart (< {MIN_DISTANCE_A} Å)"
    return ""


def _reduced_formula(atoms) -> str:
    """Reduced formula as pymatgen (and :attr:`Crystal.formula`) writes it, e.g. ``'Cu3Au'``."""
    from pymatgen.core import Composition

    return Composition(atoms.get_chemical_formula()).reduced_formula if len(atoms) else ""


TREND_WINDOW_STEPS = 50
"""Steps over which a relaxation stopped at the step cap reports its energy change."""


def _energy_trend(energies: Sequence[float], num_atoms: int) -> str:
    """``'; energy fell 0.041 eV/atom over the last 50 steps'`` (a relaxation still descending,
    which more steps may finish) or ``''`` when there are too few steps to tell."""
    window = min(TREND_WINDOW_STEPS, len(energies) - 1)
    if window < 1:
        return ""
    change = (energies[-1] - energies[-1 - window]) / num_atoms
    verb = "fell" if change < 0 else "rose"
    return f"; energy {verb} {abs(change):.3g} eV/atom over the last {window} steps"


def _optimizer_class(name: str):
    from ase.optimize import BFGS, FIRE

    return {"FIRE": FIRE, "BFGS": BFGS}[name]


def relax_atoms(atoms, calculator, settings: RelaxSettings = RelaxSettings(), label: str = "",
                potential: str = "", threads: int | None = 1) -> RelaxResult:
    """Relax one structure (positions and cell) with ``calculator``; never raises on bad input.

    ``atoms``: ASE ``Atoms`` (periodic) or :class:`Crystal`. ``threads`` caps torch and BLAS
    threads while relaxing (``None``: leave them); see :func:`limited_threads`.
    Returns a :class:`RelaxResult`.
    """
    if threads is None:
        return _relax_atoms(atoms, calculator, settings, label, potential)
    with limited_threads(threads):
        return _relax_atoms(atoms, calculator, settings, label, potential)


def prepared_atoms(item, result: RelaxResult):
    """A copy of ``item`` (ASE ``Atoms``, :class:`Crystal` or :class:`MissingStructure`) as
    periodic ASE ``Atoms`` ready to relax, or ``None`` with ``result``'s ``status`` and
    ``reason`` set (missing structure, not periodic, exploded at input). Sets ``num_atoms`` and
    ``formula``; may raise on unreadable input (the caller records ``'failed'``)."""
    if isinstance(item, MissingStructure):
        result.reason = item.reason
        return None
    atoms = item.to_atoms() if isinstance(item, Crystal) else item.copy()
    atoms.calc = None
    result.num_atoms = len(atoms)
    result.formula = _reduced_formula(atoms)
    if len(atoms) == 0 or not all(atoms.pbc):
        result.reason = "not a periodic structure with atoms"
        return None
    reason = explosion_reason(atoms)
    if reason:
        result.status, result.reason = "exploded", f"input: {reason}"
        return None
    return atoms


def record_final(result: RelaxResult, atoms, energy: float, forces, stress, converged: bool,
                 energies: Sequence[float], settings: RelaxSettings) -> RelaxResult:
    """Fill ``result`` from the final state of a relaxation that did not explode: ``atoms``
    (final structure), ``energy`` (eV), ``forces`` (N, 3) eV/Å, Voigt ``stress`` (6,) eV/Å³,
    whether it ``converged``, and ``energies`` (eV, one per step, step 0 first) for the trend
    of a capped run. Sets ``status`` and the space group found by spglib."""
    result.energy_per_atom = float(energy) / len(atoms)
    result.max_force = float(np.linalg.norm(forces, axis=1).max())
    result.stress = tuple(float(s) for s in stress)
    result.converged = bool(converged)
    result.status = "converged" if converged else "not_converged"
    if not converged:
        result.reason = (f"fmax {settings.fmax} eV/Å not reached in {settings.max_steps} steps"
                         + _energy_trend(energies, len(atoms)))
    final = atoms.copy()
    final.calc = None
    found = space_group(Crystal.from_atoms(final, label=result.label))
    result.space_group, result.space_group_number = found.symbol, found.number
    result.atoms = final
    return result


def _relax_atoms(atoms, calculator, settings: RelaxSettings, label: str, potential: str) -> RelaxResult:
    from ase.filters import FrechetCellFilter

    result = RelaxResult(label=label, status="failed", potential=potential)
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
            why = explosion_reason(atoms, energies[-1], atoms.get_forces(), atoms.get_stress())
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
        forces = atoms.get_forces()
        stress = atoms.get_stress()
        reason = explosion_reason(atoms, energy, forces, stress)
        result.steps = int(optimizer.nsteps)
        if reason:
            result.status, result.reason = "exploded", f"final: {reason}"
            return result
        record_final(result, atoms, energy, forces, stress, converged, energies, settings)
    except Exception as error:  # a bad structure must never stop the batch
        result.status, result.reason = "failed", f"{type(error).__name__}: {error}"
        result.atoms = None
    return result


# ---------------------------------------------------------------------- batches
_WORKER: dict = {}


THREAD_ENVIRONMENT = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
"""Variables that cap BLAS/OpenMP threads in worker processes (set while they start), so
``workers`` processes never oversubscribe the cores."""


@contextlib.contextmanager
def _thread_environment(threads: int):
    saved = {name: os.environ.get(name) for name in THREAD_ENVIRONMENT}
    os.environ.update({name: str(threads) for name in THREAD_ENVIRONMENT})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def limited_threads(threads: int):
    """Cap torch and BLAS/OpenMP threads in this process, restoring them on exit (on a busy
    2-core machine two torch threads per process made SevenNet-0 calls ~10x slower)."""
    import sys

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it only torch's threads are capped
        threadpool_limits = None
    torch = sys.modules.get("torch")
    previous = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads) if threadpool_limits else contextlib.nullcontext():
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(previous)


def _init_worker(potential: str, device: str, threads: int) -> None:
    """Build the worker's calculator; a failure is kept (not raised, which would print a
    traceback per worker and break the pool) and reported by the first task."""
    try:
        if potential_label(potential) != "emt":  # EMT needs no torch; skip its import cost
            import torch

            torch.set_num_threads(threads)
        _WORKER["calculator"] = load_calculator(potential, device=device)
        _WORKER["potential"] = potential_label(potential)
    except Exception as error:
        message = (str(error) if isinstance(error, InputError)
                   else f"cannot load potential {potential}: {type(error).__name__}: {error}")
        _WORKER["error"] = (message.strip().splitlines() or [""])[0]


def _relax_in_worker(index: int, label: str, atoms, settings: RelaxSettings):
    if "error" in _WORKER:
        raise InputError(_WORKER["error"])
    return index, relax_atoms(atoms, _WORKER["calculator"], settings, label, _WORKER["potential"],
                              threads=None)


def _relax_batch_in_worker(indices: list[int], items: list, settings: RelaxSettings):
    """Relax ``items`` together with the batched engine in a worker; (indices, results)."""
    from diffcrystal.potential.batched_relax import batch_evaluator, relax_batched

    if "error" in _WORKER:
        raise InputError(_WORKER["error"])
    evaluator = batch_evaluator(_WORKER["potential"], _WORKER["calculator"])
    return indices, relax_batched(items, evaluator, settings, _WORKER["potential"], progress=False,
                                  threads=None)


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


def check_potential(potential: str) -> str:
    """Validate ``potential`` cheaply (name, path, installed packages, model file format) and
    return its label; raises :class:`InputError`."""
    label = potential_label(potential)
    require_packages(label)
    if label == "chgnet":
        load_calculator(label)  # raises the clear InputError when chgnet is absent
    if label.startswith("nequip:"):
        check_model_file(Path(label.split(":", 1)[1]))
    return label


def relax_many(
    structures: Sequence,
    potential: str = DEFAULT_POTENTIAL,
    settings: RelaxSettings = RelaxSettings(),
    workers: int = DEFAULT_WORKERS,
    device: str = "cpu",
    threads_per_worker: int = 1,
    progress: bool = True,
    calculator=None,
) -> list[RelaxResult]:
    """Relax a batch; results in input order, one per structure, never raising for one of them.

    Parameters
    ----------
    structures : ASE ``Atoms`` (label from ``atoms.info['label']``), :class:`Crystal` (its
        ``label``) or ``(label, Atoms | Crystal | MissingStructure)`` pairs (a missing one gives
        a ``failed`` result with its reason).
    potential : a name or model path (:func:`~diffcrystal.potential.calculators.load_calculator`).
    workers : worker processes; 1 relaxes in this process (with ``calculator`` if given).
    threads_per_worker : torch / BLAS threads in each worker process (and in this process while
        relaxing when ``workers=1``).
    progress : show a tqdm progress bar (structures finished, and structures per second).

    ``settings.engine`` ``'batched'`` relaxes the structures together with batched potential
    calls: all of them in this process with ``workers=1`` or on a GPU ``device``, else in batches
    of :data:`CPU_BATCH_STRUCTURES` over ``workers`` processes; ``'ase'`` spreads one ASE
    optimizer per structure over ``workers`` processes. With
    ``settings.prerelax`` every structure is first relaxed with that potential (same engine,
    ``fmax`` and step cap) and then with ``potential`` from where it ended (from its input when
    the pre-relaxation left no structure).
    """
    if workers < 1:
        raise InputError(f"workers must be >= 1, got {workers}")
    label = check_potential(potential)
    items = _labelled(structures)
    if settings.prerelax is not None:
        check_potential(settings.prerelax)
        plain = replace(settings, prerelax=None)
        first = relax_many(items, settings.prerelax, plain, workers, device, threads_per_worker, progress)
        starts = [(name, done.atoms if done.atoms is not None else item)
                  for (name, item), done in zip(items, first)]
        results = relax_many(starts, potential, plain, workers, device, threads_per_worker, progress,
                             calculator)
        for result, done in zip(results, first):
            result.prerelax_status, result.prerelax_steps = done.status, done.steps
        return results
    batched = settings.engine == "batched"
    if batched and (workers == 1 or len(items) <= 1 or device != "cpu"):
        from diffcrystal.potential.batched_relax import batch_evaluator, relax_batched

        calc = calculator if calculator is not None else load_calculator(potential, device=device)
        return relax_batched(items, batch_evaluator(label, calc), settings, label, progress,
                             threads=threads_per_worker)
    return _relax_pool(items, label, potential, settings, workers, device, threads_per_worker,
                       progress, calculator)


CPU_BATCH_STRUCTURES = 8
"""Most structures per batched relaxation a CPU worker process takes at a time (fewer when
that leaves a worker idle): on CPU a batched
call saves nothing per structure (:data:`~diffcrystal.potential.batched_relax.DEFAULT_MAX_ATOMS_PER_CALL`),
so ``workers`` processes share the set in small batches (the cores in use without the
synchronisation cost of multi-threaded torch on a busy machine, and a progress bar that moves)."""


def _relax_pool(items, label: str, potential: str, settings: RelaxSettings, workers: int,
                device: str, threads_per_worker: int, progress: bool, calculator) -> list[RelaxResult]:
    """:func:`relax_many` in this process (``workers=1``, ``ase`` engine) or over a ``spawn``
    process pool: one ASE optimizer per structure (``ase``) or batched relaxations of
    :data:`CPU_BATCH_STRUCTURES` structures (``batched``) per task."""
    from tqdm.auto import tqdm

    results: list[RelaxResult | None] = [None] * len(items)
    bar = tqdm(total=len(items), desc=f"relax {settings.engine} ({label.split('/')[-1]})",
               disable=not progress, unit="structure")
    if settings.engine == "batched":
        size = max(1, min(CPU_BATCH_STRUCTURES, math.ceil(len(items) / workers)))
        tasks = [(_relax_batch_in_worker, list(range(start, min(start + size, len(items)))),
                  items[start:start + size], settings) for start in range(0, len(items), size)]
    else:
        tasks = [(_relax_in_worker, i, name, atoms, settings) for i, (name, atoms) in enumerate(items)]
    if workers == 1 or len(items) <= 1:
        calc = calculator if calculator is not None else load_calculator(potential, device=device)
        for i, (name, atoms) in enumerate(items):
            results[i] = relax_atoms(atoms, calc, settings, name, label, threads_per_worker)
            bar.update()
    else:
        context = multiprocessing.get_context("spawn")
        try:
            with _thread_environment(threads_per_worker), ProcessPoolExecutor(
                max_workers=min(workers, len(items)),
                mp_context=context,
                initializer=_init_worker,
                initargs=(potential, device, threads_per_worker),
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
            for i, (name, _) in enumerate(items):
                if results[i] is None:
                    results[i] = RelaxResult(name, "failed", label, reason=f"worker died: {error}")
    bar.close()
    return results  # type: ignore[return-value]


def available_cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
