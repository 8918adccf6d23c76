"""A trained generator: denoiser + joint diffusion + the statistics of its training data.

Loaded from a safe checkpoint (:mod:`diffcrystal.checkpoint`), it turns a list of requested
cells (atom counts and, in CSP mode, their species) into :class:`Crystal` objects.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import torch
from diffcrystal.checkpoint import CheckpointError, load_checkpoint
from diffcrystal.data import keys
from diffcrystal.data.crystal import Crystal, CrystalError
from diffcrystal.diffusion import JointDiffusion, build_joint_diffusion, make_template
from diffcrystal.diffusion import sample as run_sampler
from diffcrystal.experts import EXPERT_CONFIG_KEY, LowNoiseRouter, split_expert_tensors
from diffcrystal.models import Denoiser
from diffcrystal.training.config import ExperimentConfig
from diffcrystal.data.statistics import DataStatistics
from diffcrystal.errors import InputError


def _load_denoiser(experiment: ExperimentConfig, tensors: dict[str, torch.Tensor], path) -> Denoiser:
    denoiser = Denoiser(experiment.model)
    try:
        denoiser.load_state_dict(tensors)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise CheckpointError(f"checkpoint {path} does not fit its model config: {first}") from None
    return denoiser


class Generator:
    """Samples crystals with a trained denoiser.

    Parameters
    ----------
    denoiser : the network (weights loaded, eval mode), or a
        :class:`~diffcrystal.experts.LowNoiseRouter` of two.
    joint : the joint diffusion it was trained under.
    experiment : the experiment config it was trained with.
    statistics : species and atom counts of its training data.
    training : the training record (steps, wall time, hardware) from the checkpoint.
    """

    def __init__(
        self,
        denoiser: Denoiser,
        joint: JointDiffusion,
        experiment: ExperimentConfig,
        statistics: DataStatistics,
        training: dict | None = None,
    ):
        self.denoiser = denoiser.eval()
        self.joint = joint
        self.experiment = experiment
        self.statistics = statistics
        self.training = training or {}

    @property
    def mode(self) -> str:
        return self.experiment.diffusion.mode

    @property
    def device(self) -> torch.device:
        return next(self.denoiser.parameters()).device

    @property
    def corrector_step_lr(self) -> float:
        """Langevin corrector ``step_lr`` of the coordinates (step ``step_lr (sigma_t / sigma_min)^2``)."""
        return self.experiment.diffusion.corrector_step_lr

    def set_corrector_step_lr(self, step_lr: float) -> None:
        """Sample with another corrector ``step_lr`` than the checkpoint's (the weights are
        unchanged: the corrector is a sampling-time setting)."""
        if not (math.isfinite(step_lr) and step_lr >= 0):
            raise InputError(f"corrector step_lr must be a finite number >= 0, got {step_lr}")
        self._replace_diffusion(corrector_step_lr=float(step_lr))

    @property
    def coord_noise_scale(self) -> float:
        """Factor on the noise of the coordinates' reverse and corrector steps (1: the diffusion's own)."""
        return self.experiment.diffusion.coord_noise_scale

    def set_coord_noise_scale(self, scale: float, max_t: int | None = None) -> None:
        """Sample the coordinates at another temperature (a sampling-time setting, like the corrector
        step), at the steps from timesteps t <= ``max_t`` only (None: at every step)."""
        if not (math.isfinite(scale) and scale >= 0):
            raise InputError(f"coordinate noise scale must be a finite number >= 0, got {scale}")
        T = self.experiment.diffusion.num_timesteps
        if max_t is not None and not 1 <= max_t <= T:
            raise InputError(f"the noise scale's largest timestep must be in 1..{T}, got {max_t}")
        self._replace_diffusion(coord_noise_scale=float(scale), coord_noise_scale_max_t=max_t)

    def _replace_diffusion(self, **changes) -> None:
        diffusion = dataclasses.replace(self.experiment.diffusion, **changes)
        self.experiment = dataclasses.replace(self.experiment, diffusion=diffusion)
        self.joint = build_joint_diffusion(diffusion)

    def set_sampling(self, **changes) -> None:
        """Sample with other :class:`~diffcrystal.training.config.SamplingConfig` values than the
        checkpoint's (e.g. ``step_spacing``, ``corrector_steps``; the weights are unchanged).
        Out-of-range values raise the config's own :class:`InputError`."""
        sampling = dataclasses.replace(self.experiment.sampling, **changes)
        self.experiment = dataclasses.replace(self.experiment, sampling=sampling)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu") -> "Generator":
        tensors, config = load_checkpoint(path)
        try:
            experiment = ExperimentConfig.from_dict(config["experiment"])
            statistics = DataStatistics.from_dict(config["statistics"])
        except (KeyError, ValueError, TypeError) as error:
            raise CheckpointError(f"checkpoint {path} has an unreadable config: {error}") from None
        base_tensors, expert_tensors = split_expert_tensors(tensors)
        denoiser = _load_denoiser(experiment, base_tensors, path)
        joint = build_joint_diffusion(experiment.diffusion)
        expert_record = config.get(EXPERT_CONFIG_KEY)
        if (expert_record is None) != (not expert_tensors):
            raise CheckpointError(f"checkpoint {path} has low-noise expert weights or config, not both")
        if expert_record is not None:
            try:
                expert_experiment = ExperimentConfig.from_dict(expert_record["experiment"])
                max_timestep = int(expert_record["max_timestep"])
            except (KeyError, ValueError, TypeError) as error:
                raise CheckpointError(f"checkpoint {path} has an unreadable low-noise expert config: {error}") from None
            expert = _load_denoiser(expert_experiment, expert_tensors, path)
            try:
                denoiser = LowNoiseRouter(denoiser, expert, max_timestep, joint.num_timesteps)
            except ValueError as error:
                raise CheckpointError(f"checkpoint {path}: low-noise expert: {error}") from None
        return cls(denoiser.to(device), joint, experiment, statistics, config.get("training"))

    @torch.no_grad()
    def sample(
        self,
        num_atoms: list[int],
        species: list[list[int]] | None = None,
        *,
        num_steps: int,
        generator: torch.Generator,
        progress=None,
        assignments: list | None = None,
        initial: list[Crystal] | None = None,
        start: int | None = None,
    ) -> list[Crystal | CrystalError]:
        """Generate one crystal per entry of ``num_atoms``.

        ``species``: per-crystal atomic numbers (CSP mode; required there, ignored de novo).
        ``assignments``: per crystal a :class:`~diffcrystal.spacegroup.WyckoffAssignment`
        (CSP; ``species[i]`` must equal its ``atomic_numbers()``) to sample on its space group
        through :class:`~diffcrystal.spacegroup.SpaceGroupConstraint`; None: unconstrained.
        ``initial`` and ``start``: per crystal a starting structure (atom count and species as
        requested) noised to timestep ``start`` and denoised from there (SDEdit; see
        :func:`~diffcrystal.diffusion.sample`); None: from the prior.
        Returns a Crystal per request, or the :class:`CrystalError` that made it impossible
        (e.g. a collapsed lattice), so one failure never loses the batch.
        """
        if self.mode == "csp" and species is None:
            raise ValueError("a CSP generator needs the species of every crystal")
        numbers = None
        if self.mode == "csp":
            numbers = torch.as_tensor([z for cell in species for z in cell], dtype=torch.long)
        template = make_template(num_atoms, numbers)
        if (initial is None) != (start is None):
            raise ValueError("initial structures and a start timestep go together")
        if initial is not None:
            if [c.num_atoms for c in initial] != list(num_atoms) or (
                    numbers is not None and [z for c in initial for z in c.atomic_numbers] != numbers.tolist()):
                raise ValueError("initial structures must have the requested atom counts and species")
            dtype = torch.get_default_dtype()
            template[keys.LATTICE] = torch.as_tensor(np.stack([c.lattice for c in initial]), dtype=dtype)
            template[keys.FRAC_COORDS] = torch.as_tensor(np.concatenate([c.frac_coords for c in initial]), dtype=dtype)
        template = template.to(self.device)
        constraint = None
        if assignments is not None:
            from diffcrystal.spacegroup import SpaceGroupConstraint

            if self.mode != "csp" or [a.atomic_numbers() for a in assignments] != [list(s) for s in species]:
                raise ValueError("space-group sampling needs a CSP generator and species ordered as the assignments")
            constraint = SpaceGroupConstraint(assignments, device=self.device)
        result = run_sampler(
            self.joint,
            self.denoiser,
            template,
            num_steps=num_steps,
            generator=generator,
            corrector_steps=self.experiment.sampling.corrector_steps,
            corrector_min_t=self.experiment.sampling.corrector_min_t,
            corrector_max_t=self.experiment.sampling.corrector_max_t,
            progress=progress,
            project=constraint,
            start=start,
            spacing=self.experiment.sampling.step_spacing,
        )
        lattices = result[keys.LATTICE].double().cpu().numpy()
        frac = result[keys.FRAC_COORDS].double().cpu().numpy()
        numbers = result[keys.ATOMIC_NUMBERS].cpu().numpy()
        offsets = [0]
        for n in num_atoms:
            offsets.append(offsets[-1] + n)
        crystals: list[Crystal | CrystalError] = []
        for index in range(len(num_atoms)):
            start, stop = offsets[index], offsets[index + 1]
            try:
                crystals.append(Crystal(lattices[index], frac[start:stop], numbers[start:stop]))
            except CrystalError as error:
                crystals.append(error)
        return crystals
