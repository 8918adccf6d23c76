"""Diffusion tests run single-threaded: their tensors are small, and on a shared 2-core
machine torch's intra-op threads oversubscribe the CPU (measured: 20x slower)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
