"""Wyckoff assignments: which Wyckoff positions of a space group the atoms of a composition take.

A crystal of space group G in G's conventional cell (ITA standard setting, as tabulated by
pyxtal) is fixed by its lattice and, per *orbit*, a species, a Wyckoff position ``ma`` (its
multiplicity m and letter) and the position's free parameters ``p`` (0 to 3 numbers): the m
atoms of the orbit sit at ``F_k = R_k p + τ_k`` (mod 1), k = 1..m, with ``(R_k, τ_k)`` the
affine maps of the position's coordinate triplets (e.g. ``x, x, x``; ``-x+1/2, x, 1/4``). A
position without free parameters (site symmetry of a point) can hold one orbit only.

:func:`enumerate_assignments` lists the assignments of a composition times Z formula units
(all Wyckoff tables are pyxtal's), keeping only those that *realise* G: a random instance
(random free parameters and cell in G's family) has space group G at spglib
``symprec = 0.01 Å``. Assignments whose every instance has more symmetry (e.g. CsCl on 1a + 1b
of P23 is always Pm-3m) are dropped, so a sample can carry exactly the requested group.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np

from diffcrystal.data.composition import SYMBOL_TO_Z, Composition, format_composition
from diffcrystal.errors import InputError

__all__ = [
    "MAX_ASSIGNMENTS",
    "Orbit",
    "WyckoffAssignment",
    "assignment_of",
    "check_spacegroup",
    "enumerate_assignments",
    "parse_assignment",
    "site_operations",
    "space_group_symbol",
]

MAX_ASSIGNMENTS = 1000
"""Most assignments :func:`enumerate_assignments` lists (simplest first: fewest orbits); the
count grows combinatorially in low-symmetry groups with many atoms."""

REALISATION_SEED = 0
"""Seed of the random instances that test whether an assignment realises its group."""


def check_spacegroup(number) -> int:
    """``number`` as an int in 1..230, else :class:`InputError`."""
    if isinstance(number, bool) or not isinstance(number, (int, np.integer)) or not 1 <= number <= 230:
        raise InputError(f"--spacegroup must be a space-group number in 1..230, got {number!r}")
    return int(number)


@functools.cache
def _group(number: int):
    from pyxtal.symmetry import Group

    return Group(check_spacegroup(number))


def space_group_symbol(number: int) -> str:
    """Hermann-Mauguin symbol of space group ``number``, e.g. ``'Fm-3m'`` for 225."""
    return str(_group(number).symbol)


@functools.cache
def _sites(number: int) -> dict[str, tuple[int, bool]]:
    """Wyckoff label (``'4a'``) -> (multiplicity, has free parameters), pyxtal's order
    (largest multiplicity first)."""
    return {wp.get_label(): (int(wp.multiplicity), bool(wp.get_dof() > 0)) for wp in _group(number)}


@functools.cache
def site_operations(number: int, site: str) -> tuple[np.ndarray, np.ndarray]:
    """``(R, τ)``: (m, 3, 3) and (m, 3) affine maps of Wyckoff position ``site`` of group
    ``number``; the orbit of free parameters ``p`` (3,) is ``R @ p + τ`` (mod 1). Columns of
    ``R`` for fixed coordinates are zero."""
    wp = next(wp for wp in _group(number) if wp.get_label() == site)
    rotations = np.array([op.rotation_matrix for op in wp.ops], dtype=np.float64)  # (m, 3, 3)
    translations = np.array([op.translation_vector for op in wp.ops], dtype=np.float64)  # (m, 3)
    return rotations, translations


@dataclass(frozen=True)
class Orbit:
    """One orbit: ``atomic_number`` on the Wyckoff position ``site`` (e.g. ``'4a'``)."""

    atomic_number: int
    site: str

    @property
    def multiplicity(self) -> int:
        return int(self.site[:-1])


@dataclass(frozen=True)
class WyckoffAssignment:
    """Space group ``spacegroup`` (1..230) and its ``orbits``; atoms are ordered orbit by orbit,
    within an orbit in the order of the position's coordinate triplets."""

    spacegroup: int
    orbits: tuple[Orbit, ...]

    @property
    def symbol(self) -> str:
        return space_group_symbol(self.spacegroup)

    @property
    def num_atoms(self) -> int:
        return sum(o.multiplicity for o in self.orbits)

    @classmethod
    def p1(cls, atomic_numbers) -> "WyckoffAssignment":
        """Every atom on 1a of P1: no constraint."""
        return cls(1, tuple(Orbit(int(z), "1a") for z in atomic_numbers))

    def atomic_numbers(self) -> list[int]:
        """(N,) species per atom, orbit by orbit."""
        return [o.atomic_number for o in self.orbits for _ in range(o.multiplicity)]

    @property
    def label(self) -> str:
        """E.g. ``'Na:4a,Cl:4b'``: the ``--wyckoff`` syntax, pasted back as one shell word."""
        from ase.data import chemical_symbols

        return ",".join(f"{chemical_symbols[o.atomic_number]}:{o.site}" for o in self.orbits)

    def composition(self) -> Composition:
        counts: dict[int, int] = {}
        for o in self.orbits:
            counts[o.atomic_number] = counts.get(o.atomic_number, 0) + o.multiplicity
        return dict(sorted(counts.items()))


