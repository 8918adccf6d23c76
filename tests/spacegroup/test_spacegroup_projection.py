"""The space-group projection against independent computations: spglib finds the group, the
group's own operations (pyxtal's general position) map every projected crystal onto itself,
and the projection is idempotent and leaves symmetric states unchanged."""

import numpy as np
import pytest
import torch

from diffcrystal.data.composition import parse_composition
from diffcrystal.data.crystal import Crystal
from diffcrystal.errors import InputError
from diffcrystal.spacegroup import (
    SpaceGroupConstraint,
    WyckoffAssignment,
    break_extra_symmetry,
    enumerate_assignments,
    parse_assignment,
    project_lattice,
)
from diffcrystal.spacegroup.wyckoff import site_operations
from diffcrystal.symmetry import SYMPREC_TIGHT, crystal_system, space_group

# (composition, group, Z) from triclinic to cubic, with the three named cases
CASES = [
    ("NaCl", 2, 1),  # P-1, triclinic
    ("ZnO", 14, 4),  # P2_1/c, monoclinic
    ("SrTiO3", 62, 4),  # Pnma, orthorhombic
    ("BaTiO3", 99, 1),  # P4mm, tetragonal
    ("LiCoO2", 166, 3),  # R-3m, trigonal (hexagonal axes)
    ("ZnO", 186, 2),  # P6_3mc, hexagonal
    ("NaCl", 225, 4),  # Fm-3m rock salt
    ("Si", 227, 8),  # Fd-3m diamond
]


def general_position(number):
    """(R, τ) of the group's general position: every operation of the group (mod lattice)."""
    from pyxtal.symmetry import Group

    return site_operations(number, Group(number)[0].get_label())


def invariant_under_group(crystal, number, tol=1e-4):
    """Does every operation of group ``number`` map ``crystal``'s atoms onto atoms of the same species?"""
    rotations, translations = general_position(number)
    frac, species = crystal.frac_coords, crystal.atomic_numbers
    for R, tau in zip(rotations, translations):
        image = frac @ R.T + tau  # (N, 3)
        delta = image[:, None, :] - frac[None, :, :]
        delta -= np.round(delta)
        close = np.linalg.norm(delta @ crystal.lattice, axis=-1) < tol  # (N, N) Å
        if not np.all((close & (species[:, None] == species[None, :])).any(axis=1)):
            return False
    return True


def projected_random_crystals(assignments, seed=0):
    constraint = SpaceGroupConstraint(assignments)
    g = torch.Generator().manual_seed(seed)
    lattice = constraint.project_lattice(torch.diag(torch.tensor([5.0, 6.0, 7.0], dtype=torch.float64))
                                         + torch.randn(len(assignments), 3, 3, generator=g, dtype=torch.float64))
    frac = constraint.project_coords(torch.rand(constraint.num_atoms, 3, generator=g, dtype=torch.float64))
    crystals, start = [], 0
    for i, a in enumerate(assignments):
        crystals.append(Crystal(lattice[i].numpy(), frac[start:start + a.num_atoms].numpy(), a.atomic_numbers()))
        start += a.num_atoms
    return constraint, lattice, frac, crystals


@pytest.mark.parametrize("formula, number, z", CASES)
def test_projected_noise_has_the_group(formula, number, z):
    assignments = enumerate_assignments(parse_composition(formula), number, [z])[:4]
    _, _, _, crystals = projected_random_crystals(assignments)
    for crystal in crystals:
        assert invariant_under_group(crystal, number)
        assert space_group(crystal, SYMPREC_TIGHT).number == number


