"""nequip's process-wide torch state, kept out of the rest of diffcrystal.

``nequip`` sets torch's default dtype to float64 and seeds every RNG when it is imported or a
model is loaded (``nequip/utils/global_state.py``). Everything here that touches nequip does so
under :func:`preserved_torch_state`, and every calculator call runs under nequip's float64 in
:func:`default_dtype` only for its duration, so a generator in the same process keeps float32 and
its random streams.
"""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def preserved_torch_state():
    """Restore torch's default dtype and the torch, numpy and ``random`` RNG states on exit.

    Wraps anything that imports or loads ``nequip`` (which sets float64 and seeds every RNG).
    """
    import torch

    dtype = torch.get_default_dtype()
    torch_rng = torch.get_rng_state()
    numpy_rng = np.random.get_state()
    python_rng = random.getstate()
    try:
        yield
    finally:
        torch.set_default_dtype(dtype)
        torch.set_rng_state(torch_rng)
        np.random.set_state(numpy_rng)
        random.setstate(python_rng)


@contextlib.contextmanager
def default_dtype(dtype):
    """torch's default dtype set to ``dtype`` inside the block, the previous one restored after."""
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def isolated_nequip_calculator_class():
    """``NequIPCalculator`` whose every call runs under nequip's float64 default dtype (its
    ``from_ase`` builds input tensors in the default dtype, and a compiled model fed float32
    positions returns NaN), restoring torch's previous default after each call. Imports nequip:
    call under :func:`preserved_torch_state`."""
    from nequip.integrations.ase import NequIPCalculator
    from nequip.utils.global_dtype import _GLOBAL_DTYPE

    class IsolatedNequIPCalculator(NequIPCalculator):
        def calculate(self, *args, **kwargs):
            with default_dtype(_GLOBAL_DTYPE):
                return super().calculate(*args, **kwargs)

    return IsolatedNequIPCalculator


def load_checkpoint_calculator(checkpoint: str | Path, device: str = "cpu"):
    """An ASE calculator for a ``nequip-train`` checkpoint (``*.ckpt``), run eagerly without
    compiling (slower per call than a compiled model, but ready in seconds); torch state is
    isolated as for compiled models."""
    with preserved_torch_state():
        return isolated_nequip_calculator_class()._from_saved_model(
            str(checkpoint), device=device, compile_mode="eager", chemical_species_to_atom_type_map=True
        )
