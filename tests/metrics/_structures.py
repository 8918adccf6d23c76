"""Hand-made crystals shared by the metric tests (imported by file path: tests have no package)."""

from __future__ import annotations

import numpy as np

from diffcrystal.data.crystal import Crystal

NA, CL, K, SR, TI, O = 11, 17, 19, 38, 22, 8


def perovskite(a: float = 3.905) -> Crystal:
    """Cubic SrTiO3, 5 atoms, Pm-3m."""
    frac = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    return Crystal(np.eye(3) * a, frac, [SR, TI, O, O, O], label="SrTiO3")


def rocksalt(a: float = 5.64) -> Crystal:
    """Conventional cubic NaCl, 8 atoms (the matcher reduces it to its 2-atom primitive)."""
    fcc = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    frac = np.vstack([fcc, fcc + [0.5, 0, 0]])
    return Crystal(np.eye(3) * a, frac, [NA] * 4 + [CL] * 4, label="NaCl")


def generic_three(a: float = 4.0) -> Crystal:
    """Three different species at generic positions in a cubic cell: P1, already primitive,
    so the matcher has exactly one way to pair sites."""
    frac = [[0.05, 0.10, 0.15], [0.45, 0.38, 0.62], [0.71, 0.83, 0.29]]
    return Crystal(np.eye(3) * a, frac, [NA, CL, K], label="NaClK")


def random_rotation(seed: int) -> np.ndarray:
    """A random proper rotation (QR of a Gaussian matrix, sign-fixed)."""
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def rotated_permuted_shifted(crystal: Crystal, seed: int) -> Crystal:
    """Same crystal: Cartesian frame rotated (L -> L R^T), atoms permuted, origin shifted."""
    rng = np.random.default_rng(seed)
    rotation = random_rotation(seed)
    order = rng.permutation(crystal.num_atoms)
    shift = rng.uniform(size=3)
    return Crystal(
        crystal.lattice @ rotation.T,
        crystal.frac_coords[order] + shift,
        crystal.atomic_numbers[order],
    )


def strained(crystal: Crystal, factor: float) -> Crystal:
    """Uniaxial strain along a, fractional coordinates kept."""
    lattice = crystal.lattice.copy()
    lattice[0] *= factor
    return Crystal(lattice, crystal.frac_coords, crystal.atomic_numbers)


def displaced(crystal: Crystal, index: int, cart_displacement) -> Crystal:
    """Move atom ``index`` by a Cartesian vector (Å)."""
    cart = crystal.cart_coords.copy()
    cart[index] += np.asarray(cart_displacement, dtype=float)
    frac = np.linalg.solve(crystal.lattice.T, cart.T).T
    return Crystal(crystal.lattice, frac, crystal.atomic_numbers)


def overlapping(crystal: Crystal) -> Crystal:
    """Atom 1 moved to 0.1 Å from atom 0: structurally invalid."""
    cart = crystal.cart_coords.copy()
    cart[1] = cart[0] + [0.1, 0.0, 0.0]
    frac = np.linalg.solve(crystal.lattice.T, cart.T).T
    return Crystal(crystal.lattice, frac, crystal.atomic_numbers)
