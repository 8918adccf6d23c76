"""The records of a relaxation: its settings, its result, and the checks that decide its status.

Both engines (:mod:`~diffcrystal.potential.relax`, ASE optimizers; and
:mod:`~diffcrystal.potential.batched_relax`, FIRE over a batch in torch) read
:class:`RelaxSettings` and fill a :class:`RelaxResult` per structure through the same helpers:
:func:`prepared_atoms` (input checks), :func:`explosion_reason` (checked after every step) and
:func:`record_final` (the final state). A structure has *exploded* when

- energy, forces, stress, positions or cell are not finite,
- two atoms are closer than :data:`~diffcrystal.symmetry.MIN_DISTANCE_A` (0.5 Å), or closer
  than :data:`COLLAPSE_FRACTION` of the sum of their covalent radii (no bond is that short:
  N≡N and C≡O are 0.77-0.80 of it; a universal potential can lack the repulsive wall there and
  pull such pairs into a hole hundreds of eV/atom deep, which would rank first), or
- the volume per atom exceeds :data:`~diffcrystal.symmetry.MAX_VOLUME_PER_ATOM_A3`.

A structure still above ``fmax`` after ``max_steps`` is ``'not_converged'``: its energy is not
that of a minimum, so :attr:`RelaxResult.rankable` (converged only) keeps it out of the main
ranking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np

from diffcrystal.data.crystal import MIN_VOLUME_A3, Crystal
from diffcrystal.errors import InputError
from diffcrystal.potential.io import MissingStructure
from diffcrystal.symmetry import MAX_VOLUME_PER_ATOM_A3, MIN_DISTANCE_A, space_group

DEFAULT_FMAX_EV_A = 0.02
"""Convergence threshold on the largest (generalised) force, eV/Å (DESIGN.md)."""

DEFAULT_MAX_STEPS = 500
"""Step cap of one relaxation; a structure still above ``fmax`` is recorded as not converged."""

OPTIMIZERS = ("FIRE", "BFGS")
"""ASE optimizers accepted by :class:`RelaxSettings`."""

ENGINES = ("batched", "ase")
"""How a set is relaxed: ``batched`` — all structures in one process, one batched potential
call per optimizer step (:mod:`~diffcrystal.potential.batched_relax`); ``ase`` — one ASE
optimizer per structure over a process pool (the reference)."""

DEFAULT_ENGINE = "batched"
"""Engine when none is named (same verdicts as ``ase`` with either optimizer; see
docs/benchmarks.md)."""

Status = Literal["converged", "not_converged", "exploded", "failed", "pruned", "duplicate"]

RANKABLE_STATUSES = ("converged",)
"""Statuses whose energies enter the main ranking (minima of the potential)."""

TREND_WINDOW_STEPS = 50
"""Steps over which a relaxation stopped at the step cap reports its energy change."""


@dataclass(frozen=True)
class RelaxSettings:
    """How to relax: ``fmax`` (eV/Å), ``max_steps``, the ``optimizer`` (``FIRE``/``BFGS``, ASE's,
    in either engine), the ``engine`` (:data:`ENGINES`; ``None``: :data:`DEFAULT_ENGINE`) and
    ``prerelax``: a
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
            object.__setattr__(self, "engine", DEFAULT_ENGINE)
        if self.engine not in ENGINES:
            raise InputError(f"unknown engine {self.engine!r}; valid: {', '.join(ENGINES)}")


