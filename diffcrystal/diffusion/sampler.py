"""Predictor-corrector sampling of a :class:`~diffcrystal.diffusion.joint.JointDiffusion`.

The sampler owns no maths: it draws every field from its prior at ``t = T``, then walks
``num_steps`` timesteps ``T = t_0 > t_1 > ... > t_K = 0`` (evenly spaced, or denser at low
noise with ``spacing`` > 1, at high noise with ``spacing`` < 1; rounded, :func:`timestep_grid`). At each step t -> s:

1. **corrector** (``corrector_steps`` times, only while ``corrector_min_t`` < t <= ``corrector_max_t``): one denoiser
   call on the current state at time t, then ``process.corrector_step`` for every field with
   ``has_corrector`` (the coordinate Langevin step); other fields are unchanged (DiffCSP
   Algorithm 2 order: corrector first). ``corrector_min_t`` > 0 leaves the lowest-noise steps
   to the predictor alone, as EDM's S_tmin confines its stochastic churn to a noise range
   (Karras et al., arXiv:2206.00364): each Langevin step draws noise of ``sqrt(2 step)``,
   which at every t is a fixed multiple of sigma_t, and only an accurate score takes it back;
   ``corrector_max_t`` < T leaves the highest-noise steps to the predictor too;
2. **predictor**: one denoiser call at time t, then ``process.reverse_step(x_t, t, s)`` for
   every field (lattice DDIM/ancestral, coordinate reverse-diffusion, species posterior).

With ``start = t0 < T`` the walk begins at t0 from the template's own fields noised to t0 by
each process's forward marginal (SDEdit, Meng et al. arXiv:2108.01073): the result keeps the
template's coarse structure and lets the denoiser rework its details; the grid then runs
``t0 > ... > 0`` in ``num_steps`` steps.

With a ``project`` hook (e.g. :class:`~diffcrystal.spacegroup.SpaceGroupConstraint`), every
field is passed through ``project(field_key, value)`` after its prior draw and after each
corrector and predictor update, so the walk stays on the set the hook projects onto.

Denoiser calls: ``num_steps + corrector_steps * (steps with corrector_min_t < t <= corrector_max_t)`` when some
field has a corrector (``corrector_steps = 0`` gives plain ancestral sampling, ``num_steps`` calls). Everything runs
under ``torch.no_grad`` and draws randomness only from the given generator.
"""

from __future__ import annotations

import copy
from typing import Callable, Sequence

import numpy as np
import torch

from diffcrystal.data import keys
from diffcrystal.diffusion.joint import Denoiser, JointDiffusion, check_outputs

__all__ = ["SamplingBatch", "make_template", "sample", "timestep_grid"]


class SamplingBatch(dict):
    """B crystals as ``{batch key: tensor}`` plus ``num_graphs``: the part of a torch-geometric
    ``Batch`` that the sampler, the denoiser and the training loss read (``batch[key]``,
    ``key in batch``, ``batch.get``, ``batch.num_graphs``), without importing torch-geometric,
    which costs seconds at every sampling start."""

    def __init__(self, fields: dict[str, torch.Tensor], num_graphs: int):
        super().__init__(fields)
        self.num_graphs = int(num_graphs)

    def __copy__(self) -> "SamplingBatch":
        return SamplingBatch(self, self.num_graphs)

    def to(self, device) -> "SamplingBatch":
        return SamplingBatch({key: value.to(device) for key, value in self.items()}, self.num_graphs)


