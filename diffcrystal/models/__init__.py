"""The e3nn equivariant denoiser and its layers.

Public surface: :class:`Denoiser` (``forward(batch) -> dict`` of raw predictions keyed by
``diffcrystal.data.keys``) and :class:`DenoiserConfig` (its hyperparameters, saved with
checkpoints). The denoiser never imports ``diffcrystal.diffusion``: it knows nothing about
noise schedules.
"""

from diffcrystal.models.config import DenoiserConfig
from diffcrystal.models.denoiser import Denoiser, hidden_irreps

__all__ = ["Denoiser", "DenoiserConfig", "hidden_irreps"]
