"""The :class:`Crystal` record: one periodic structure, checked at construction.

A crystal is a lattice ``L`` (3, 3; rows a, b, c in Å), fractional coordinates ``F``
(N, 3) in [0, 1) and atomic numbers ``Z`` (N,). Cartesian positions are ``X = F @ L``.
Conversions to and from pymatgen ``Structure`` and ASE ``Atoms`` keep the lattice matrix
as it is (no silent re-orientation).

>>> import numpy as np
>>> c = Crystal(np.eye(3) * 4.0, [[0.0, 0.0, 0.0], [0.5, 0.5, 1.5]], [11, 17])
>>> c.num_atoms, round(c.volume, 6), c.frac_coords[1].tolist()
(2, 64.0, [0.5, 0.5, 0.5])
>>> c.formula
'NaCl'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from diffcrystal import MAX_ATOMIC_NUMBER
from diffcrystal.errors import InputError

MIN_VOLUME_A3 = 0.1
"""Smallest accepted cell volume in Å³ (the volume check of the CDVAE/DiffCSP validity
protocol); a cell below it is treated as degenerate."""


class CrystalError(InputError):
    """A structure that cannot be a crystal (degenerate lattice, NaN, unknown element...)."""


def wrap_frac(frac: np.ndarray) -> np.ndarray:
    """Wrap fractional coordinates into [0, 1). ``frac``: any shape, fractional."""
    wrapped = np.mod(frac, 1.0)
    # np.mod can return exactly 1.0 for tiny negative inputs (-1e-17 % 1.0 == 1.0).
    wrapped[wrapped >= 1.0] = 0.0
    return wrapped


@dataclass(frozen=True, eq=False)
class Crystal:
    """One periodic crystal structure.

    Parameters
    ----------
    lattice : (3, 3) array, Å; rows are the lattice vectors a, b, c.
    frac_coords : (N, 3) array, fractional; wrapped into [0, 1) on construction.
    atomic_numbers : (N,) int array, 1..100.
    properties : scalar properties carried along (e.g. ``heat_ref`` in eV/atom).
    label : where the structure came from (material id, file name or row).

    Raises
    ------
    CrystalError
        On wrong shapes, non-finite numbers, a cell volume below :data:`MIN_VOLUME_A3`, no
        atoms, or an atomic number outside 1..100.
    """

    lattice: np.ndarray
    frac_coords: np.ndarray
    atomic_numbers: np.ndarray
    properties: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    def __post_init__(self) -> None:
        lattice = np.asarray(self.lattice, dtype=np.float64)
        frac = np.asarray(self.frac_coords, dtype=np.float64)
        numbers = np.asarray(self.atomic_numbers)
        where = f" ({self.label})" if self.label else ""
        if lattice.shape != (3, 3):
            raise CrystalError(f"lattice must have shape (3, 3), got {lattice.shape}{where}")
        if frac.ndim != 2 or frac.shape[1] != 3:
            raise CrystalError(f"frac_coords must have shape (N, 3), got {frac.shape}{where}")
        if numbers.shape != (frac.shape[0],):
            raise CrystalError(
                f"atomic_numbers must have shape ({frac.shape[0]},), got {numbers.shape}{where}"
            )
        if frac.shape[0] == 0:
            raise CrystalError(f"crystal has no atoms{where}")
        if not np.all(np.isfinite(lattice)):
            raise CrystalError(f"lattice contains NaN or inf{where}")
        if not np.all(np.isfinite(frac)):
            raise CrystalError(f"fractional coordinates contain NaN or inf{where}")
        if not np.issubdtype(numbers.dtype, np.integer):
            if not np.all(np.isfinite(numbers)) or np.any(numbers != np.round(numbers)):
                raise CrystalError(f"atomic numbers must be integers{where}")
        numbers = numbers.astype(np.int64)
        bad = numbers[(numbers < 1) | (numbers > MAX_ATOMIC_NUMBER)]
        if bad.size:
            raise CrystalError(
                f"atomic number {int(bad[0])} outside 1..{MAX_ATOMIC_NUMBER}{where}"
            )
        volume = abs(float(np.linalg.det(lattice)))
        if volume < MIN_VOLUME_A3:
            raise CrystalError(
                f"degenerate lattice: cell volume {volume:.3g} Å³ < {MIN_VOLUME_A3} Å³{where}"
            )
        object.__setattr__(self, "lattice", lattice)
        object.__setattr__(self, "frac_coords", wrap_frac(frac))
        object.__setattr__(self, "atomic_numbers", numbers)
        object.__setattr__(self, "properties", dict(self.properties))

    # ------------------------------------------------------------------ derived values
    @property
    def num_atoms(self) -> int:
        return int(self.atomic_numbers.shape[0])

    @property
    def volume(self) -> float:
        """Cell volume in Å³."""
        return abs(float(np.linalg.det(self.lattice)))

    @property
    def cart_coords(self) -> np.ndarray:
        """(N, 3) Cartesian positions in Å, ``X = F @ L``."""
        return self.frac_coords @ self.lattice

    @property
    def composition(self) -> dict[int, int]:
        """``{atomic number: atoms in the cell}``, ascending (a :mod:`~diffcrystal.data.composition`)."""
        elements, counts = np.unique(self.atomic_numbers, return_counts=True)
        return {int(z): int(c) for z, c in zip(elements, counts)}

    @property
    def formula(self) -> str:
        """Reduced formula as pymatgen writes it (e.g. ``'SrTiO3'``)."""
        from pymatgen.core import Composition

        return Composition(dict(zip(*np.unique(self.atomic_numbers, return_counts=True)))).reduced_formula

    # ------------------------------------------------------------------ conversions
    @classmethod
    def from_structure(cls, structure, label: str = "", properties: dict | None = None) -> "Crystal":
        """From a pymatgen ``Structure``; raises :class:`CrystalError` on partial occupancy."""
        if not structure.is_ordered:
            raise CrystalError(
                f"structure has partial occupancies (disorder){' (' + label + ')' if label else ''}"
            )
        numbers = [site.specie.Z for site in structure]
        return cls(
            lattice=structure.lattice.matrix,
            frac_coords=structure.frac_coords,
            atomic_numbers=numbers,
            properties=properties or {},
            label=label,
        )

    def to_structure(self):
        """To a pymatgen ``Structure`` with the same lattice matrix and sites."""
        from pymatgen.core import Lattice, Structure

        return Structure(
            Lattice(self.lattice),
            self.atomic_numbers.tolist(),
            self.frac_coords,
            coords_are_cartesian=False,
        )

    @classmethod
    def from_atoms(cls, atoms, label: str = "", properties: dict | None = None) -> "Crystal":
        """From an ASE ``Atoms`` object; it must be periodic in all three directions."""
        if not all(atoms.pbc):
            raise CrystalError(
                f"ASE Atoms is not periodic in all directions (pbc={atoms.pbc.tolist()})"
                + (f" ({label})" if label else "")
            )
        lattice = np.asarray(atoms.cell.array, dtype=np.float64)
        if abs(np.linalg.det(lattice)) < MIN_VOLUME_A3:
            raise CrystalError(
                f"degenerate lattice: cell volume {abs(np.linalg.det(lattice)):.3g} Å³"
                + (f" ({label})" if label else "")
            )
        frac = np.linalg.solve(lattice.T, atoms.positions.T).T
        return cls(
            lattice=lattice,
            frac_coords=frac,
            atomic_numbers=atoms.numbers,
            properties=properties or {},
            label=label,
        )

    def in_standard_orientation(self) -> "Crystal":
        """The same lengths, angles and fractional coordinates in pymatgen's standard orientation
        (``Lattice.from_parameters``: c along z, a in the xz plane): the cell a CIF of this
        crystal reads back as. A left-handed lattice comes back right-handed, as from the CIF."""
        from pymatgen.core import Lattice

        standard = Lattice.from_parameters(*Lattice(self.lattice).parameters).matrix
        return Crystal(standard, self.frac_coords, self.atomic_numbers, properties=dict(self.properties),
                       label=self.label)

    def to_atoms(self):
        """To a periodic ASE ``Atoms`` with the same cell and positions."""
        from ase import Atoms

        return Atoms(
            numbers=self.atomic_numbers,
            cell=self.lattice,
            scaled_positions=self.frac_coords,
            pbc=True,
        )

    def __repr__(self) -> str:
        return (
            f"Crystal({self.formula}, num_atoms={self.num_atoms}, "
            f"volume={self.volume:.2f} Å³{', label=' + repr(self.label) if self.label else ''})"
        )
