"""Keep crystals on their space group while they are sampled: an exact projection.

For a batch of crystals, each with a :class:`~diffcrystal.spacegroup.wyckoff.WyckoffAssignment`
(atoms ordered orbit by orbit), :class:`SpaceGroupConstraint` maps any state of the sampler
onto the nearest state with that symmetry:

- **lattice**: onto the group's crystal family, orientation kept
  (:func:`~diffcrystal.spacegroup.lattice.project_lattice`);
- **coordinates**: per orbit with maps ``(R_k, τ_k)``, k = 1..m (free parameters ``p`` give
  ``F_k = R_k p + τ_k`` mod 1), the projected parameters minimise
  ``Σ_k |w(R_k p + τ_k - F_k)|²`` (``w`` wraps to [-0.5, 0.5)). Linearised on the torus about
  ``p₀`` read off the orbit's first atom (every free parameter of a position's first triplet is
  one of its coordinates, e.g. ``x`` of ``x, 2x, z``; checked for all 230 groups), with
  residuals ``r_k = w(R_k p₀ + τ_k - F_k)``: ``p = p₀ - H⁺ Σ_k R_kᵀ r_k``, ``H = Σ_k R_kᵀ R_k``
  (pseudo-inverse on the free axes). The orbit is then regenerated as ``w(R_k p + τ_k)``.

Both maps are projections: a symmetric state is returned unchanged (``r_k = 0``), so applying
one twice equals applying it once. Applied after each sampler update, the projection of the
update ``Δ`` (score step plus Gaussian noise) onto the orbit's parameters is the least-squares
``(RᵀR)⁻¹RᵀΔ``: the drift becomes the score of the density restricted to the symmetric
subspace, and the noise has covariance ``(RᵀR)⁻¹`` — Langevin dynamics on that subspace in the
metric it inherits from the 3N fractional coordinates. It needs no retraining (DiffCSP++,
arXiv:2402.03992, trains on the free parameters instead).
"""

from __future__ import annotations

import numpy as np
import torch

from diffcrystal.data import keys
from diffcrystal.diffusion.coords import wrap_difference, wrap_unit
from diffcrystal.spacegroup.lattice import project_lattice
from diffcrystal.spacegroup.wyckoff import WyckoffAssignment, site_operations
from diffcrystal.symmetry import crystal_system

__all__ = ["SYMMETRY_BREAK_AMPLITUDES_A", "SpaceGroupConstraint", "break_extra_symmetry"]


def _first_triplet_selection(rotation: np.ndarray) -> np.ndarray:
    """(3, 3) matrix ``S`` with ``p = S (F_1 - τ_1)`` for the first triplet's map ``R_1``:
    row j picks the coordinate that equals free parameter j (zero rows for fixed axes)."""
    selection = np.zeros((3, 3))
    for j in np.flatnonzero(np.any(rotation != 0, axis=0)):
        row = next(i for i in range(3) if np.array_equal(rotation[i], np.eye(3)[j]))
        selection[j, row] = 1.0
    return selection


