"""Corruption processes of the joint crystal diffusion and the predictor-corrector sampler.

One module per corrupted variable, all implementing :class:`~diffcrystal.diffusion.base.Corruption`:

- :mod:`~diffcrystal.diffusion.lattice` -- DDPM on the lattice ``L`` (B, 3, 3), Å;
- :mod:`~diffcrystal.diffusion.coords` -- wrapped-normal score diffusion of fractional
  coordinates (N, 3) on the 3-torus, with a normalised score target;
- :mod:`~diffcrystal.diffusion.species` -- absorbing-state D3PM over atomic numbers (N,);
- :mod:`~diffcrystal.diffusion.schedules` -- the noise schedules they take as arguments;
- :mod:`~diffcrystal.diffusion.joint` -- :class:`JointDiffusion`, its training loss,
  :class:`DiffusionConfig` and :func:`build_joint_diffusion`;
- :mod:`~diffcrystal.diffusion.sampler` -- :func:`sample`.

Conventions (see :mod:`diffcrystal`): lattice rows are a, b, c in Å, ``X = F @ L``, ``F`` in
[0, 1), species 1..100 with 0 the mask. Time is discrete, ``t = 0`` (data) .. ``T``; the
denoiser sees ``t / T``.
"""

from diffcrystal.diffusion.base import Corruption, IncompatibleSamplerError, NonFiniteLossError
from diffcrystal.diffusion.coords import CORRECTOR_STEP_LR_BY_DATASET, CoordDiffusion
from diffcrystal.diffusion.joint import (
    FIELD_COORDS,
    FIELD_LATTICE,
    FIELD_SPECIES,
    DiffusionConfig,
    JointDiffusion,
    build_joint_diffusion,
)
from diffcrystal.diffusion.lattice import LatticeDiffusion
from diffcrystal.diffusion.sampler import make_template, sample, timestep_grid
from diffcrystal.diffusion.schedules import CosineBetaSchedule, ExponentialSigmaSchedule, MaskSchedule
from diffcrystal.diffusion.species import SpeciesDiffusion

__all__ = [
    "CORRECTOR_STEP_LR_BY_DATASET",
    "FIELD_COORDS",
    "FIELD_LATTICE",
    "FIELD_SPECIES",
    "CoordDiffusion",
    "Corruption",
    "CosineBetaSchedule",
    "DiffusionConfig",
    "ExponentialSigmaSchedule",
    "IncompatibleSamplerError",
    "JointDiffusion",
    "LatticeDiffusion",
    "MaskSchedule",
    "NonFiniteLossError",
    "SpeciesDiffusion",
    "build_joint_diffusion",
    "make_template",
    "sample",
    "timestep_grid",
]
