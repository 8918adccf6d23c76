"""spglib analysis, structural validity and density plausibility, checked against brute force
and known phases."""

import itertools
import os

import numpy as np
import pytest

from diffcrystal.data.crystal import Crystal
from diffcrystal.symmetry import (
    crystal_system,
    density_plausibility,
    min_distance,
    space_group,
    structural_validity,
    symmetrized,
    vdw_volume_per_atom,
)


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


def test_min_distance_of_a_sheared_cell_is_its_lattice_spacing():
    """A 3 Å cubic lattice written in a badly sheared basis (b, c of 120 and 141 Å): the
    shortest image distance is the lattice's own 3 Å, and the reduced basis finds it (the
    unreduced search would enumerate every point within 141 Å)."""
    shear = np.array([[1, 0, 0], [40, 1, 0], [37, 29, 1]])  # unimodular: the same lattice
    one_atom = Crystal(shear @ (np.eye(3) * 3.0), [[0.0, 0.0, 0.0]], [11])
    assert np.linalg.norm(one_atom.lattice, axis=1).max() > 140
    assert min_distance(one_atom) == pytest.approx(3.0, rel=1e-12)
    two_atoms = Crystal(one_atom.lattice, [[0.0, 0.0, 0.0], np.linalg.solve(one_atom.lattice.T, [1.2, 0.4, 0.0])],
                        [11, 17])
    assert min_distance(two_atoms) == pytest.approx(np.hypot(1.2, 0.4), rel=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_min_distance_of_skewed_cells_matches_brute_force(seed):
    """Gaussian lattices (no dominant diagonal), where the shortest image can be several cells away."""
    rng = np.random.default_rng(100 + seed)
    lattice = rng.normal(0, 3, (3, 3))
    while abs(np.linalg.det(lattice)) < 5:
        lattice = rng.normal(0, 3, (3, 3))
    num_atoms = int(rng.integers(1, 4))
    crystal = Crystal(lattice, rng.random((num_atoms, 3)), [6] * num_atoms)
    assert min_distance(crystal) == pytest.approx(brute_force_min_distance(crystal, reach=12), rel=1e-9)


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


def diamond_si(scale: float = 1.0) -> Crystal:
    """Diamond Si (a = 5.431 Å, 2.33 g/cm³); ``scale`` multiplies its density."""
    frac = [[0, 0, 0], [0.25, 0.25, 0.25], [0.5, 0.5, 0], [0.75, 0.75, 0.25],
            [0.5, 0, 0.5], [0.75, 0.25, 0.75], [0, 0.5, 0.5], [0.25, 0.75, 0.75]]
    return Crystal(np.eye(3) * 5.431 / scale ** (1 / 3), frac, [14] * 8)


def test_density_plausibility_of_real_and_compressed_crystals():
    rocksalt = Crystal(np.eye(3) * 5.64, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5],
                                         [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5], [0.5, 0.5, 0.5]], [11] * 4 + [17] * 4)
    for real in (rocksalt, diamond_si(), perovskite()):
        assert density_plausibility(real).valid, real.formula
    assert diamond_si().to_structure().density == pytest.approx(2.33, abs=0.01)
    dense = diamond_si(3.0)
    assert structural_validity(dense).valid  # no atoms closer than 0.5 Å: only the density check sees it
    verdict = density_plausibility(dense)
    assert not verdict.valid and "too dense" in verdict.reason
    loose = diamond_si(1 / 8)  # 0.29 g/cm³
    assert "too loose" in density_plausibility(loose).reason


def test_vdw_volume_is_the_mean_sphere_volume():
    from pymatgen.core import Element

    r_na, r_cl = (float(Element(e).van_der_waals_radius) for e in ("Na", "Cl"))
    expected = 4 / 3 * np.pi * (r_na**3 + 3 * r_cl**3) / 4
    assert vdw_volume_per_atom([11, 17, 17, 17]) == pytest.approx(expected)


# A cell on which spglib's C library gives up at symprec 0.1 Å and prints two lines to stderr.
SPGLIB_COMPLAINS = (np.diag([4.771265604702014, 2.4627396923020455, 3.273700673902148]),
                    [[0.9855335910842541, 0.16385899267348092, 0.796857072674574],
                     [1.005577545840198, 0.14893354209582804, 0.7970867449562669]], [3, 3])


def test_spglib_c_messages_are_silenced_where_produced(capfd, monkeypatch):
    import spglib

    monkeypatch.delenv("SPGLIB_WARNING", raising=False)
    lattice, frac, numbers = SPGLIB_COMPLAINS
    spglib.get_symmetry_dataset((lattice, frac, numbers), symprec=0.1, angle_tolerance=5.0)
    assert "spglib:" in capfd.readouterr().err  # the raw call does print
    crystal = Crystal(lattice, np.asarray(frac) % 1.0, numbers)
    space_group(crystal, 0.1)
    symmetrized(crystal, 0.1)
    assert capfd.readouterr().err == ""
    assert "SPGLIB_WARNING" not in os.environ  # restored


def test_users_own_spglib_warning_setting_is_kept(capfd, monkeypatch):
    monkeypatch.setenv("SPGLIB_WARNING", "ON")
    lattice, frac, numbers = SPGLIB_COMPLAINS
    space_group(Crystal(lattice, np.asarray(frac) % 1.0, numbers), 0.1)
    assert "spglib:" in capfd.readouterr().err and os.environ["SPGLIB_WARNING"] == "ON"
