"""Trivial CSP baselines: k candidates per target by a fixed rule, without a model.

A match rate means little without what a composition-blind rule reaches through the same
matcher. ``diffcrystal evaluate --baseline NAME`` scores these candidates exactly as it scores
a model's samples.

``prototype`` (single-structure-type datasets: ABX3 perovskites, Perov-5)
    The ideal cubic perovskite, Pm-3m, in the setting with A at the origin:
    A 1a (0, 0, 0), B 1b (½, ½, ½), X 3c (½, ½, 0), (½, 0, ½), (0, ½, ½). A target of Z
    formula units (5Z atoms) gets the Z×1×1 supercell. The composition decides only which
    atoms are anions: the 3Z most electronegative atoms (Pauling, ties by atomic number) go
    to the X sites, the other 2Z to the A and B sites, each group in random order, so A and
    B are placed at random. The cubic lattice constant comes from the median volume per
    atom of the training structures with the target's atom count (of all training
    structures when none has it), never from the target itself. A composition whose reduced
    formula does not have 5 atoms of at least two elements is refused.

``train``
    The lattice and fractional coordinates of a training structure with the target's atom
    count, drawn at random (without replacement when at least k have that count, else with
    replacement), carrying the target's species in the target file's order. When no training
    structure has that atom count, the target's k candidates are missing (``None``): it is
    counted unmatched and reported, never dropped.

``analogue``
    The nearest chemical analogue of the target in the training data
    (:mod:`diffcrystal.analogues`: same formula type, nearest elements on Pettifor's Mendeleev
    scale, the target's atom count first), its lattice and coordinates carrying the target's
    species; the k candidates are the k nearest analogues of distinct structure types (space
    group and Wyckoff sites), repeated in order when fewer exist. A target whose formula type
    no training structure has gets missing candidates (``None``), counted unmatched.

Randomness: target ``i`` draws from ``numpy.random.default_rng([seed, i])``, so its
candidates do not depend on the other targets (nor on ``--limit``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from diffcrystal.analogues import AnalogueLibrary
from diffcrystal.data.crystal import Crystal
from diffcrystal.errors import InputError

BaselineName = Literal["prototype", "train", "analogue"]
BASELINES: tuple[BaselineName, ...] = ("prototype", "train", "analogue")
"""The trivial CSP baselines (see the module docstring)."""

PEROVSKITE_A_SITE = (0.0, 0.0, 0.0)
"""Fractional position of the A site (Wyckoff 1a of Pm-3m)."""

PEROVSKITE_B_SITE = (0.5, 0.5, 0.5)
"""Fractional position of the B site (Wyckoff 1b)."""

PEROVSKITE_X_SITES = ((0.5, 0.5, 0.0), (0.5, 0.0, 0.5), (0.0, 0.5, 0.5))
"""Fractional positions of the three X sites (Wyckoff 3c)."""

PEROVSKITE_FORMULA_ATOMS = 5
"""Atoms in one ABX3 formula unit."""


@dataclass(frozen=True)
class TrainingGeometries:
    """Training structures in file order (``crystals``) and by atom count, the source of the
    baselines' geometry, with each structure's volume per atom (Å³) alongside."""

    crystals: tuple[Crystal, ...]
    by_num_atoms: dict[int, tuple[Crystal, ...]]
    volumes_per_atom: dict[int, np.ndarray]

    @classmethod
    def from_crystals(cls, crystals: Sequence[Crystal]) -> "TrainingGeometries":
        if not crystals:
            raise InputError("the training data hold no structures")
        groups: dict[int, list[Crystal]] = {}
        for crystal in crystals:
            groups.setdefault(crystal.num_atoms, []).append(crystal)
        return cls(
            tuple(crystals),
            {n: tuple(group) for n, group in sorted(groups.items())},
            {n: np.array([c.volume / n for c in group]) for n, group in sorted(groups.items())},
        )

    def median_volume_per_atom(self, num_atoms: int) -> float:
        """Median cell volume per atom (Å³) of the training structures with ``num_atoms``
        atoms, or of all of them when none has that count."""
        if num_atoms in self.volumes_per_atom:
            return float(np.median(self.volumes_per_atom[num_atoms]))
        return float(np.median(np.concatenate(list(self.volumes_per_atom.values()))))


def _perovskite_roles(target: Crystal, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the target's atoms for the A/B sites and for the X sites (see the module
    docstring); raises :class:`InputError` when the composition is not ABX3."""
    from pymatgen.core import Composition, Element

    numbers = target.atomic_numbers
    elements, counts = np.unique(numbers, return_counts=True)
    formula_units = np.gcd.reduce(counts)
    if counts.sum() // formula_units != PEROVSKITE_FORMULA_ATOMS or len(elements) < 2:
        formula = Composition({Element.from_Z(int(z)): int(c) for z, c in zip(elements, counts)}).reduced_formula
        raise InputError(
            f"--baseline prototype builds ABX3 perovskites; target {index} ({target.label or 'no label'}) "
            f"is {formula}, whose formula unit does not have 5 atoms of at least two elements"
        )
    electronegativity = {int(z): Element.from_Z(int(z)).X for z in elements}
    if any(not np.isfinite(x) for x in electronegativity.values()):
        raise InputError(f"--baseline prototype: target {index} holds an element without electronegativity")
    order = sorted(range(len(numbers)), key=lambda i: (-electronegativity[int(numbers[i])], int(numbers[i])))
    n_anions = 3 * (len(numbers) // PEROVSKITE_FORMULA_ATOMS)
    return np.array(order[n_anions:]), np.array(order[:n_anions])


def perovskite_prototype(target: Crystal, index: int, volume_per_atom_A3: float, rng: np.random.Generator) -> Crystal:
    """The cubic perovskite (Z×1×1 cell, lattice constant from ``volume_per_atom_A3``, Å³)
    with ``target``'s atoms: anions on X sites, the others on A/B sites, both at random.
    ``index`` names the target in errors."""
    cations, anions = _perovskite_roles(target, index)
    z = target.num_atoms // PEROVSKITE_FORMULA_ATOMS
    a = (volume_per_atom_A3 * PEROVSKITE_FORMULA_ATOMS) ** (1.0 / 3.0)  # Å, cubic formula-unit cell
    shifts = np.arange(z)[:, None] * np.array([1.0, 0.0, 0.0])  # (Z, 3), cells along a
    ab_sites = np.vstack([np.array(PEROVSKITE_A_SITE) + shifts, np.array(PEROVSKITE_B_SITE) + shifts])  # (2Z, 3)
    x_sites = (np.array(PEROVSKITE_X_SITES)[None] + shifts[:, None]).reshape(-1, 3)  # (3Z, 3)
    frac = np.vstack([ab_sites, x_sites]) / np.array([z, 1.0, 1.0])  # (5Z, 3)
    atoms = np.concatenate([rng.permutation(cations), rng.permutation(anions)])
    lattice = np.diag([z * a, a, a])
    return Crystal(lattice, frac, target.atomic_numbers[atoms], label=f"prototype of {target.label}")


def prototype_candidates(
    target: Crystal, index: int, k: int, training: TrainingGeometries, rng: np.random.Generator
) -> list[Crystal]:
    """``k`` cubic-perovskite candidates for ``target`` (species placed at random)."""
    volume = training.median_volume_per_atom(target.num_atoms)
    return [perovskite_prototype(target, index, volume, rng) for _ in range(k)]


def train_candidates(
    target: Crystal, k: int, training: TrainingGeometries, rng: np.random.Generator
) -> list[Crystal | None]:
    """``k`` training geometries with ``target``'s atom count and species (in its order);
    ``k`` times ``None`` when the training data have no structure of that size."""
    pool = training.by_num_atoms.get(target.num_atoms, ())
    if not pool:
        return [None] * k
    chosen = rng.choice(len(pool), size=k, replace=len(pool) < k)
    return [
        Crystal(pool[i].lattice, pool[i].frac_coords, target.atomic_numbers, label=f"{pool[i].label} as {target.label}")
        for i in chosen
    ]


def analogue_candidates(target: Crystal, k: int, library: AnalogueLibrary) -> list[Crystal | None]:
    """``k`` substituted nearest analogues of ``target`` of distinct structure types (cycled
    when fewer); ``k`` times ``None`` when the training data have none of its formula type."""
    return [a.substituted() for a in library.candidates_for(target, k)] or [None] * k


def baseline_predictions(
    name: BaselineName, targets: Sequence[Crystal], k: int, training: TrainingGeometries, seed: int
) -> list[list[Crystal | None]]:
    """``k`` candidates for every target by the baseline ``name`` (see the module docstring)."""
    if name not in BASELINES:
        raise InputError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")
    out = []
    library = AnalogueLibrary.from_crystals(training.crystals) if name == "analogue" else None
    for index, target in enumerate(targets):
        rng = np.random.default_rng([seed, index])
        if library is not None:
            out.append(analogue_candidates(target, k, library))
        elif name == "prototype":
            out.append(prototype_candidates(target, index, k, training, rng))
        else:
            out.append(train_candidates(target, k, training, rng))
    return out
