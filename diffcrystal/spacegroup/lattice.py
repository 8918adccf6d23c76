"""Projection of a lattice onto the crystal family of a space group (its standard setting).

A space group's symmetry operations act on fractional coordinates of its *conventional* cell
(ITA standard setting, as pyxtal tabulates them), so the cell must carry the metric of the
group's lattice system. With lengths ``a, b, c`` (Å) and angles ``alpha, beta, gamma`` of the
rows of ``L`` (B, 3, 3), the projection sets:

=================  ============================================================
triclinic          unchanged
monoclinic         ``alpha = gamma = 90°`` (unique axis b, ``beta`` free)
orthorhombic       all angles 90°
tetragonal         ``a = b = (a + b) / 2``, all angles 90°
trigonal (hex.)    ``a = b = (a + b) / 2``, ``alpha = beta = 90°``, ``gamma = 120°``
hexagonal          as trigonal (rhombohedral groups use hexagonal axes, as pyxtal)
cubic              ``a = b = c = (a + b + c) / 3``, all angles 90°
=================  ============================================================

The orientation of the cell is kept: with the polar decomposition ``L = P Q`` (``P = (L Lᵀ)^½``
symmetric positive definite, ``Q`` orthogonal), the projected cell is ``L' = G'^½ Q`` where
``G'`` is the metric (Gram matrix) of the projected parameters. A cell already in the family
has ``G' = L Lᵀ``, so ``L' = L``: the projection is idempotent, and it commutes with rotations
``L -> L Rᵀ`` (``Q -> Q Rᵀ``).
"""

from __future__ import annotations

import torch

__all__ = ["LATTICE_SYSTEMS", "metric_from_parameters", "project_lattice"]

LATTICE_SYSTEMS: tuple[str, ...] = ("triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal",
                                    "hexagonal", "cubic")
"""The crystal systems (:func:`diffcrystal.symmetry.crystal_system` of a space-group number),
each with the metric of its conventional cell."""


def metric_from_parameters(lengths: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Gram matrix ``G_ij = a_i a_j cos(angle_ij)`` (B, 3, 3) in Å² from ``lengths`` (B, 3) Å
    and ``angles`` (B, 3) radians ``(alpha, beta, gamma)`` = angles (b,c), (a,c), (a,b)."""
    cos_a, cos_b, cos_g = torch.cos(angles).unbind(-1)  # (B,) each
    a, b, c = lengths.unbind(-1)
    row0 = torch.stack([a * a, a * b * cos_g, a * c * cos_b], -1)
    row1 = torch.stack([a * b * cos_g, b * b, b * c * cos_a], -1)
    row2 = torch.stack([a * c * cos_b, b * c * cos_a, c * c], -1)
    return torch.stack([row0, row1, row2], -2)  # (B, 3, 3)


def _sqrtm_spd(metric: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of symmetric positive definite matrices (B, 3, 3)."""
    values, vectors = torch.linalg.eigh(metric)  # (B, 3), (B, 3, 3)
    return vectors @ torch.diag_embed(values.clamp(min=0).sqrt()) @ vectors.transpose(-1, -2)


def project_lattice(lattice: torch.Tensor, systems: list[str]) -> torch.Tensor:
    """The cells ``lattice`` (B, 3, 3) Å (rows a, b, c) projected onto ``systems[i]`` (one of
    :data:`LATTICE_SYSTEMS` per cell); see the module docstring. Computed in float64,
    returned in the input dtype."""
    if len(systems) != lattice.shape[0]:
        raise ValueError(f"need one lattice system per cell: {len(systems)} for {lattice.shape[0]} cells")
    L = lattice.double()  # (B, 3, 3)
    metric = L @ L.transpose(-1, -2)  # (B, 3, 3)
    lengths = metric.diagonal(dim1=-2, dim2=-1).clamp(min=1e-12).sqrt()  # (B, 3)
    cosines = torch.stack([metric[:, 1, 2] / (lengths[:, 1] * lengths[:, 2]),
                           metric[:, 0, 2] / (lengths[:, 0] * lengths[:, 2]),
                           metric[:, 0, 1] / (lengths[:, 0] * lengths[:, 1])], -1)  # (B, 3)
    angles = torch.arccos(cosines.clamp(-1.0, 1.0))  # (B, 3) rad
    right = torch.full_like(angles[:, 0], torch.pi / 2)
    new_lengths, new_angles = lengths.clone(), angles.clone()
    for i, system in enumerate(systems):
        if system not in LATTICE_SYSTEMS:
            raise ValueError(f"unknown lattice system {system!r}; valid: {', '.join(LATTICE_SYSTEMS)}")
        a, b, c = lengths[i]
        if system == "monoclinic":
            new_angles[i, 0] = new_angles[i, 2] = right[i]
        elif system in ("orthorhombic", "tetragonal", "cubic"):
            new_angles[i] = right[i]
        elif system in ("trigonal", "hexagonal"):
            new_angles[i, 0] = new_angles[i, 1] = right[i]
            new_angles[i, 2] = 2 * torch.pi / 3
        if system in ("tetragonal", "trigonal", "hexagonal"):
            new_lengths[i, 0] = new_lengths[i, 1] = (a + b) / 2
        elif system == "cubic":
            new_lengths[i] = (a + b + c) / 3
    keep = torch.tensor([s == "triclinic" for s in systems], device=L.device)
    U, _, Vh = torch.linalg.svd(L)  # L = U S Vh
    orientation = U @ Vh  # (B, 3, 3), the orthogonal polar factor Q
    projected = _sqrtm_spd(metric_from_parameters(new_lengths, new_angles)) @ orientation  # (B, 3, 3)
    return torch.where(keep[:, None, None], L, projected).to(lattice.dtype)