def timestep_grid(num_timesteps: int, num_steps: int, spacing: float = 1.0) -> list[int]:
    """``num_steps + 1`` strictly decreasing ints from T to 0 on the power grid
    ``t_k = T (1 - k/K)^spacing``, k = 0..K, rounded.

    ``spacing`` 1 spaces the steps evenly; ``spacing`` ρ > 1 puts more of them at low noise
    (the step near t = 0 shrinks as K^-ρ), as the ρ of EDM's time grid (Karras et al.,
    arXiv:2206.00364) does; ρ < 1 puts more at high noise. Where rounding would repeat a
    timestep, neighbours move by one (t_k is kept within [K - k, T - k], then each step is made
    at least one long from the end), so the grid always has K distinct steps.

    >>> timestep_grid(1000, 4)
    [1000, 750, 500, 250, 0]
    >>> timestep_grid(1000, 4, spacing=2)
    [1000, 562, 250, 62, 0]
    """
    if not isinstance(num_steps, int) or not 1 <= num_steps <= num_timesteps:
        raise ValueError(f"num_steps must be an int in 1..{num_timesteps} (T), got {num_steps!r}")
    if not (np.isfinite(spacing) and spacing > 0):
        raise ValueError(f"step spacing must be a finite number > 0, got {spacing!r}")
    k = np.arange(num_steps + 1)
    grid = np.round(num_timesteps * (1.0 - k / num_steps) ** float(spacing)).astype(int)
    grid = np.clip(grid, num_steps - k, num_timesteps - k).tolist()
    for i in range(num_steps - 1, 0, -1):  # from the end: at least one above the next
        grid[i] = max(grid[i], grid[i + 1] + 1)
    assert grid[0] == num_timesteps and grid[-1] == 0 and all(a > b for a, b in zip(grid, grid[1:])), grid
    return grid


def make_template(num_atoms: Sequence[int] | torch.Tensor, atomic_numbers: torch.Tensor | None = None) -> SamplingBatch:
    """A sampling template: B crystals with ``num_atoms[i]`` atoms each.

    ``atomic_numbers``: (N,) long, concatenated per crystal (CSP mode); None for de novo.
    The result carries ``keys.NUM_ATOMS`` (B,), ``keys.BATCH`` (N,) and, if given,
    ``keys.ATOMIC_NUMBERS``.
    """
    counts = [int(n) for n in torch.as_tensor(num_atoms).flatten().tolist()]
    if not counts or min(counts) < 1:
        raise ValueError(f"num_atoms must be a non-empty list of positive ints, got {counts}")
    if atomic_numbers is not None and atomic_numbers.shape != (sum(counts),):
        raise ValueError(f"atomic_numbers must have shape ({sum(counts)},), got {tuple(atomic_numbers.shape)}")
    sizes = torch.tensor(counts, dtype=torch.long)  # (B,)
    fields = {keys.NUM_ATOMS: sizes, keys.BATCH: torch.repeat_interleave(torch.arange(len(counts)), sizes)}
    if atomic_numbers is not None:
        fields[keys.ATOMIC_NUMBERS] = atomic_numbers.long()
    return SamplingBatch(fields, len(counts))


def _batch_index(template) -> torch.Tensor:
    index = template.get(keys.BATCH)
    if index is not None:
        return index
    if keys.NUM_ATOMS not in template:
        raise ValueError(f"sampling template needs {keys.BATCH!r} or {keys.NUM_ATOMS!r}")
    counts = template[keys.NUM_ATOMS]
    return torch.repeat_interleave(torch.arange(counts.shape[0], device=counts.device), counts)


