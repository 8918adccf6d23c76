"""Space-group-constrained sampling: Wyckoff assignments of a composition (pyxtal's tables),
the crystal-family projection of a lattice, and the exact projection that keeps a sampled
crystal on its group (:class:`SpaceGroupConstraint`, the sampler's ``project`` hook)."""

from diffcrystal.spacegroup.constraint import SpaceGroupConstraint, break_extra_symmetry
from diffcrystal.spacegroup.lattice import LATTICE_SYSTEMS, project_lattice
from diffcrystal.spacegroup.wyckoff import (
    MAX_ASSIGNMENTS,
    Orbit,
    WyckoffAssignment,
    assignment_of,
    check_spacegroup,
    enumerate_assignments,
    parse_assignment,
    space_group_symbol,
)

__all__ = [
    "LATTICE_SYSTEMS",
    "MAX_ASSIGNMENTS",
    "Orbit",
    "SpaceGroupConstraint",
    "WyckoffAssignment",
    "assignment_of",
    "break_extra_symmetry",
    "check_spacegroup",
    "enumerate_assignments",
    "parse_assignment",
    "project_lattice",
    "space_group_symbol",
]