def _formula_units(composition: Composition, counts: Composition) -> int | None:
    """Z with ``counts = Z * composition``, or None."""
    if set(counts) != set(composition):
        return None
    ratios = {counts[z] / composition[z] for z in composition}
    z = ratios.pop() if len(ratios) == 1 else None
    return int(z) if z is not None and z == int(z) and z >= 1 else None


def _species_solutions(count: int, sites: dict[str, tuple[int, bool]], limit: int) -> list[tuple[str, ...]]:
    """Multisets of site labels whose multiplicities sum to ``count`` (a fixed site at most once),
    fewest orbits first, at most ``limit``."""
    labels = list(sites)
    found: list[tuple[str, ...]] = []

    def extend(start: int, remaining: int, chosen: list[str]) -> None:
        if remaining == 0:
            found.append(tuple(chosen))
            return
        for i in range(start, len(labels)):
            if len(found) >= limit:
                return
            multiplicity, free = sites[labels[i]]
            if multiplicity > remaining:
                continue
            # a free site may be taken again (same i); a fixed one only once (next i)
            extend(i if free else i + 1, remaining - multiplicity, chosen + [labels[i]])

    extend(0, count, [])
    return sorted(found, key=lambda s: (len(s), [labels.index(x) for x in s]))


def _realises(assignment: WyckoffAssignment, rng: np.random.Generator) -> bool:
    """Does a random instance of ``assignment`` have exactly its space group (spglib, 0.01 Å)?"""
    import torch

    from diffcrystal.data.crystal import Crystal
    from diffcrystal.spacegroup.lattice import project_lattice
    from diffcrystal.symmetry import SYMPREC_TIGHT, crystal_system, space_group

    raw = torch.as_tensor(np.diag([5.0, 6.0, 7.0]) + rng.normal(scale=0.7, size=(3, 3)))[None]
    lattice = project_lattice(raw, [crystal_system(assignment.spacegroup)])[0].numpy()
    frac = []
    for orbit in assignment.orbits:
        rotations, translations = site_operations(assignment.spacegroup, orbit.site)
        frac.append(rotations @ rng.random(3) + translations)  # (m, 3)
    crystal = Crystal(lattice, np.concatenate(frac), assignment.atomic_numbers())
    return space_group(crystal, SYMPREC_TIGHT).number == assignment.spacegroup


def enumerate_assignments(
    composition: Composition,
    spacegroup: int,
    formula_units: list[int],
    *,
    limit: int = MAX_ASSIGNMENTS,
) -> list[WyckoffAssignment]:
    """Assignments of ``composition`` x Z (for each Z in ``formula_units``) to the Wyckoff
    positions of ``spacegroup`` that realise it (module docstring), Z by Z, fewest orbits first,
    at most ``limit`` in all. :class:`InputError` (one line, naming why) when there is none."""
    spacegroup = check_spacegroup(spacegroup)
    sites = _sites(spacegroup)
    rng = np.random.default_rng(REALISATION_SEED)
    found: list[WyckoffAssignment] = []
    degenerate = 0
    for z in formula_units:
        per_species = [_species_solutions(count * z, sites, limit) for count in composition.values()]
        if any(not solutions for solutions in per_species):
            continue

        def combine(index: int, used_fixed: frozenset, orbits: list[Orbit]) -> None:
            nonlocal degenerate
            if len(found) >= limit:
                return
            if index == len(per_species):
                assignment = WyckoffAssignment(spacegroup, tuple(orbits))
                if _realises(assignment, rng):
                    found.append(assignment)
                else:
                    degenerate += 1
                return
            species = list(composition)[index]
            for solution in per_species[index]:
                fixed = {s for s in solution if not sites[s][1]}
                if fixed & used_fixed:
                    continue
                combine(index + 1, used_fixed | fixed, orbits + [Orbit(species, s) for s in solution])

        combine(0, frozenset(), [])
    if not found:
        group = f"space group {spacegroup} ({space_group_symbol(spacegroup)})"
        formula = format_composition(composition)
        units = _format_units(formula_units)
        if degenerate:
            raise InputError(f"{group} cannot host {formula} with Z = {units}: every Wyckoff assignment "
                             "that fits forces a higher symmetry")
        sizes = sorted({m for m, _ in sites.values()})
        raise InputError(f"{group} cannot host {formula} with Z = {units}: no combination of its Wyckoff "
                         f"multiplicities ({', '.join(map(str, sizes))}) gives those atom counts")
    return found


