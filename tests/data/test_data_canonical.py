"""Canonical (primitive, Niggli-reduced) cells keep the crystal; majority ordering."""

import numpy as np
import pytest
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure

from diffcrystal.data.canonical import canonical_structure, canonicalize, order_by_majority
from diffcrystal.data.crystal import Crystal, CrystalError

NACL_A = 5.64
"""Conventional rock-salt NaCl lattice constant, Å."""

SKEW = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 1]])
"""A unimodular change of cell (det 1): same lattice, skewed basis."""


FCC_TRANSLATIONS = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])


def rocksalt() -> Structure:
    """Conventional (8-atom) rock-salt NaCl cell."""
    sodium = FCC_TRANSLATIONS
    chlorine = (FCC_TRANSLATIONS + 0.5) % 1.0
    return Structure(Lattice.cubic(NACL_A), ["Na"] * 4 + ["Cl"] * 4, np.vstack([sodium, chlorine]))


def variants():
    """The same NaCl crystal in differently chosen cells."""
    conventional = rocksalt()
    primitive = conventional.get_primitive_structure()
    skewed = primitive.copy()
    skewed.make_supercell(SKEW)
    supercell = primitive.copy()
    supercell.make_supercell([[2, 0, 0], [0, 1, 0], [0, 0, 1]])
    supercell.make_supercell(SKEW)
    return {"conventional": conventional, "primitive": primitive, "skewed": skewed,
            "supercell": supercell}


@pytest.mark.parametrize("name", list(variants()))
def test_canonical_keeps_the_crystal(name):
    structure = variants()[name]
    crystal = Crystal.from_structure(structure, label=name, properties={"e": 1.0})
    reduced = canonicalize(crystal)
    assert reduced.num_atoms == 2  # NaCl primitive cell
    assert reduced.formula == "NaCl"
    assert reduced.label == name and reduced.properties == {"e": 1.0}
    assert reduced.volume / reduced.num_atoms == pytest.approx(crystal.volume / crystal.num_atoms)
    assert StructureMatcher().fit(structure, reduced.to_structure())


def test_canonical_is_unique_and_idempotent():
    cells = [canonicalize(Crystal.from_structure(s)) for s in variants().values()]
    gram = [c.lattice @ c.lattice.T for c in cells]  # rotation-free description of the cell
    for other in gram[1:]:
        np.testing.assert_allclose(np.sort(np.diag(other)), np.sort(np.diag(gram[0])), atol=1e-8)
    again = canonicalize(cells[0])
    np.testing.assert_allclose(again.lattice, cells[0].lattice, atol=1e-8)


def test_niggli_conditions():
    """Niggli main conditions: a <= b <= c and all angles either all < 90° or all >= 90°."""
    reduced = canonicalize(Crystal.from_structure(variants()["supercell"]))
    lattice = Lattice(reduced.lattice)
    a, b, c = lattice.abc
    assert a <= b + 1e-8 and b <= c + 1e-8
    cosines = np.cos(np.radians(lattice.angles))
    tolerance = 1e-8
    assert np.all(cosines > tolerance) or np.all(cosines <= tolerance)


def test_primitive_only_and_niggli_only():
    supercell = variants()["supercell"]
    assert len(canonical_structure(supercell, niggli=False)) == 2
    assert len(canonical_structure(supercell, primitive=False)) == len(supercell)


def test_order_by_majority():
    lattice = Lattice.cubic(4.0)
    structure = Structure(
        lattice,
        [{"Fe": 0.7, "Co": 0.3}, {"O": 0.4}, {"Ni": 0.5, "Cu": 0.5}, "Sr"],
        [[0, 0, 0], [0.5, 0, 0], [0, 0.5, 0], [0.5, 0.5, 0.5]],
    )
    ordered = order_by_majority(structure)
    assert ordered.is_ordered
    assert [site.specie.symbol for site in ordered] == ["Fe", "Ni", "Sr"]  # O mostly vacant


def test_order_by_majority_all_vacant():
    structure = Structure(Lattice.cubic(4.0), [{"O": 0.2}], [[0, 0, 0]])
    with pytest.raises(CrystalError, match="no atoms"):
        order_by_majority(structure)
