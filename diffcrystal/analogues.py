"""Structure templates by chemical analogy: known crystals of the same stoichiometry whose
elements are nearest to a target's on Pettifor's chemical scale.

A chemist predicting the structure of a new compound first looks for known compounds of the
same formula type made of similar elements (Pettifor's structure maps; the template step of
CSPML and of DiffCSP++, arXiv:2402.03992). This module does that lookup over a set of
training crystals:

- **Formula type**: the sorted counts of the reduced formula, e.g. ``(1, 1, 3)`` for ABX3;
  only training crystals of the target's type are analogues.
- **Element pairing**: each composition's elements sorted by (reduced count, Mendeleev number
  M, Z); the i-th elements of the two lists are paired. Pairs always have equal counts, and
  within a group of equal counts the sorted pairing minimises ``sum |M_a - M_b|`` (optimal
  one-dimensional transport), so no other count-preserving bijection is closer.
- **Distance** (Mendeleev units per atom of the reduced formula):
  ``d = sum_i c_i |M(target_i) - M(template_i)| / sum_i c_i``; 0 for the same elements.
- **Order**: templates with the target's atom count first (same number of formula units per
  cell), then by ``d``, then by energy above the hull (the ``e_above_hull`` property when the
  data carry it, most stable first), then by position in the training data.

An :class:`Analogue` gives the template with the target's species substituted (the geometry
of the ``analogue`` baseline) and the template's space group and Wyckoff assignment with the
target's species (the constraint under which a model samples with ``--spacegroup-from-analogues``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from diffcrystal.data.composition import Composition
from diffcrystal.data.crystal import Crystal
from diffcrystal.errors import InputError
from diffcrystal.symmetry import SYMPREC_TIGHT

__all__ = ["Analogue", "AnalogueLibrary", "formula_type", "mendeleev_number"]


@cache
def mendeleev_number(atomic_number: int) -> float:
    """Pettifor's Mendeleev number of an element (pymatgen's table), e.g. Na 11, Cl 99."""
    from pymatgen.core import Element

    value = Element.from_Z(int(atomic_number)).mendeleev_no
    if value is None:
        raise InputError(f"element Z={atomic_number} has no Mendeleev number; it cannot be paired with analogues")
    return float(value)


def formula_type(counts: Composition) -> tuple[int, ...]:
    """Sorted counts of the reduced formula: ``{Sr: 1, Ti: 1, O: 3}`` -> ``(1, 1, 3)``."""
    divisor = math.gcd(*counts.values())
    return tuple(sorted(c // divisor for c in counts.values()))


def _paired_order(counts: Composition) -> tuple[tuple[int, ...], np.ndarray, np.ndarray]:
    """Elements sorted by (reduced count, Mendeleev number, Z), with their reduced counts and
    Mendeleev numbers: the order in which two compositions' elements are paired."""
    divisor = math.gcd(*counts.values())
    elements = tuple(sorted(counts, key=lambda z: (counts[z] // divisor, mendeleev_number(z), z)))
    reduced = np.array([counts[z] // divisor for z in elements], dtype=np.float64)
    numbers = np.array([mendeleev_number(z) for z in elements], dtype=np.float64)
    return elements, reduced, numbers


def _composition_of(crystal: Crystal) -> Composition:
    elements, counts = np.unique(crystal.atomic_numbers, return_counts=True)
    return {int(z): int(c) for z, c in zip(elements, counts)}


@dataclass(frozen=True)
class Analogue:
    """A training crystal ``template`` whose element ``species_map[z]`` takes the place of its
    element ``z``, at Mendeleev distance ``distance`` from the target."""

    template: Crystal
    species_map: dict[int, int]
    distance: float
    library: "AnalogueLibrary" = field(repr=False, compare=False)
    index: int = 0
    """Position of the template in the library's crystals."""

    def substituted(self) -> Crystal:
        """The template's lattice and coordinates carrying the target's species."""
        species = np.array([self.species_map[int(z)] for z in self.template.atomic_numbers])
        return Crystal(self.template.lattice, self.template.frac_coords, species,
                       label=f"{self.template.label} as analogue")

    def assignment(self):
        """The template's :class:`~diffcrystal.spacegroup.WyckoffAssignment` (spglib at
        :data:`~diffcrystal.symmetry.SYMPREC_TIGHT`) with the target's species; every atom on
        1a of P1 when spglib finds no group."""
        from diffcrystal.spacegroup import Orbit, WyckoffAssignment

        own = self.library.assignment(self.index)
        return WyckoffAssignment(own.spacegroup, tuple(Orbit(self.species_map[o.atomic_number], o.site)
                                                        for o in own.orbits))


class AnalogueLibrary:
    """Training crystals indexed by formula type (see the module docstring)."""

    def __init__(self, crystals: Sequence[Crystal]):
        if not crystals:
            raise InputError("the training data hold no structures to take analogues from")
        self.crystals = tuple(crystals)
        self._by_type: dict[tuple[int, ...], list[int]] = {}
        self._paired: list[tuple[tuple[int, ...], np.ndarray, np.ndarray]] = []
        for index, crystal in enumerate(self.crystals):
            counts = _composition_of(crystal)
            self._paired.append(_paired_order(counts))
            self._by_type.setdefault(formula_type(counts), []).append(index)
        self._assignments: dict[int, object] = {}

    def __len__(self) -> int:
        return len(self.crystals)

    def assignment(self, index: int):
        """Wyckoff assignment of training crystal ``index`` (computed once, then kept)."""
        if index not in self._assignments:
            from diffcrystal.spacegroup import Orbit, WyckoffAssignment, assignment_of

            crystal = self.crystals[index]
            self._assignments[index] = assignment_of(crystal, SYMPREC_TIGHT) or WyckoffAssignment(
                1, tuple(Orbit(int(z), "1a") for z in crystal.atomic_numbers))
        return self._assignments[index]

    def analogues(self, composition: Composition, num_atoms: int | None = None) -> list[Analogue]:
        """Every training crystal of ``composition``'s formula type, nearest first (order in the
        module docstring); ``num_atoms``: the target cell's atom count (None: not used)."""
        if not composition or min(composition.values()) < 1:
            raise InputError(f"composition must have positive counts, got {composition}")
        elements, reduced, numbers = _paired_order(composition)
        found = []
        for index in self._by_type.get(formula_type(composition), ()):
            template_elements, _, template_numbers = self._paired[index]
            distance = float(np.sum(reduced * np.abs(numbers - template_numbers)) / reduced.sum())
            crystal = self.crystals[index]
            e_hull = crystal.properties.get("e_above_hull")
            stability = float(e_hull) if e_hull is not None and np.isfinite(e_hull) else math.inf
            key = (num_atoms is not None and crystal.num_atoms != num_atoms, distance, stability, index)
            found.append((key, Analogue(crystal, dict(zip(template_elements, elements)), distance, self, index)))
        return [analogue for _, analogue in sorted(found, key=lambda pair: pair[0])]

    def distinct_analogues(self, composition: Composition, k: int, num_atoms: int | None = None) -> list[Analogue]:
        """The first ``k`` analogues of pairwise different structure type (space group and
        Wyckoff sites with the target's species); fewer when the data hold fewer."""
        chosen, seen = [], set()
        for analogue in self.analogues(composition, num_atoms):
            assignment = analogue.assignment()
            kind = (assignment.spacegroup, tuple(sorted((o.atomic_number, o.site) for o in assignment.orbits)))
            if kind not in seen:
                seen.add(kind)
                chosen.append(analogue)
                if len(chosen) == k:
                    break
        return chosen