def sample(
    joint: JointDiffusion,
    denoiser: Denoiser,
    template,
    *,
    num_steps: int,
    generator: torch.Generator,
    corrector_steps: int = 1,
    progress: Callable[[int], None] | None = None,
    dtype: torch.dtype | None = None,
    project: Callable[[str, torch.Tensor], torch.Tensor] | None = None,
    start: int | None = None,
    spacing: float = 1.0,
    corrector_min_t: int = 0,
    corrector_max_t: int | None = None,
):
    """Generate crystals shaped like ``template``.

    Parameters
    ----------
    joint : the diffusion the denoiser was trained with.
    denoiser : ``denoiser(batch) -> dict`` (see :mod:`diffcrystal.data.keys`).
    template : torch-geometric Batch with ``keys.BATCH`` (or ``keys.NUM_ATOMS``) and, when
        ``joint`` has no species field (CSP), ``keys.ATOMIC_NUMBERS`` (N,). See
        :func:`make_template`.
    num_steps : number of reverse steps, 1..T (e.g. 1000, 200, 100, 50).
    generator : the only source of randomness; its device is the sampling device.
    corrector_steps : Langevin corrector steps per step (each costs one denoiser call).
    progress : called as ``progress(step_index)`` after each step, 0..num_steps-1.
    dtype : float dtype of the sampled lattice and coordinates (default: torch's default).
    project : ``project(field_key, value) -> value``, applied to every field after its prior
        draw and after each update (a projection onto constrained states); None: unconstrained.
    start : timestep 1..T to start from, noising the template's own fields (every diffused
        field must then be in the template); None: from the prior at T.
    spacing : ρ > 0 of the power timestep grid (:func:`timestep_grid`); 1: evenly spaced.
    corrector_min_t : the corrector runs only at steps from a timestep t > this (0: at every step).
    corrector_max_t : ... and t <= this (None: up to T).

    Returns
    -------
    A copy of ``template`` with every diffused field set to its t = 0 sample:
    ``keys.LATTICE`` (B, 3, 3) Å, ``keys.FRAC_COORDS`` (N, 3) in [0, 1), and
    ``keys.ATOMIC_NUMBERS`` (N,) without mask tokens.
    """
    if not isinstance(corrector_steps, int) or corrector_steps < 0:
        raise ValueError(f"corrector_steps must be an int >= 0, got {corrector_steps!r}")
    if isinstance(corrector_min_t, bool) or not isinstance(corrector_min_t, int) or corrector_min_t < 0:
        raise ValueError(f"corrector_min_t must be an int timestep >= 0, got {corrector_min_t!r}")
    if corrector_max_t is not None and (isinstance(corrector_max_t, bool) or not isinstance(corrector_max_t, int)
                                        or corrector_max_t <= corrector_min_t):
        raise ValueError(f"corrector_max_t must be None or an int timestep > corrector_min_t ({corrector_min_t}), "
                         f"got {corrector_max_t!r}")
    corrector_max_t = joint.num_timesteps if corrector_max_t is None else corrector_max_t
    dtype = dtype or torch.get_default_dtype()
    if start is not None and (isinstance(start, bool) or not isinstance(start, int)
                              or not 1 <= start <= joint.num_timesteps):
        raise ValueError(f"start must be an int timestep in 1..{joint.num_timesteps}, got {start!r}")
    grid = timestep_grid(start or joint.num_timesteps, num_steps, spacing)
    project = project or (lambda _key, value: value)
    state = copy.copy(template)
    batch_index = _batch_index(template).to(generator.device)  # (N,)
    num_graphs = int(template[keys.NUM_ATOMS].shape[0]) if keys.NUM_ATOMS in template else int(batch_index.max()) + 1
    state[keys.BATCH] = batch_index
    if keys.ATOMIC_NUMBERS not in template and not any(
        p.field_key == keys.ATOMIC_NUMBERS for p in joint.fields.values()
    ):
        raise ValueError(f"CSP sampling needs {keys.ATOMIC_NUMBERS!r} in the template")
    for proc in joint.fields.values():
        rows = batch_index.shape[0] if proc.per_atom else num_graphs
        if start is None:
            value = proc.sample_prior(rows, generator=generator, dtype=dtype)
        elif proc.field_key not in template:
            raise ValueError(f"starting at t={start} needs {proc.field_key!r} in the template")
        else:
            clean = template[proc.field_key].to(device=generator.device, dtype=dtype)
            times = torch.full((rows,), start, dtype=torch.long, device=generator.device)
            value = proc.noise(clean, times, generator=generator)[0]
        state[proc.field_key] = project(proc.field_key, value)
    correctors = {name: proc for name, proc in joint.fields.items() if proc.has_corrector}

    with torch.no_grad():
        for step_index, (t, s) in enumerate(zip(grid[:-1], grid[1:])):
            state[keys.TIME] = torch.full((num_graphs,), t / joint.num_timesteps, dtype=dtype, device=generator.device)
            if correctors and corrector_min_t < t <= corrector_max_t:
                for _ in range(corrector_steps):
                    out = denoiser(state)
                    check_outputs(out, correctors, state)
                    for proc in correctors.values():
                        state[proc.field_key] = project(proc.field_key, proc.corrector_step(
                            state[proc.field_key], t, out[proc.output_key], generator=generator
                        ))
            out = denoiser(state)
            check_outputs(out, joint.fields, state)
            for proc in joint.fields.values():
                state[proc.field_key] = project(proc.field_key, proc.reverse_step(
                    state[proc.field_key], t, s, out[proc.output_key], generator=generator
                ))
            if progress is not None:
                progress(step_index)
    del state[keys.TIME]
    return state
