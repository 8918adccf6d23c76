"""Symmetry analysis (spglib) and the validity checks of generated crystals.

Structural validity follows the CDVAE/DiffCSP protocol: a structure is valid when every
interatomic distance (periodic images included) exceeds :data:`MIN_DISTANCE_A` and its cell
volume exceeds :data:`~diffcrystal.data.crystal.MIN_VOLUME_A3`. We add an upper bound on the
volume per atom, :data:`MAX_VOLUME_PER_ATOM_A3`, so that exploded cells are not called valid.
:func:`density_plausibility` adds a per-element check of the volume per atom, which catches
cells far too dense for their elements even when no two atoms are 0.5 Å apart.

spglib's C library prints messages such as ``spglib: ssm_get_exact_positions failed.`` to
the process's stderr when it gives up on a cell; every failure also raises ``SpglibError``,
which is handled here (no symmetry found), so those messages are switched off around our
calls (``SPGLIB_WARNING=OFF``) unless the user set ``SPGLIB_WARNING`` themselves.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import spglib
import spglib.error

from diffcrystal.data.crystal import MIN_VOLUME_A3, Crystal

# spglib >= 2.5: raise SpglibError instead of returning None (and stop its deprecation warning).
spglib.error.OLD_ERROR_HANDLING = False

MIN_DISTANCE_A = 0.5
"""Smallest allowed interatomic distance in Å (CDVAE structural validity)."""

MAX_VOLUME_PER_ATOM_A3 = 200.0
"""Largest volume per atom in Å³ still called sane (H2 gas at 1 bar is ~ 20,000, the
loosest solids in ICSD ~ 100); generated cells above it have exploded."""

SYMPREC_LOOSE = 0.1
"""spglib tolerance in Å used to report symmetry of generated structures (loose)."""

SYMPREC_TIGHT = 0.01
"""spglib tolerance in Å for a tight second opinion."""

ANGLE_TOLERANCE_DEG = 5.0
"""spglib angle tolerance in degrees."""


@dataclass(frozen=True)
class SpaceGroup:
    """A space group found by spglib: ``symbol`` (international, e.g. ``'Pm-3m'``), ``number``
    (1..230) and ``crystal_system``. ``number == 0`` means spglib found none."""

    symbol: str
    number: int

    @property
    def crystal_system(self) -> str:
        return crystal_system(self.number)


def crystal_system(number: int) -> str:
    """Crystal system of space group ``number`` (1..230), ``'unknown'`` for 0."""
    bounds = [
        (2, "triclinic"),
        (15, "monoclinic"),
        (74, "orthorhombic"),
        (142, "tetragonal"),
        (167, "trigonal"),
        (194, "hexagonal"),
        (230, "cubic"),
    ]
    if number < 1:
        return "unknown"
    for upper, name in bounds:
        if number <= upper:
            return name
    raise ValueError(f"space group number {number} outside 1..230")


def _spglib_cell(crystal: Crystal):
    return (crystal.lattice, crystal.frac_coords, crystal.atomic_numbers)


SPGLIB_WARNING_VARIABLE = "SPGLIB_WARNING"
"""Environment variable spglib's C library reads on each call; ``OFF`` silences its messages."""


@contextlib.contextmanager
def _quiet_spglib() -> Iterator[None]:
    """Switch off spglib's C-level stderr messages for the calls inside (see module docstring)."""
    if SPGLIB_WARNING_VARIABLE in os.environ:  # the user's own choice wins
        yield
        return
    os.environ[SPGLIB_WARNING_VARIABLE] = "OFF"
    try:
        yield
    finally:
        os.environ.pop(SPGLIB_WARNING_VARIABLE, None)


def space_group(crystal: Crystal, symprec: float = SYMPREC_LOOSE) -> SpaceGroup:
    """Space group of ``crystal`` at tolerance ``symprec`` (Å), via spglib."""
    try:
        with _quiet_spglib():
            dataset = spglib.get_symmetry_dataset(
                _spglib_cell(crystal), symprec=symprec, angle_tolerance=ANGLE_TOLERANCE_DEG
            )
    except spglib.error.SpglibError:
        dataset = None
    if dataset is None:
        return SpaceGroup("", 0)
    return SpaceGroup(str(dataset.international), int(dataset.number))


def symmetrized(crystal: Crystal, symprec: float = SYMPREC_LOOSE) -> Crystal | None:
    """The spglib-refined conventional cell of ``crystal`` with its symmetry made exact,
    or ``None`` when spglib finds no symmetry beyond P1 (or none at all)."""
    found = space_group(crystal, symprec)
    if found.number <= 1:
        return None
    try:
        with _quiet_spglib():
            refined = spglib.standardize_cell(
                _spglib_cell(crystal),
                to_primitive=False,
                no_idealize=False,
                symprec=symprec,
                angle_tolerance=ANGLE_TOLERANCE_DEG,
            )
    except spglib.error.SpglibError:
        refined = None
    if refined is None:
        return None
    lattice, frac, numbers = refined
    return Crystal(lattice, frac, numbers, properties=dict(crystal.properties), label=crystal.label)