@dataclass
class RelaxResult:
    """Outcome of relaxing one structure.

    ``energy_per_atom`` in eV/atom; ``max_force`` in eV/Å the quantity tested against ``fmax``:
    the largest row norm of the generalised forces on atoms and cell (ASE's
    ``FrechetCellFilter``; for the atoms ``f F`` with ``F`` the cell deformation, for the cell
    its stress term), so a converged result always has ``max_force < fmax``; ``stress`` the
    final Voigt stress (xx, yy, zz, yz, xz, xy) in eV/Å³; ``atoms`` the final structure
    (``None`` when unusable: see :attr:`ok`); ``space_group`` / ``space_group_number`` found by
    spglib (0.1 Å) after relaxation; ``potential`` the potential's label; after a
    pre-relaxation, ``prerelax_status`` / ``prerelax_steps`` are its outcome and steps
    (``steps`` are the main potential's).
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
    def ok(self) -> bool:
        """Whether there is a relaxed structure (``converged`` or ``not_converged``); when not,
        :attr:`structure` and :attr:`crystal` are ``None`` and :attr:`reason` says why."""
        return self.atoms is not None

    @property
    def rankable(self) -> bool:
        """Whether the energy may enter the main ranking (converged, finite)."""
        return self.status in RANKABLE_STATUSES and math.isfinite(self.energy_per_atom)

    @property
    def unconverged(self) -> bool:
        """A finite energy, but forces still above ``fmax`` at the step cap."""
        return self.status == "not_converged" and math.isfinite(self.energy_per_atom)

    @property
    def crystal(self) -> Crystal | None:
        """The relaxed structure as a :class:`Crystal`, ``None`` when there is none (:attr:`ok`)."""
        return Crystal.from_atoms(self.atoms, label=self.label) if self.ok else None

    @property
    def structure(self):
        """The relaxed structure as a pymatgen ``Structure``, ``None`` when there is none
        (an exploded or failed relaxation; :attr:`ok`)."""
        return self.crystal.to_structure() if self.ok else None

    @property
    def energy(self) -> float:
        """Total energy in eV."""
        return self.energy_per_atom * self.num_atoms


COLLAPSE_FRACTION = 0.5
"""Shortest sane distance of a pair of atoms, as a fraction of the sum of their covalent radii
(ASE's ``covalent_radii``, Cordero et al. 2008)."""


def _too_close(atoms) -> str:
    """Why two atoms of ``atoms`` are too close (below :data:`MIN_DISTANCE_A`, or below
    :data:`COLLAPSE_FRACTION` of their covalent radii sum), naming the worst pair, or ''. One
    neighbour list serves both tests (this runs after every relaxation step)."""
    from ase.data import chemical_symbols, covalent_radii
    from ase.neighborlist import neighbor_list

    radii = covalent_radii[atoms.numbers]
    cutoff = max(MIN_DISTANCE_A, COLLAPSE_FRACTION * 2.0 * float(radii.max()))
    first, second, distances = neighbor_list("ijd", atoms, cutoff)
    if not distances.size:
        return ""
    if distances.min() < MIN_DISTANCE_A:
        return f"atoms {float(distances.min()):.3f} Å apart (< {MIN_DISTANCE_A} Å)"
    ratio = distances / (radii[first] + radii[second])
    worst = int(np.argmin(ratio))
    if ratio[worst] >= COLLAPSE_FRACTION:
        return ""
    a, b = chemical_symbols[atoms.numbers[first[worst]]], chemical_symbols[atoms.numbers[second[worst]]]
    bond = radii[first[worst]] + radii[second[worst]]
    return (f"{a}-{b} {distances[worst]:.3f} Å apart (< {COLLAPSE_FRACTION:g} x their covalent radii sum "
            f"{bond:.2f} Å)")


def explosion_reason(atoms, energy: float | None = None, forces=None, stress=None) -> str:
    """Why ``atoms`` (with optional energy in eV, forces (N, 3) eV/Å, stress (6,) eV/Å³) counts as
    exploded, or ``''`` when it is sane. See the module docstring for the criteria."""
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
    return _too_close(atoms)


def _reduced_formula(atoms) -> str:
    """Reduced formula as pymatgen (and :attr:`Crystal.formula`) writes it, e.g. ``'Cu3Au'``."""
    from pymatgen.core import Composition

    return Composition(atoms.get_chemical_formula()).reduced_formula if len(atoms) else ""


def _energy_trend(energies: Sequence[float], num_atoms: int) -> str:
    """``'; energy fell 0.041 eV/atom over the last 50 steps'`` (a relaxation still descending,
    which more steps may finish) or ``''`` when there are too few steps to tell."""
    window = min(TREND_WINDOW_STEPS, len(energies) - 1)
    if window < 1:
        return ""
    change = (energies[-1] - energies[-1 - window]) / num_atoms
    verb = "fell" if change < 0 else "rose"
    return f"; energy {verb} {abs(change):.3g} eV/atom over the last {window} steps"


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


def record_final(result: RelaxResult, atoms, energy: float, max_force: float, stress,
                 converged: bool, energies: Sequence[float], settings: RelaxSettings) -> RelaxResult:
    """Fill ``result`` from the final state of a relaxation that did not explode: ``atoms``
    (final structure), ``energy`` (eV), ``max_force`` (eV/Å, the largest generalised force the
    convergence test used), Voigt ``stress`` (6,) eV/Å³, whether it ``converged``, and
    ``energies`` (eV, one per step, step 0 first) for the trend of a capped run. Sets
    ``status`` and the space group found by spglib."""
    result.energy_per_atom = float(energy) / len(atoms)
    result.max_force = float(max_force)
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