@pytest.mark.parametrize("formula, number, z", CASES)
def test_projection_is_idempotent_and_keeps_symmetric_states(formula, number, z):
    assignments = enumerate_assignments(parse_composition(formula), number, [z])[:4]
    constraint, lattice, frac, _ = projected_random_crystals(assignments, seed=1)
    assert torch.allclose(constraint.project_coords(frac), frac, atol=1e-12)
    assert torch.allclose(constraint.project_lattice(lattice), lattice, atol=1e-10)
    # a state moved off the orbits comes back to a (different) symmetric state, and stays there
    g = torch.Generator().manual_seed(2)
    moved = constraint.project_coords(frac + 0.05 * torch.randn(frac.shape, generator=g, dtype=frac.dtype))
    assert torch.allclose(constraint.project_coords(moved), moved, atol=1e-12)


def test_projection_of_a_small_move_is_its_least_squares_average():
    """On 8a of Fd-3m nothing moves; on 32e (x, x, x) of Fd-3m the move of the orbit is the
    least-squares fit of the atoms' moves, here a common shift along (1, 1, 1) in x."""
    a = WyckoffAssignment(227, parse_assignment("Si:32e", 227, {14: 1})[0].orbits)
    constraint = SpaceGroupConstraint([a])
    R, tau = site_operations(227, "32e")
    x = 0.1
    frac = torch.as_tensor((R @ np.array([x, 0, 0]) + tau) % 1.0)
    g = torch.Generator().manual_seed(0)
    noise = 1e-3 * torch.randn(frac.shape, generator=g, dtype=torch.float64)
    params = constraint.free_parameters(frac + noise)
    R_t = torch.as_tensor(R[:, :, 0])  # (m, 3): d F_k / d x
    expected = x + float((R_t * noise).sum() / (R_t * R_t).sum())
    assert params[0, 0].item() == pytest.approx(expected, abs=1e-12)
    assert params[0, 1:].abs().max() == 0


@pytest.mark.parametrize("system", ["monoclinic", "orthorhombic", "tetragonal", "hexagonal", "cubic"])
def test_lattice_projection_commutes_with_rotation(system):
    g = torch.Generator().manual_seed(3)
    lattice = 4 * torch.eye(3, dtype=torch.float64) + torch.randn(2, 3, 3, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    projected = project_lattice(lattice, [system] * 2)
    assert torch.allclose(project_lattice(lattice @ q.T, [system] * 2), projected @ q.T, atol=1e-10)
    gram = projected @ projected.transpose(1, 2)
    lengths = gram.diagonal(dim1=1, dim2=2).sqrt()
    if system in ("tetragonal", "hexagonal", "cubic"):
        assert torch.allclose(lengths[:, 0], lengths[:, 1])
    if system != "hexagonal":
        assert torch.allclose(gram[:, 0, 2], torch.zeros(2, dtype=torch.float64), atol=1e-9) == (system != "monoclinic")


def test_extra_symmetry_is_broken_within_the_group():
    """Cubic perovskite on P4mm's sites with c = a is Pm-3m; the break keeps P4mm's orbits."""
    assignment = parse_assignment("Ba:1a,Ti:1b,O:1b,O:2c", 99, parse_composition("BaTiO3"))[0]
    frac = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    cubic = Crystal(np.eye(3) * 4.0, frac, assignment.atomic_numbers())
    assert space_group(cubic, SYMPREC_TIGHT).number == 221
    broken, amplitude = break_extra_symmetry(cubic, assignment, seed=0)
    assert space_group(broken, SYMPREC_TIGHT).number == 99 and 0 < amplitude <= 0.5
    assert invariant_under_group(broken, 99)
    assert break_extra_symmetry(broken, assignment, seed=0) == (broken, 0.0)


@pytest.mark.parametrize("formula, number, units, message", [
    ("NaCl", 225, [1, 2, 3], "cannot host NaCl with Z = 1..3: no combination"),
    ("CsCl", 195, [1], "forces a higher symmetry"),
])
def test_impossible_combinations_say_why(formula, number, units, message):
    with pytest.raises(InputError, match=message):
        enumerate_assignments(parse_composition(formula), number, units)


def test_cases_span_the_seven_crystal_systems():
    assert [crystal_system(n) for n in (2, 14, 62, 99, 166, 186, 225)] == [
        "triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic"]
