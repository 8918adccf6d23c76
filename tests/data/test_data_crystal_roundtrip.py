"""pymatgen Structure <-> Crystal <-> ASE Atoms round trips keep lattice, species, positions."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from diffcrystal import MAX_ATOMIC_NUMBER
from diffcrystal.data.crystal import Crystal

TOLERANCE = 1e-9


def wrapped_difference(a, b):
    """Fractional differences wrapped to [-0.5, 0.5)."""
    d = np.asarray(a) - np.asarray(b)
    return d - np.round(d)


@st.composite
def crystals(draw):
    n = draw(st.integers(1, 8))
    lengths = draw(hnp.arrays(np.float64, 3, elements=st.floats(2.0, 12.0)))
    shear = draw(hnp.arrays(np.float64, (3, 3), elements=st.floats(-0.15, 0.15)))
    # rows strictly diagonally dominant: |det| >= prod_i (a_ii - sum_j!=i |a_ij|) >= (0.55 * 2 Å)^3
    # (Ostrowski's bound), far above Crystal's 0.1 Å³ floor; a shear of 0.4 reached 0.06 Å³
    lattice = np.diag(lengths) + shear * lengths.min()
    frac = draw(hnp.arrays(np.float64, (n, 3), elements=st.floats(-1.5, 2.5)))
    numbers = draw(hnp.arrays(np.int64, n, elements=st.integers(1, MAX_ATOMIC_NUMBER)))
    return Crystal(lattice, frac, numbers, label="random")


def assert_same(a: Crystal, b: Crystal, tol=TOLERANCE):
    np.testing.assert_allclose(a.lattice, b.lattice, atol=tol)
    np.testing.assert_array_equal(a.atomic_numbers, b.atomic_numbers)
    np.testing.assert_allclose(wrapped_difference(a.frac_coords, b.frac_coords), 0.0, atol=tol)
    assert np.all((b.frac_coords >= 0) & (b.frac_coords < 1))


@settings(max_examples=60, deadline=None)
@given(crystals())
def test_structure_round_trip(crystal):
    structure = crystal.to_structure()
    np.testing.assert_allclose(structure.lattice.matrix, crystal.lattice, atol=TOLERANCE)
    assert_same(crystal, Crystal.from_structure(structure))


@settings(max_examples=60, deadline=None)
@given(crystals())
def test_atoms_round_trip(crystal):
    atoms = crystal.to_atoms()
    np.testing.assert_allclose(atoms.positions, crystal.cart_coords, atol=1e-8)
    assert_same(crystal, Crystal.from_atoms(atoms), tol=1e-8)


@settings(max_examples=30, deadline=None)
@given(crystals())
def test_structure_atoms_structure(crystal):
    """Structure -> Crystal -> Atoms -> Crystal -> Structure gives the same structure."""
    structure = crystal.to_structure()
    back = Crystal.from_atoms(Crystal.from_structure(structure).to_atoms()).to_structure()
    np.testing.assert_allclose(back.lattice.matrix, structure.lattice.matrix, atol=1e-8)
    assert [s.Z for s in back.species] == [s.Z for s in structure.species]
    np.testing.assert_allclose(wrapped_difference(back.frac_coords, structure.frac_coords), 0, atol=1e-8)
