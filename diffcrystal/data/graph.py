"""Crystals as torch-geometric graphs: one :class:`~torch_geometric.data.Data` per crystal,
batched by :class:`~torch_geometric.data.Batch` (keys from :mod:`diffcrystal.data.keys`).

Per-crystal fields and what batching makes of them (B crystals, N atoms in all):

- ``LATTICE``: (1, 3, 3) per crystal -> (B, 3, 3), Å, rows a, b, c
- ``FRAC_COORDS``: (n, 3) -> (N, 3), fractional in [0, 1)
- ``ATOMIC_NUMBERS``: (n,) long -> (N,)
- ``NUM_ATOMS``: (1,) long -> (B,)
- ``BATCH`` (added by ``Batch``): (N,) long, the crystal each atom belongs to.

No edges are stored: the denoiser builds its periodic graph from the (noisy) lattice.

>>> import numpy as np
>>> from diffcrystal.data.crystal import Crystal
>>> small = Crystal(np.eye(3) * 3.0, [[0.0, 0.0, 0.0]], [6])
>>> pair = Crystal(np.eye(3) * 4.0, [[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]], [11, 17])
>>> batch = collate([small, pair])
>>> tuple(batch.lattice.shape), batch.num_atoms.tolist(), batch.batch.tolist()
((2, 3, 3), [1, 2], [0, 1, 1])
>>> [c.formula for c in batch_to_crystals(batch)]
['C', 'NaCl']
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch_geometric.data import Batch, Data

from diffcrystal.data import keys
from diffcrystal.data.crystal import Crystal


def crystal_to_data(crystal: Crystal, dtype: torch.dtype = torch.float32) -> Data:
    """One crystal as a ``Data`` with lattice (1, 3, 3) and frac (n, 3) in ``dtype``,
    atomic numbers (n,) and num_atoms (1,) as long; ``num_nodes = n``."""
    return Data(
        **{
            keys.LATTICE: torch.tensor(crystal.lattice, dtype=dtype).reshape(1, 3, 3),
            keys.FRAC_COORDS: torch.tensor(crystal.frac_coords, dtype=dtype),  # (n, 3)
            keys.ATOMIC_NUMBERS: torch.tensor(crystal.atomic_numbers, dtype=torch.long),  # (n,)
            keys.NUM_ATOMS: torch.tensor([crystal.num_atoms], dtype=torch.long),  # (1,)
        },
        num_nodes=crystal.num_atoms,
    )


def collate(crystals: Sequence[Crystal], dtype: torch.dtype = torch.float32) -> Batch:
    """A ``Batch`` of ``crystals`` (see the module docstring for the field shapes)."""
    if len(crystals) == 0:
        raise ValueError("cannot collate an empty list of crystals")
    return Batch.from_data_list([crystal_to_data(crystal, dtype) for crystal in crystals])


def batch_to_crystals(batch: Data) -> list[Crystal]:
    """The crystals of a ``Batch`` (or of a single ``Data``), inverse of :func:`collate`.

    Lattices and coordinates come back as float64 numpy arrays (so a float32 batch loses
    precision beyond float32); labels and properties are not stored in the batch.
    """
    lattices = batch[keys.LATTICE].detach().cpu().double().reshape(-1, 3, 3).numpy()  # (B, 3, 3)
    frac = batch[keys.FRAC_COORDS].detach().cpu().double().numpy()  # (N, 3)
    numbers = batch[keys.ATOMIC_NUMBERS].detach().cpu().numpy()  # (N,)
    counts = batch[keys.NUM_ATOMS].detach().cpu().reshape(-1).tolist()  # (B,)
    if len(counts) != len(lattices) or sum(counts) != len(numbers):
        raise ValueError(
            f"inconsistent batch: {len(lattices)} lattices, num_atoms sums to {sum(counts)}, "
            f"{len(numbers)} atoms"
        )
    crystals, start = [], 0
    for lattice, count in zip(lattices, counts):
        stop = start + count
        crystals.append(Crystal(lattice, frac[start:stop], numbers[start:stop]))
        start = stop
    return crystals
