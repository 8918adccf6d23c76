"""Experiment configuration: plain dataclasses whose fields are constructor arguments.

A YAML file in ``configs/`` has five sections, ``data``, ``model`` (fields of
:class:`~diffcrystal.models.DenoiserConfig`), ``diffusion`` (fields of
:class:`~diffcrystal.diffusion.DiffusionConfig`), ``sampling`` (the sampler's defaults,
saved with the checkpoint) and ``train``, plus a ``name``. Unknown
keys are an error naming the valid ones. Relative data paths are read from the current
working directory (run from the repository root). The resolved config is saved beside
every checkpoint.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from diffcrystal.diffusion import DiffusionConfig
from diffcrystal.errors import InputError
from diffcrystal.models import DenoiserConfig


def _from_mapping(cls, values: dict[str, Any] | None, section: str):
    values = dict(values or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise InputError(
            f"unknown key(s) {unknown} in config section '{section}'; valid: {sorted(names)}"
        )
    return cls(**values)


@dataclass
class DataConfig:
    """Where the structures come from and how they are batched."""

    train: str | list[str] = ""
    """Training data: CDVAE-style CSV, folder of CIFs, extxyz or ASE db; a list of them is
    read as one dataset."""
    val: str | None = None
    """Validation data; when empty, ``val_fraction`` of ``train`` is held out."""
    val_fraction: float = 0.05
    """Fraction of ``train`` held out for validation when ``val`` is not given."""
    canonical: bool = True
    """Reduce every structure to its primitive, Niggli-reduced cell."""
    batch_size: int = 128
    """Crystals per batch (per device)."""
    num_workers: int = 0
    """DataLoader worker processes (0: load in the main process)."""


@dataclass
class TrainConfig:
    """Optimisation and run-control settings (Lightning Trainer arguments where named so)."""

    max_epochs: int = 100
    max_steps: int = -1
    """Stop after this many optimiser steps (-1: no step limit)."""
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    lr_warmup_steps: int = 100
    gradient_clip_val: float = 1.0
    ema_decay: float = 0.999
    """Decay of the exponential moving average of the weights used for sampling."""
    checkpoint_every_n_steps: int = 500
    seed: int = 0
    accelerator: str = "auto"
    devices: str | int = "auto"
    strategy: str = "auto"
    """'auto', 'ddp', ... (Lightning); many GPUs work unchanged with 'ddp'."""
    precision: Literal["32-true", "bf16-mixed", "16-mixed", "64-true"] = "32-true"
    matmul_precision: Literal["highest", "high", "medium"] = "highest"
    """torch.set_float32_matmul_precision; 'high' enables TF32 on Ampere+ GPUs."""
    log_every_n_steps: int = 20
    num_threads: int | None = None
    """CPU threads for torch (None: torch's default)."""


@dataclass
class SamplingConfig:
    """Sampler defaults stored with the checkpoint (``diffcrystal sample`` may override)."""

    num_steps: int = 100
    """Predictor steps, evenly spaced over the T training steps (measured trade-off in
    docs/benchmarks.md)."""
    corrector_steps: int = 1
    """Langevin corrector steps on the coordinates per predictor step (each costs one
    denoiser call)."""


@dataclass
class ExperimentConfig:
    """One training experiment: everything needed to rebuild the model and its diffusion."""

    name: str = "experiment"
    data: DataConfig = field(default_factory=DataConfig)
    model: DenoiserConfig = field(default_factory=DenoiserConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ExperimentConfig":
        sections = {"name", "data", "model", "diffusion", "sampling", "train"}
        unknown = sorted(set(values) - sections)
        if unknown:
            raise InputError(f"unknown config section(s) {unknown}; valid: {sorted(sections)}")
        try:
            model = DenoiserConfig.from_dict(values.get("model") or {})
            diffusion = DiffusionConfig.from_dict(values.get("diffusion") or {})
        except ValueError as error:
            raise InputError(f"invalid config: {error}") from None
        return cls(
            name=str(values.get("name", "experiment")),
            data=_from_mapping(DataConfig, values.get("data"), "data"),
            model=model,
            diffusion=diffusion,
            sampling=_from_mapping(SamplingConfig, values.get("sampling"), "sampling"),
            train=_from_mapping(TrainConfig, values.get("train"), "train"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "data": dataclasses.asdict(self.data),
            "model": self.model.to_dict(),
            "diffusion": self.diffusion.to_dict(),
            "sampling": dataclasses.asdict(self.sampling),
            "train": dataclasses.asdict(self.train),
        }


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate a YAML experiment config."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"config file not found: {path}")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise InputError(f"config {path} is not valid YAML: {error}") from None
    if not isinstance(values, dict):
        raise InputError(f"config {path} must be a mapping of sections")
    return ExperimentConfig.from_dict(values)
