"""torch-geometric batching of crystals of mixed sizes, and its inverse."""

import numpy as np
import pytest
import torch

from diffcrystal.data import keys
from diffcrystal.data.crystal import Crystal
from diffcrystal.data.graph import batch_to_crystals, collate, crystal_to_data

SIZES = (1, 5, 24)


def random_crystal(n: int, seed: int) -> Crystal:
    rng = np.random.default_rng(seed)
    lattice = np.diag(rng.uniform(3.0, 9.0, 3)) + rng.uniform(-0.5, 0.5, (3, 3))
    return Crystal(lattice, rng.uniform(0, 1, (n, 3)), rng.integers(1, 101, n), label=f"c{n}")


@pytest.fixture
def mixed():
    return [random_crystal(n, seed) for seed, n in enumerate(SIZES)]


def test_data_fields():
    crystal = random_crystal(5, 0)
    data = crystal_to_data(crystal)
    assert data[keys.LATTICE].shape == (1, 3, 3) and data[keys.LATTICE].dtype == torch.float32
    assert data[keys.FRAC_COORDS].shape == (5, 3) and data[keys.FRAC_COORDS].dtype == torch.float32
    assert data[keys.ATOMIC_NUMBERS].shape == (5,) and data[keys.ATOMIC_NUMBERS].dtype == torch.long
    assert data[keys.NUM_ATOMS].tolist() == [5]
    assert data.num_nodes == 5


def test_batch_shapes(mixed):
    batch = collate(mixed)
    total = sum(SIZES)
    assert batch[keys.LATTICE].shape == (len(SIZES), 3, 3)
    assert batch[keys.FRAC_COORDS].shape == (total, 3)
    assert batch[keys.ATOMIC_NUMBERS].shape == (total,)
    assert batch[keys.NUM_ATOMS].tolist() == list(SIZES)
    assert batch[keys.BATCH].tolist() == [i for i, n in enumerate(SIZES) for _ in range(n)]
    assert batch.num_graphs == len(SIZES) and batch.num_nodes == total


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_round_trip(mixed, dtype, tol):
    batch = collate(mixed, dtype=dtype)
    assert batch[keys.LATTICE].dtype == dtype
    back = batch_to_crystals(batch)
    assert len(back) == len(mixed)
    for original, restored in zip(mixed, back):
        np.testing.assert_allclose(restored.lattice, original.lattice, rtol=tol, atol=tol)
        np.testing.assert_array_equal(restored.atomic_numbers, original.atomic_numbers)
        difference = restored.frac_coords - original.frac_coords
        np.testing.assert_allclose(difference - np.round(difference), 0.0, atol=tol)


def test_single_data_round_trip():
    crystal = random_crystal(3, 7)
    (back,) = batch_to_crystals(crystal_to_data(crystal, torch.float64))
    np.testing.assert_allclose(back.lattice, crystal.lattice)


def test_empty_and_inconsistent():
    with pytest.raises(ValueError, match="empty"):
        collate([])
    batch = collate([random_crystal(2, 1)])
    batch[keys.NUM_ATOMS] = torch.tensor([3])
    with pytest.raises(ValueError, match="inconsistent batch"):
        batch_to_crystals(batch)
