"""spglib analysis and structural validity, checked against brute force and known phases."""

import itertools

import numpy as np
import pytest

from diffcrystal.data.crystal import Crystal
from diffcrystal.symmetry import crystal_system, min_distance, space_group, structural_validity, symmetrized


def brute_force_min_distance(crystal: Crystal, reach: int = 2) -> float:
    """Shortest distance over all atom pairs and all images within ``reach`` cells."""
    best = np.inf
    cart = crystal.cart_coords
    for shift in itertools.product(range(-reach, reach + 1), repeat=3):
        offset = np.asarray(shift) @ crystal.lattice
        for i in range(crystal.num_atoms):
            for j in range(crystal.num_atoms):
                if i == j and shift == (0, 0, 0):
                    continue
                best = min(best, np.linalg.norm(cart[j] + offset - cart[i]))
    return float(best)


def perovskite() -> Crystal:
    return Crystal(np.eye(3) * 3.905, [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
                   [38, 22, 8, 8, 8])


def test_known_space_groups():
    assert space_group(perovskite()).number == 221 and space_group(perovskite()).symbol == "Pm-3m"
    bcc = Crystal(np.eye(3) * 2.87, [[0, 0, 0], [0.5, 0.5, 0.5]], [26, 26])
    assert space_group(bcc).number == 229


def test_tolerances_see_a_small_distortion_differently():
    distorted = Crystal(perovskite().lattice, perovskite().frac_coords + [[0, 0, 0], [0, 0, 0.01], [0] * 3, [0] * 3, [0] * 3],
                        perovskite().atomic_numbers)
    assert space_group(distorted, symprec=0.1).number == 221
    assert space_group(distorted, symprec=0.01).number == 99  # P4mm: Ti moved along c


def test_symmetrized_only_above_p1():
    rng = np.random.default_rng(0)
    random = Crystal(np.diag([4.1, 5.3, 6.7]) + rng.normal(0, 0.3, (3, 3)), rng.random((4, 3)), [6, 7, 8, 9])
    assert space_group(random, 0.01).number == 1
    assert symmetrized(random, 0.01) is None
    refined = symmetrized(perovskite())
    assert refined is not None and space_group(refined, 1e-5).number == 221


@pytest.mark.parametrize("seed", range(5))
def test_min_distance_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    lattice = np.diag(rng.uniform(3, 6, 3)) + rng.normal(0, 0.8, (3, 3))
    num_atoms = int(rng.integers(1, 6))
    crystal = Crystal(lattice, rng.random((num_atoms, 3)), [6] * num_atoms)
    assert min_distance(crystal) == pytest.approx(brute_force_min_distance(crystal), rel=1e-9)


def test_validity_reasons():
    assert structural_validity(perovskite()).valid
    close = Crystal(np.eye(3) * 5, [[0, 0, 0], [0.05, 0, 0]], [6, 6])
    verdict = structural_validity(close)
    assert not verdict.valid and "0.250 Å apart" in verdict.reason
    exploded = Crystal(np.eye(3) * 20, [[0, 0, 0]], [6])
    assert "volume per atom" in structural_validity(exploded).reason


def test_crystal_system_bounds():
    assert [crystal_system(n) for n in (1, 2, 3, 16, 75, 143, 168, 195, 230)] == [
        "triclinic", "triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic", "cubic"]
    with pytest.raises(ValueError):
        crystal_system(231)
