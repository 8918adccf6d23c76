"""The joint diffusion over a crystal's variables, its training loss, and its config.

A :class:`JointDiffusion` maps field names (``'lattice'``, ``'coords'``, ``'species'``) to
corruption processes that share the same T. The mode is structural: crystal-structure
prediction (CSP) has no ``'species'`` field, so atomic numbers stay as given; de novo
generation diffuses them too.

Training loss, per batch of B crystals (:meth:`JointDiffusion.training_loss`):

1. sample ``t ~ U{1..T}`` per crystal (atoms inherit their crystal's t);
2. noise every field: ``(x_t, target) = process.noise(x_0, t)``;
3. call the denoiser on the noisy batch with ``keys.TIME = t / T``;
4. per-field loss per crystal (per-atom losses averaged within each crystal), averaged over
   crystals, so every crystal weighs the same (``atom_loss_average='crystal'``, the default);
   or, with ``'atom'``, per-atom losses averaged over every atom of the batch, so a crystal
   weighs its atom count (DiffCSP's reduction); total ``'loss' = sum_f weight_f * loss_f``.
   A non-finite total raises :class:`~diffcrystal.diffusion.base.NonFiniteLossError`.

>>> import torch
>>> joint = build_joint_diffusion(DiffusionConfig(mode="csp", num_timesteps=10))
>>> sorted(joint.fields), joint.num_timesteps
(['coords', 'lattice'], 10)
>>> DiffusionConfig.from_dict(DiffusionConfig(mode="denovo").to_dict()).mode
'denovo'
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping, Sequence, get_args

import torch

from diffcrystal.data import keys
from diffcrystal.diffusion.base import Corruption, NonFiniteLossError
from diffcrystal.diffusion.coords import (
    CORRECTOR_STEP_LR_BY_DATASET,
    DEFAULT_N_IMAGES,
    DEFAULT_QUADRATURE_POINTS,
    CoordDiffusion,
)
from diffcrystal.diffusion.lattice import LatticeDiffusion
from diffcrystal.diffusion.schedules import (
    CosineBetaSchedule,
    ExponentialSigmaSchedule,
    MaskSchedule,
    MaskScheduleKind,
)
from diffcrystal.diffusion.species import SpeciesDiffusion, SpeciesLossWeighting

__all__ = [
    "FIELD_COORDS",
    "FIELD_LATTICE",
    "FIELD_SPECIES",
    "DiffusionConfig",
    "DiffusionMode",
    "Denoiser",
    "JointDiffusion",
    "build_joint_diffusion",
]

FIELD_LATTICE = "lattice"
FIELD_COORDS = "coords"
FIELD_SPECIES = "species"

DiffusionMode = Literal["csp", "denovo"]
AtomLossAverage = Literal["crystal", "atom"]

Denoiser = Callable[[Any], Mapping[str, torch.Tensor]]
"""``denoiser(batch) -> {output key: tensor}``; see :mod:`diffcrystal.data.keys`."""


def per_structure_mean(values: torch.Tensor, batch_index: torch.Tensor, num_graphs: int) -> torch.Tensor:
    """Mean of per-atom ``values`` (N,) within each crystal: (B,). Empty crystals give 0."""
    sums = torch.zeros(num_graphs, dtype=values.dtype, device=values.device).index_add_(0, batch_index, values)  # (B,)
    counts = torch.bincount(batch_index, minlength=num_graphs).clamp(min=1).to(values.dtype)  # (B,)
    return sums / counts


def check_outputs(out: Mapping[str, torch.Tensor], fields: Mapping[str, Corruption], state) -> None:
    """Raise ``ValueError`` naming any missing or mis-shaped denoiser output."""
    if not isinstance(out, Mapping):
        raise ValueError(f"denoiser must return a mapping of output keys to tensors, got {type(out).__name__}")
    for name, proc in fields.items():
        if proc.output_key not in out:
            raise ValueError(
                f"denoiser output lacks {proc.output_key!r} needed by field {name!r}; got keys {sorted(out)}"
            )
        pred = out[proc.output_key]
        rows = state[proc.field_key].shape[0]
        if pred.shape[0] != rows:
            raise ValueError(
                f"denoiser output {proc.output_key!r} has {pred.shape[0]} rows, expected {rows} "
                f"(one per {'atom' if proc.per_atom else 'crystal'})"
            )


def checked_window(window, num_timesteps: int) -> tuple[int, int]:
    """``(t_min, t_max)`` of a training-timestep window, checked: ``1 <= t_min <= t_max <= T``."""
    if len(window) != 2 or not 1 <= window[0] <= window[1] <= num_timesteps:
        raise ValueError(f"train_timesteps must be [t_min, t_max] with 1 <= t_min <= t_max <= {num_timesteps}, got {window}")
    return int(window[0]), int(window[1])


def checked_atom_loss_average(value) -> AtomLossAverage:
    """``value`` if it names a reduction of per-atom losses (:data:`AtomLossAverage`), else ``ValueError``."""
    if value not in get_args(AtomLossAverage):
        raise ValueError(f"atom_loss_average must be one of {list(get_args(AtomLossAverage))}, got {value!r}")
    return value


class JointDiffusion:
    """Independent corruption of several crystal fields on a shared time axis 1..T.

    Parameters
    ----------
    fields : field name -> process; all must have the same ``num_timesteps`` and distinct
        ``field_key``. Stored sorted by name (stable order, stable random streams).
    loss_weights : field name -> weight of its loss in the total; missing names weigh 1.
    train_timesteps : ``(t_min, t_max)``, the training timesteps (inclusive; :func:`checked_window`);
        None: 1..T.
        A narrower range trains an expert for those noise levels (e.g. ``(1, 300)``, the
        low-noise end where atoms are placed precisely; eDiff-I, arXiv:2211.01324).
    atom_loss_average : how per-atom losses (coordinates, species) reduce over a batch of
        crystals with n_b atoms: ``'crystal'``, ``mean_b mean_{i in b} l_i`` (every crystal
        weighs the same); ``'atom'``, ``sum_i l_i / sum_b n_b`` (a crystal weighs n_b).
    """

    def __init__(
        self,
        fields: Mapping[str, Corruption],
        loss_weights: Mapping[str, float] | None = None,
        train_timesteps: Sequence[int] | None = None,
        atom_loss_average: AtomLossAverage = "crystal",
    ):
        checked_atom_loss_average(atom_loss_average)
        if not fields:
            raise ValueError("JointDiffusion needs at least one field")
        steps = {name: proc.num_timesteps for name, proc in fields.items()}
        if len(set(steps.values())) != 1:
            raise ValueError(f"all fields must share num_timesteps; got {steps}")
        batch_keys = [proc.field_key for proc in fields.values()]
        if len(set(batch_keys)) != len(batch_keys):
            raise ValueError(f"two fields corrupt the same batch key: {dict(zip(fields, batch_keys))}")
        loss_weights = dict(loss_weights or {})
        unknown = sorted(set(loss_weights) - set(fields))
        if unknown:
            raise ValueError(f"loss weights for unknown fields {unknown}; fields are {sorted(fields)}")
        self.fields: dict[str, Corruption] = {name: fields[name] for name in sorted(fields)}
        self.loss_weights: dict[str, float] = {name: float(loss_weights.get(name, 1.0)) for name in self.fields}
        self.num_timesteps: int = next(iter(steps.values()))
        self.train_timesteps: tuple[int, int] = (
            (1, self.num_timesteps) if train_timesteps is None else checked_window(train_timesteps, self.num_timesteps)
        )
        self.atom_loss_average: AtomLossAverage = atom_loss_average

    def __repr__(self) -> str:
        inner = ",\n  ".join(f"{n}: {p!r} (weight {self.loss_weights[n]})" for n, p in self.fields.items())
        return f"JointDiffusion(\n  {inner}\n)"

    def with_field(self, name: str, process: Corruption) -> "JointDiffusion":
        """A copy with ``fields[name]`` replaced, e.g. a species process restricted to elements."""
        if name not in self.fields:
            raise ValueError(f"unknown field {name!r}; fields are {sorted(self.fields)}")
        return JointDiffusion({**self.fields, name: process}, self.loss_weights, self.train_timesteps,
                              self.atom_loss_average)

    def time_input(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The denoiser's time input ``t / T`` (B,) in (0, 1]."""
        return t.to(dtype) / self.num_timesteps

    def sample_timesteps(self, num_graphs: int, *, generator: torch.Generator) -> torch.Tensor:
        """``t ~ U{t_min..t_max}`` per crystal (``train_timesteps``, default 1..T): (B,) long on
        ``generator.device``."""
        low, high = self.train_timesteps
        return torch.randint(low, high + 1, (num_graphs,), generator=generator, device=generator.device)

    def training_loss(self, denoiser: Denoiser, batch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Loss of ``denoiser`` on a clean ``batch`` (torch-geometric Batch of B crystals).

        Returns ``{'loss': total, 'loss_<field>': per-field loss}`` (0-dim tensors; the total
        carries gradients). Raises :class:`NonFiniteLossError` if the total is NaN or inf.
        """
        num_graphs = int(batch.num_graphs)
        batch_index = batch[keys.BATCH]  # (N,)
        t = self.sample_timesteps(num_graphs, generator=generator)  # (B,)
        noisy = copy.copy(batch)
        targets: dict[str, torch.Tensor] = {}
        row_times: dict[str, torch.Tensor] = {}
        for name, proc in self.fields.items():
            t_rows = t[batch_index] if proc.per_atom else t  # (N,) or (B,)
            x_t, targets[name] = proc.noise(batch[proc.field_key], t_rows, generator=generator)
            noisy[proc.field_key] = x_t
            row_times[name] = t_rows
        float_dtype = next(
            (v.dtype for v in (batch.get(keys.LATTICE), batch.get(keys.FRAC_COORDS)) if v is not None),
            torch.get_default_dtype(),
        )
        noisy[keys.TIME] = self.time_input(t, float_dtype)  # (B,)
        out = denoiser(noisy)
        check_outputs(out, self.fields, noisy)
        result: dict[str, torch.Tensor] = {}
        total = None
        for name, proc in self.fields.items():
            rows = proc.loss(out[proc.output_key], targets[name], row_times[name])  # (N,) or (B,)
            if proc.per_atom and self.atom_loss_average == "crystal":
                rows = per_structure_mean(rows, batch_index, num_graphs)  # (B,)
            result[f"loss_{name}"] = rows.mean()
            term = self.loss_weights[name] * result[f"loss_{name}"]
            total = term if total is None else total + term
        if not torch.isfinite(total):
            parts = {k: float(v.detach()) for k, v in result.items()}
            raise NonFiniteLossError(
                f"non-finite training loss {float(total.detach())}; per field {parts}; "
                f"timesteps {t.tolist()[:32]}{' ...' if num_graphs > 32 else ''}"
            )
        result["loss"] = total
        return result


@dataclass
class DiffusionConfig:
    """Everything that defines the joint diffusion; fields are constructor arguments.

    Saved inside checkpoints via :meth:`to_dict`; :meth:`from_dict` rejects unknown keys.
    Defaults follow DiffCSP (arXiv:2309.04475) unless stated.
    """

    mode: DiffusionMode = "csp"
    """'csp': lattice + coordinates (species given); 'denovo': also species (D3PM)."""
    num_timesteps: int = 1000
    """T, shared by all fields (DiffCSP: 1000)."""
    # lattice DDPM
    lattice_cosine_s: float = 0.008
    """Offset of the cosine schedule (improved DDPM arXiv:2102.09672)."""
    lattice_max_beta: float = 0.999
    """Clip of beta_t (improved DDPM)."""
    lattice_length_scale_A: float = 1.0
    """Å per unit of the diffused lattice; 1.0 diffuses raw Å as DiffCSP."""
    lattice_eta: float = 1.0
    """DDIM eta of the lattice reverse step (1 = ancestral DDPM)."""
    lattice_clip_x0: float | None = None
    """Optional clamp of the predicted clean lattice entries (units of the length scale)."""
    # coordinates (wrapped normal)
    coord_sigma_min: float = 0.005
    """Smallest coordinate noise std, fractional (DiffCSP)."""
    coord_sigma_max: float = 0.5
    """Largest coordinate noise std, fractional (DiffCSP)."""
    coord_n_images: int = DEFAULT_N_IMAGES
    """Periodic images on each side of the wrapped-normal sums (DiffCSP: 10)."""
    coord_quadrature_points: int = DEFAULT_QUADRATURE_POINTS
    """Nodes of the quadrature giving the score normalisation."""
    corrector_step_lr: float = CORRECTOR_STEP_LR_BY_DATASET["mp_20"]
    """Langevin corrector step_lr (DiffCSP: perov_5 5e-7, carbon_24 5e-6, mp_20 1e-5)."""
    coord_noise_scale: float = 1.0
    """Sampling temperature of the coordinates: factor on the noise of their reverse and corrector
    steps (1: the diffusion's own; training never uses it)."""
    coord_noise_scale_max_t: int | None = None
    """The noise scale applies to steps from timesteps t <= this only (None: to every step)."""
    # species (de novo)
    species_mask_schedule: MaskScheduleKind = "linear"
    """'linear' (D3PM absorbing) or 'cosine' mask probability schedule."""
    species_loss_weighting: SpeciesLossWeighting = "elbo"
    """'elbo' (exact NELBO weight) or 'uniform' masked-token cross entropy."""
    # loss weights
    lattice_loss_weight: float = 1.0
    """DiffCSP cost_lattice = 1."""
    coord_loss_weight: float = 1.0
    """DiffCSP cost_coord = 1."""
    species_loss_weight: float = 1.0
    """Weight of the D3PM species loss (DiffCSP's 20 is for its continuous one-hot type loss, a
    different quantity; not transferred)."""
    train_timesteps: list[int] | None = None
    """``[t_min, t_max]``: train on these timesteps only (a noise-level expert); None: 1..T."""
    atom_loss_average: AtomLossAverage = "crystal"
    """Per-atom losses averaged within each crystal, then over crystals ('crystal': every crystal
    weighs the same), or over all atoms of the batch ('atom', DiffCSP: a crystal weighs its
    atom count)."""

    def __post_init__(self) -> None:
        if self.mode not in get_args(DiffusionMode):
            raise ValueError(f"unknown mode {self.mode!r}; valid: {list(get_args(DiffusionMode))}")
        for name in ("lattice_loss_weight", "coord_loss_weight", "species_loss_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.train_timesteps is not None:
            self.train_timesteps = list(checked_window(self.train_timesteps, self.num_timesteps))
        checked_atom_loss_average(self.atom_loss_average)

    @classmethod
    def for_dataset(cls, dataset: str, **overrides: Any) -> "DiffusionConfig":
        """Defaults with DiffCSP's tuned corrector step for ``dataset`` (perov_5, carbon_24, mp_20)."""
        if dataset not in CORRECTOR_STEP_LR_BY_DATASET:
            raise ValueError(f"no tuned settings for {dataset!r}; known: {sorted(CORRECTOR_STEP_LR_BY_DATASET)}")
        return cls(**{"corrector_step_lr": CORRECTOR_STEP_LR_BY_DATASET[dataset], **overrides})

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of all fields (JSON/YAML-serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "DiffusionConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError`` listing valid ones."""
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(valid))
        if unknown:
            raise ValueError(f"unknown DiffusionConfig keys {unknown}; valid keys: {valid}")
        return cls(**dict(values))


def build_joint_diffusion(config: DiffusionConfig) -> JointDiffusion:
    """The :class:`JointDiffusion` a config describes (species field only in de novo mode)."""
    T = config.num_timesteps
    fields: dict[str, Corruption] = {
        FIELD_LATTICE: LatticeDiffusion(
            CosineBetaSchedule(T, s=config.lattice_cosine_s, max_beta=config.lattice_max_beta),
            length_scale_A=config.lattice_length_scale_A,
            eta=config.lattice_eta,
            clip_x0=config.lattice_clip_x0,
        ),
        FIELD_COORDS: CoordDiffusion(
            ExponentialSigmaSchedule(T, sigma_min=config.coord_sigma_min, sigma_max=config.coord_sigma_max),
            n_images=config.coord_n_images,
            corrector_step_lr=config.corrector_step_lr,
            quadrature_points=config.coord_quadrature_points,
            noise_scale=config.coord_noise_scale,
            noise_scale_max_t=config.coord_noise_scale_max_t,
        ),
    }
    weights = {FIELD_LATTICE: config.lattice_loss_weight, FIELD_COORDS: config.coord_loss_weight}
    if config.mode == "denovo":
        fields[FIELD_SPECIES] = SpeciesDiffusion(
            MaskSchedule(T, kind=config.species_mask_schedule), loss_weighting=config.species_loss_weighting
        )
        weights[FIELD_SPECIES] = config.species_loss_weight
    return JointDiffusion(fields, weights, config.train_timesteps, config.atom_loss_average)
