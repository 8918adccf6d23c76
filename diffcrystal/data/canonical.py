"""Canonical cells and ordering of disordered structures (pymatgen).

The canonical cell of a training structure is its **primitive, Niggli-reduced** cell (the
package convention, see :mod:`diffcrystal`): the same crystal given in a supercell or in a
skewed setting maps to the same small cell, so the generator does not learn arbitrary
choices of cell. Reduction changes the lattice matrix and the fractional coordinates but
keeps the crystal: the composition, the volume per atom and the structure itself (pymatgen's
``StructureMatcher`` calls input and output the same).

Note: CDVAE/DiffCSP configs for Perov-5, Carbon-24 and MP-20 apply the Niggli reduction
only (their ``primitive`` flag is off); here both are applied, as the design asks. The
primitive search uses a tight tolerance, :data:`PRIMITIVE_TOLERANCE_A`, so that a cell is
only folded when it is periodic to within numerical noise.
"""

from __future__ import annotations

from diffcrystal.data.crystal import Crystal, CrystalError

PRIMITIVE_TOLERANCE_A = 0.01
"""Distance tolerance in Å for finding the primitive cell: sites closer than this after a
candidate translation count as the same site (and are averaged). Tighter than pymatgen's
default of 0.25 Å, which moves atoms by up to that much: measured on the first 400 rows of
carbon_24/train.csv, 0.25 Å folds 68 cells (some 10- and 18-atom cells down to 2 atoms),
0.01 Å folds 50. Same value as :data:`diffcrystal.symmetry.SYMPREC_TIGHT`."""


def canonical_structure(structure, *, primitive: bool = True, niggli: bool = True,
                        tolerance: float = PRIMITIVE_TOLERANCE_A):
    """The primitive (if ``primitive``), Niggli-reduced (if ``niggli``) cell of a pymatgen
    ``Structure``; the input is left unchanged.

    Raises
    ------
    CrystalError
        When pymatgen cannot reduce the lattice (a degenerate or extremely skewed cell).
    """
    try:
        if primitive:
            structure = structure.get_primitive_structure(tolerance=tolerance)
        if niggli:
            structure = structure.get_reduced_structure(reduction_algo="niggli")
    except (ValueError, ArithmeticError) as error:
        raise CrystalError(f"cannot reduce the cell: {' '.join(str(error).split())}") from error
    return structure


def canonicalize(crystal: Crystal, *, primitive: bool = True, niggli: bool = True,
                 tolerance: float = PRIMITIVE_TOLERANCE_A) -> Crystal:
    """``crystal`` in its primitive, Niggli-reduced cell (see :func:`canonical_structure`);
    properties and label are carried over."""
    reduced = canonical_structure(
        crystal.to_structure(), primitive=primitive, niggli=niggli, tolerance=tolerance
    )
    return Crystal.from_structure(reduced, label=crystal.label, properties=crystal.properties)


def order_by_majority(structure):
    """An ordered copy of a (partially occupied) pymatgen ``Structure``.

    The rule, chosen because it is deterministic, cheap and keeps the cell as given: every
    site takes its **majority species**; a site whose vacant fraction ``1 - sum(occupancies)``
    is larger than the occupancy of its majority species is **removed**. Ties go to the
    species of lower atomic number. The result is one plausible ordering, not the
    lowest-energy one (that would need oxidation states and an Ewald enumeration over
    supercells, pymatgen's ``OrderDisorderedStructureTransformation``), and its
    stoichiometry can differ from the disordered formula. Sites split over nearby positions
    may end up too close; the validity checks of :mod:`diffcrystal.symmetry` catch that.

    Raises
    ------
    CrystalError
        When every site would be removed.
    """
    from pymatgen.core import Structure

    species, coords = [], []
    for site in structure:
        occupancies = sorted(site.species.items(), key=lambda item: (-item[1], item[0].Z))
        majority, occupancy = occupancies[0]
        vacancy = 1.0 - sum(site.species.values())
        if vacancy > occupancy:
            continue
        species.append(majority)
        coords.append(site.frac_coords)
    if not species:
        raise CrystalError("ordering the disordered structure leaves no atoms (all sites mostly vacant)")
    return Structure(structure.lattice, species, coords, coords_are_cartesian=False)