class SpaceGroupConstraint:
    """The projection onto the symmetric states of a batch (see module docstring).

    Parameters
    ----------
    assignments : one per crystal of the batch, in batch order; crystal i has
        ``assignments[i].num_atoms`` atoms, ordered as ``assignments[i].atomic_numbers()``.
    device : where the batch lives.

    Called as ``constraint(field_key, value)`` (the sampler's ``project`` hook): returns the
    projected lattice (B, 3, 3) Å or fractional coordinates (N, 3), any other field unchanged.
    """

    def __init__(self, assignments: list[WyckoffAssignment], device: torch.device | str = "cpu"):
        self.assignments = list(assignments)
        self.systems = [crystal_system(a.spacegroup) for a in self.assignments]
        rotations, translations, orbit_of_atom, first_atom, selections, inverses = [], [], [], [], [], []
        atom = 0
        for assignment in self.assignments:
            for orbit in assignment.orbits:
                R, tau = site_operations(assignment.spacegroup, orbit.site)  # (m, 3, 3), (m, 3)
                hessian = np.einsum("kji,kjl->il", R, R)  # Σ Rᵀ R, (3, 3)
                rotations.append(R)
                translations.append(tau)
                orbit_of_atom += [len(first_atom)] * len(R)
                first_atom.append(atom)
                selections.append(_first_triplet_selection(R[0]))
                inverses.append(np.linalg.pinv(hessian))
                atom += len(R)
        self.num_atoms = atom
        as_tensor = lambda x, dtype=torch.float64: torch.as_tensor(np.asarray(x), dtype=dtype, device=device)  # noqa: E731
        self.rotations = as_tensor(np.concatenate(rotations))  # (N, 3, 3)
        self.translations = as_tensor(np.concatenate(translations))  # (N, 3)
        self.orbit_of_atom = as_tensor(orbit_of_atom, torch.long)  # (N,)
        self.first_atom = as_tensor(first_atom, torch.long)  # (O,)
        self.selections = as_tensor(np.stack(selections))  # (O, 3, 3)
        self.inverse_hessians = as_tensor(np.stack(inverses))  # (O, 3, 3)

    def __repr__(self) -> str:
        groups = sorted({a.spacegroup for a in self.assignments})
        return f"SpaceGroupConstraint({len(self.assignments)} crystals, {self.num_atoms} atoms, groups {groups})"

    def free_parameters(self, frac: torch.Tensor) -> torch.Tensor:
        """Least-squares free parameters ``p`` (O, 3) of every orbit from ``frac`` (N, 3);
        fixed axes are 0."""
        if frac.shape != (self.num_atoms, 3):
            raise ValueError(f"expected fractional coordinates of shape ({self.num_atoms}, 3), got {tuple(frac.shape)}")
        F = frac.double()  # (N, 3)
        first = self.first_atom
        p0 = (self.selections @ (F[first] - self.translations[first])[:, :, None])[..., 0]  # (O, 3)
        images = (self.rotations @ p0[self.orbit_of_atom][:, :, None])[..., 0] + self.translations  # (N, 3)
        residual = wrap_difference(images - F)  # (N, 3)
        gradient = torch.zeros_like(p0).index_add_(
            0, self.orbit_of_atom, (self.rotations.transpose(1, 2) @ residual[:, :, None])[..., 0]
        )  # (O, 3)
        return p0 - (self.inverse_hessians @ gradient[:, :, None])[..., 0]

    def coordinates(self, parameters: torch.Tensor) -> torch.Tensor:
        """Fractional coordinates (N, 3) in [0, 1) of every orbit's atoms from ``parameters`` (O, 3)."""
        images = (self.rotations @ parameters[self.orbit_of_atom][:, :, None])[..., 0] + self.translations
        return wrap_unit(images)

    def project_coords(self, frac: torch.Tensor) -> torch.Tensor:
        """``frac`` (N, 3) projected onto the orbits, in ``frac``'s dtype."""
        return self.coordinates(self.free_parameters(frac)).to(frac.dtype)

    def project_lattice(self, lattice: torch.Tensor) -> torch.Tensor:
        """``lattice`` (B, 3, 3) Å projected onto each crystal's family."""
        return project_lattice(lattice, self.systems)

    def __call__(self, field_key: str, value: torch.Tensor) -> torch.Tensor:
        if field_key == keys.LATTICE:
            return self.project_lattice(value)
        if field_key == keys.FRAC_COORDS:
            return self.project_coords(value)
        return value


SYMMETRY_BREAK_AMPLITUDES_A = (0.02, 0.05, 0.1, 0.2, 0.5)
"""Scales (Å) of the random symmetric displacements :func:`break_extra_symmetry` tries, in
order, each :data:`SYMMETRY_BREAK_TRIES` times. The first is twice spglib's tight tolerance
(:data:`~diffcrystal.symmetry.SYMPREC_TIGHT`, 0.01 Å); the last covers lattice angles within
spglib's 5° angle tolerance of a higher system (0.44 Å on a 5 Å vector)."""

SYMMETRY_BREAK_TRIES = 3


def break_extra_symmetry(crystal, assignment: WyckoffAssignment, seed: int):
    """``(crystal, amplitude_A)``: ``crystal`` (atoms ordered as ``assignment``) unchanged with
    amplitude 0 when spglib (0.01 Å) finds exactly its requested group; otherwise the first
    displaced copy that has it, with the amplitude used, or ``(crystal, nan)`` if none does.

    A sample kept on group G can carry *more* symmetry than G (free parameters or cell landing
    on special values, e.g. c = a in a tetragonal cell). The displacement stays symmetric: the
    cell ``L (1 + ε)`` and coordinates ``F + δ L⁻¹`` (ε entries ``~ N(0, (A / |a|)²)``, δ rows
    ``~ N(0, A²)`` Å, |a| the mean cell-vector length) are projected back onto G's family and
    orbits, so only the free parameters move (by at most about A)."""
    from diffcrystal.data.crystal import Crystal
    from diffcrystal.symmetry import SYMPREC_TIGHT, space_group

    if space_group(crystal, SYMPREC_TIGHT).number == assignment.spacegroup:
        return crystal, 0.0
    constraint = SpaceGroupConstraint([assignment])
    rng = torch.Generator().manual_seed(seed)
    lattice = torch.as_tensor(crystal.lattice)[None]  # (1, 3, 3)
    frac = torch.as_tensor(crystal.frac_coords)  # (N, 3)
    scale = float(lattice[0].norm(dim=1).mean())
    for amplitude in SYMMETRY_BREAK_AMPLITUDES_A:
        for _ in range(SYMMETRY_BREAK_TRIES):
            strain = torch.randn((3, 3), generator=rng, dtype=torch.float64) * amplitude / scale
            new_lattice = constraint.project_lattice(lattice @ (torch.eye(3, dtype=torch.float64) + strain))[0]
            shift = torch.randn(frac.shape, generator=rng, dtype=torch.float64) * amplitude  # (N, 3) Å
            new_frac = constraint.project_coords(frac + shift @ torch.linalg.inv(lattice[0]))
            candidate = Crystal(new_lattice.numpy(), new_frac.numpy(), crystal.atomic_numbers,
                                properties=dict(crystal.properties), label=crystal.label)
            if space_group(candidate, SYMPREC_TIGHT).number == assignment.spacegroup:
                return candidate, amplitude
    return crystal, float("nan")