def min_distance(crystal: Crystal) -> float:
    """Smallest interatomic distance in Å over all pairs and periodic images.

    For a single atom this is the shortest lattice translation.
    """
    structure = crystal.to_structure()
    distances = structure.distance_matrix  # (N, N), minimum image, Å
    n = crystal.num_atoms
    off_diagonal = distances[~np.eye(n, dtype=bool)] if n > 1 else np.array([])
    # An atom's distance to its own images: the shortest non-zero lattice vector. It is no
    # longer than the shortest vector of the LLL-reduced basis (a lattice vector itself), so
    # that radius finds it; searching the reduced basis keeps a sheared cell (a = 3 Å with
    # b, c = 120, 141 Å) from enumerating millions of points.
    from pymatgen.core import Lattice

    reduced = Lattice(structure.lattice.lll_matrix)
    self_image = reduced.get_points_in_sphere(
        [[0.0, 0.0, 0.0]], [0.0, 0.0, 0.0], min(reduced.abc) + 1e-8
    )
    image_lengths = np.array([d for _, d, _, _ in self_image if d > 1e-8])
    candidates = np.concatenate([off_diagonal, image_lengths])
    return float(candidates.min()) if candidates.size else float("inf")


@dataclass(frozen=True)
class Validity:
    """Structural validity: ``valid`` and, when not, the ``reason`` in words."""

    valid: bool
    reason: str = ""


def structural_validity(
    crystal: Crystal,
    min_distance_A: float = MIN_DISTANCE_A,
    max_volume_per_atom_A3: float = MAX_VOLUME_PER_ATOM_A3,
) -> Validity:
    """Check distances (> ``min_distance_A`` Å) and volume (> 0.1 Å³ and at most
    ``max_volume_per_atom_A3`` Å³ per atom)."""
    if crystal.volume <= MIN_VOLUME_A3:
        return Validity(False, f"cell volume {crystal.volume:.3g} Å³ <= {MIN_VOLUME_A3} Å³")
    per_atom = crystal.volume / crystal.num_atoms
    if per_atom > max_volume_per_atom_A3:
        return Validity(
            False, f"volume per atom {per_atom:.1f} Å³ > {max_volume_per_atom_A3} Å³"
        )
    shortest = min_distance(crystal)
    if shortest <= min_distance_A:
        return Validity(False, f"atoms {shortest:.3f} Å apart (< {min_distance_A} Å)")
    return Validity(True)


MIN_VDW_VOLUME_RATIO = 0.20
"""Smallest allowed ratio of the volume per atom to the elements' mean van der Waals volume
(:func:`density_plausibility`). Measured here: over the 27,076 crystals of perov_5 train,
carbon_24 train and mp_20 train + test the ratio is never below 0.233 (FeB4; borides and
carbides are the densest for this rule) and its 0.1st percentile is 0.258; diamond Si is at
0.516 and Si compressed to 3x its density at 0.172."""

MAX_VDW_VOLUME_RATIO = 3.0
"""Largest allowed ratio (see :data:`MIN_VDW_VOLUME_RATIO`); in the same 27,076 crystals the
99.9th percentile is 2.0 and 12 (0.04 %) lie above 3.0."""


@functools.cache
def _vdw_volume_A3(z: int) -> float:
    """Volume in Å³ of a sphere with element ``z``'s van der Waals radius (pymatgen)."""
    from pymatgen.core import Element

    return 4.0 / 3.0 * math.pi * float(Element.from_Z(z).van_der_waals_radius) ** 3


def vdw_volume_per_atom(atomic_numbers: Sequence[int]) -> float:
    """Mean van der Waals sphere volume (Å³) of the atoms ``atomic_numbers`` (N,)."""
    return float(np.mean([_vdw_volume_A3(int(z)) for z in atomic_numbers]))


def density_plausibility(
    crystal: Crystal,
    min_ratio: float = MIN_VDW_VOLUME_RATIO,
    max_ratio: float = MAX_VDW_VOLUME_RATIO,
) -> Validity:
    """Is the volume per atom plausible for these elements?

    Rule: with ``v = V / N`` (Å³ per atom) and ``v_vdW`` the mean over the atoms of
    ``4/3 π r_vdW³`` (pymatgen's ``Element.van_der_waals_radius``), the crystal passes when
    ``min_ratio <= v / v_vdW <= max_ratio`` (tolerances :data:`MIN_VDW_VOLUME_RATIO`,
    :data:`MAX_VDW_VOLUME_RATIO`, measured on real crystals). Rock-salt NaCl (0.63), diamond
    Si (0.52) and cubic SrTiO3 (0.40) pass; Si at three times its density (0.17) fails.
    """
    per_atom = crystal.volume / crystal.num_atoms
    ratio = per_atom / vdw_volume_per_atom(crystal.atomic_numbers)
    if ratio < min_ratio:
        return Validity(
            False, f"too dense: {per_atom:.2f} Å³ per atom is {ratio:.2f} x the elements' "
            f"van der Waals volume (< {min_ratio})"
        )
    if ratio > max_ratio:
        return Validity(
            False, f"too loose: {per_atom:.1f} Å³ per atom is {ratio:.2f} x the elements' "
            f"van der Waals volume (> {max_ratio})"
        )
    return Validity(True)
