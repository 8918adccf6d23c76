"""Files written atomically (tables, CIFs, checkpoints, the dataset cache) get the mode an ordinary
``open()`` gives under the process umask, not ``tempfile.mkstemp``'s private 0o600."""

import os
import stat

import numpy as np
import pytest
import torch

from diffcrystal.atomic_write import atomic_write_text, default_file_mode
from diffcrystal.checkpoint import save_checkpoint
from diffcrystal.data import cache
from diffcrystal.data.crystal import Crystal


@pytest.fixture(params=[0o022, 0o027, 0o002])
def umask(request):
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_writes_follow_the_umask(tmp_path, umask):
    expected = 0o666 & ~umask
    assert default_file_mode() == expected
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # what open() gives: the reference
    atomic_write_text(tmp_path / "table.csv", "a,b\n")
    atomic_write_text(tmp_path / "table.csv", "a,b\n1,2\n")  # replacing keeps the mode too
    save_checkpoint(tmp_path / "model.safetensors", {"w": torch.zeros(2)}, {"name": "t"})
    crystal = Crystal(lattice=np.eye(3) * 3.6, frac_coords=np.zeros((1, 3)), atomic_numbers=np.array([29]))
    cache.save(tmp_path / "data.npz", "key", [crystal], [])
    for name in ("table.csv", "model.safetensors", "data.npz"):
        assert mode(tmp_path / name) == mode(plain) == expected, name
    assert os.umask(umask) == umask  # reading the umask left it as it was
