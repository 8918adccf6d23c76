"""A low-noise expert: a second denoiser for the last timesteps of sampling.

One network must both decide a crystal's structure at high noise and place its atoms to a few
hundredths of an ångström at low noise. Following eDiff-I (Balaji et al., arXiv:2211.01324),
a generator may carry a copy of its denoiser fine-tuned on timesteps ``1..t_e`` only
(``diffusion.train_timesteps: [1, t_e]``); sampling then calls

    denoiser(x_t, t) = expert(x_t, t)  if t <= t_e  else  base(x_t, t)

Sampling costs the same (one call per step), the file twice the weights.

In a checkpoint the expert's tensors carry the prefix ``low_noise_expert.`` and the config a
``low_noise_expert`` entry: ``max_timestep`` (t_e), the expert's own ``experiment`` config
and its ``training`` record. :func:`attach_low_noise_expert` writes such a file from two
trained generators.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from diffcrystal.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from diffcrystal.data import keys

EXPERT_PREFIX = "low_noise_expert."
EXPERT_CONFIG_KEY = "low_noise_expert"


class LowNoiseRouter(nn.Module):
    """``base`` above timestep ``max_timestep`` (of ``num_timesteps``), ``expert`` at and below it.

    The batch's ``keys.TIME`` holds ``t / T`` per crystal. A batch whose crystals all lie on
    one side goes to one network (the sampler's case: one t per step); a mixed batch runs both
    and takes each crystal's outputs (per crystal or per atom) from its own side.
    """

    def __init__(self, base: nn.Module, expert: nn.Module, max_timestep: int, num_timesteps: int):
        super().__init__()
        if not 1 <= max_timestep < num_timesteps:
            raise ValueError(f"max_timestep must be in 1..{num_timesteps - 1}, got {max_timestep}")
        self.base, self.expert = base, expert
        self.max_timestep, self.num_timesteps = int(max_timestep), int(num_timesteps)

    def forward(self, batch) -> dict[str, Tensor]:
        time = batch[keys.TIME].reshape(-1)  # (B,) t / T
        low = time * self.num_timesteps <= self.max_timestep + 0.5  # (B,) bool
        if bool(low.all()):
            return self.expert(batch)
        if not bool(low.any()):
            return self.base(batch)
        from_expert, from_base = self.expert(batch), self.base(batch)
        low_atoms = low[batch[keys.BATCH]]  # (N,)
        out = {}
        for key, value in from_base.items():
            rows = low_atoms if value.shape[0] == low_atoms.shape[0] else low  # per atom or per crystal
            mask = rows.reshape(-1, *([1] * (value.dim() - 1)))
            out[key] = torch.where(mask, from_expert[key], value)
        return out


def split_expert_tensors(tensors: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """``(base tensors, expert tensors without the prefix)`` of one checkpoint."""
    base = {name: t for name, t in tensors.items() if not name.startswith(EXPERT_PREFIX)}
    expert = {name[len(EXPERT_PREFIX):]: t for name, t in tensors.items() if name.startswith(EXPERT_PREFIX)}
    return base, expert


def attach_low_noise_expert(base_path: str | Path, expert_path: str | Path, out_path: str | Path) -> Path:
    """Write ``out_path``: generator ``base_path`` with ``expert_path`` as its low-noise expert.

    The expert must be a generator of the same mode and diffusion (schedules, T) trained on
    ``train_timesteps [1, t_e]``; t_e becomes the switch. Raises :class:`CheckpointError`
    naming what does not fit.
    """
    base_tensors, base_config = load_checkpoint(base_path)
    expert_tensors, expert_config = load_checkpoint(expert_path)
    if EXPERT_CONFIG_KEY in base_config or EXPERT_CONFIG_KEY in expert_config:
        raise CheckpointError(f"{base_path} or {expert_path} already carries a low-noise expert")
    base_diffusion = dict(base_config["experiment"]["diffusion"])
    expert_diffusion = dict(expert_config["experiment"]["diffusion"])
    window = expert_diffusion.pop("train_timesteps", None)
    base_diffusion.pop("train_timesteps", None)
    if base_diffusion != expert_diffusion:
        differing = sorted(k for k in base_diffusion if base_diffusion.get(k) != expert_diffusion.get(k))
        raise CheckpointError(f"{expert_path} was trained under another diffusion than {base_path}: {differing}")
    if not window or window[0] != 1 or window[1] >= base_diffusion["num_timesteps"]:
        raise CheckpointError(f"{expert_path} is not a low-noise expert: train_timesteps {window}, expected [1, t_e < T]")
    config = dict(base_config)
    config[EXPERT_CONFIG_KEY] = {
        "max_timestep": int(window[1]),
        "experiment": expert_config["experiment"],
        "training": expert_config.get("training", {}),
    }
    tensors = dict(base_tensors)
    tensors.update({EXPERT_PREFIX + name: t for name, t in expert_tensors.items()})
    return save_checkpoint(out_path, tensors, config)