def _format_units(formula_units: list[int]) -> str:
    """``'1..12'`` for a run of consecutive Z, else ``'1,2,4'``."""
    zs = list(formula_units)
    if len(zs) > 2 and zs == list(range(zs[0], zs[-1] + 1)):
        return f"{zs[0]}..{zs[-1]}"
    return ",".join(str(z) for z in zs)


_ENTRY = re.compile(r"^([A-Z][a-z]?):(\d+[a-zA-Z])$")


def parse_assignment(text: str, spacegroup: int, composition: Composition) -> tuple[WyckoffAssignment, int]:
    """The assignment written as ``'Na:4a,Cl:4b'`` (entries ``Element:site`` separated by commas
    or spaces) for ``spacegroup``, and its formula units Z with respect to ``composition``.
    :class:`InputError` naming the entry or the mismatch."""
    spacegroup = check_spacegroup(spacegroup)
    sites = _sites(spacegroup)
    group = f"space group {spacegroup} ({space_group_symbol(spacegroup)})"
    orbits = []
    for entry in re.split(r"[,\s]+", text.strip()):
        match = _ENTRY.match(entry)
        if not match:
            raise InputError(f"--wyckoff entry {entry!r} is not Element:site such as 'Na:4a'")
        symbol, site = match.groups()
        if symbol not in SYMBOL_TO_Z:
            raise InputError(f"--wyckoff entry {entry!r}: unknown element {symbol!r}")
        if site not in sites:
            raise InputError(f"--wyckoff entry {entry!r}: {group} has no site {site!r} "
                             f"(its sites: {', '.join(sites)})")
        orbits.append(Orbit(SYMBOL_TO_Z[symbol], site))
    fixed = [o.site for o in orbits if not sites[o.site][1]]
    repeated = sorted({s for s in fixed if fixed.count(s) > 1})
    if repeated:
        raise InputError(f"--wyckoff: site {repeated[0]} of {group} has no free parameter and holds one orbit only")
    assignment = WyckoffAssignment(spacegroup, tuple(orbits))
    z = _formula_units(composition, assignment.composition())
    if z is None:
        raise InputError(f"--wyckoff {assignment.label!r} gives {format_composition(assignment.composition())}, "
                         f"not a whole number of formula units of {format_composition(composition)}")
    return assignment, z


def assignment_of(crystal, symprec: float) -> WyckoffAssignment | None:
    """The Wyckoff assignment of ``crystal`` (a :class:`~diffcrystal.data.crystal.Crystal`) in its
    space group's conventional cell, read by spglib at ``symprec`` (Å): one orbit per set of
    symmetry-equivalent atoms, with spglib's Wyckoff letter and pyxtal's multiplicity (which
    counts the conventional cell, so centred groups have more atoms than a primitive cell).
    None when spglib finds no symmetry."""
    import spglib

    from diffcrystal.symmetry import ANGLE_TOLERANCE_DEG, _quiet_spglib

    try:
        with _quiet_spglib():
            dataset = spglib.get_symmetry_dataset(
                (crystal.lattice, crystal.frac_coords, crystal.atomic_numbers),
                symprec=symprec, angle_tolerance=ANGLE_TOLERANCE_DEG)
    except spglib.error.SpglibError:
        return None
    if dataset is None:
        return None
    number = int(dataset.number)
    by_letter = {label[-1]: label for label in _sites(number)}
    orbits = []
    for representative in sorted(set(int(i) for i in dataset.equivalent_atoms)):
        letter = dataset.wyckoffs[representative]
        orbits.append(Orbit(int(crystal.atomic_numbers[representative]), by_letter[letter]))
    return WyckoffAssignment(number, tuple(orbits))
