"""Experiment configuration: plain dataclasses whose fields are constructor arguments.

A YAML file in ``configs/`` has five sections, ``data``, ``model`` (fields of
:class:`~diffcrystal.models.DenoiserConfig`), ``diffusion`` (fields of
:class:`~diffcrystal.diffusion.DiffusionConfig`), ``sampling`` (the sampler's defaults,
saved with the checkpoint) and ``train``, plus a ``name``. Unknown
keys are an error naming the valid ones. Every value is checked against its field's
annotation (int, float, bool, str, optional, list, Literal choices) before anything is built,
and a mismatch is one :class:`~diffcrystal.errors.InputError` naming the key, the value and
the expected type. One conversion is deliberate: PyYAML reads YAML 1.1, where ``1e-3`` and
``1e4`` (no decimal point) are *strings*, so a string that is a plain decimal or scientific
number (:data:`NUMBER`) is converted for a float field; an int field takes such a string, or
a float, only when its value is whole (``1e4``, ``2.0``). Nothing else is converted
(``'lots'``, ``'nan'``, ``2.5`` for an int, ``true`` for a number are errors). Ranges
(``batch_size >= 1``, ``0 <= ema_decay < 1``, ...) are checked by each dataclass.
Relative data paths are read from the current working directory (run from the repository
root). The resolved config is saved beside every checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from diffcrystal.diffusion import DiffusionConfig
from diffcrystal.errors import InputError
from diffcrystal.models import DenoiserConfig

NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
"""A number written in decimal or scientific notation: the only strings a numeric field
converts (YAML 1.1 reads ``1e-3`` as a string)."""


class _Mismatch(Exception):
    """A value that does not fit a type annotation (turned into an InputError by the caller)."""


def _type_name(hint) -> str:
    """``hint`` in words for error messages: ``'float or null'``, ``'list of str'``."""
    origin = typing.get_origin(hint)
    if hint is type(None):
        return "null"
    if origin is Literal:
        return "one of " + ", ".join(repr(choice) for choice in typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in typing.get_args(hint))
    if origin is list:
        return f"list of {_type_name(typing.get_args(hint)[0])}"
    if hint is bool:
        return "bool (true/false)"
    return getattr(hint, "__name__", str(hint))


def _number(value: Any) -> float:
    """``value`` as a float if it is an int/float (not a bool) or a :data:`NUMBER` string."""
    if isinstance(value, bool):
        raise _Mismatch
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and NUMBER.fullmatch(value.strip()):
        return float(value)
    raise _Mismatch


def _coerce(value: Any, hint) -> Any:
    """``value`` checked against the annotation ``hint`` (numeric strings converted as the
    module docstring says); raises :class:`_Mismatch` when it does not fit."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if hint is type(None):
        if value is None:
            return None
        raise _Mismatch
    if origin is Literal:
        if isinstance(value, str) and value in typing.get_args(hint):
            return value
        raise _Mismatch
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            try:
                return _coerce(value, arg)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin is list:
        if not isinstance(value, list):
            raise _Mismatch
        (item,) = typing.get_args(hint)
        return [_coerce(v, item) for v in value]
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        number = _number(value)
        if not number.is_integer():
            raise _Mismatch
        return int(number)
    if hint is float:
        return _number(value)
    if isinstance(hint, type) and isinstance(value, hint):
        return value
    raise _Mismatch


def typed_fields(cls, values: Any, section: str) -> dict[str, Any]:
    """The ``values`` of config ``section`` checked against the fields of dataclass ``cls``.

    Unknown keys, a section that is not a mapping, and a value that does not fit its field's
    annotation raise :class:`InputError` naming the key, the value and the expected type.
    """
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise InputError(f"config section '{section}' must be a mapping of keys, got {values!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names, key=str)
    if unknown:
        raise InputError(
            f"unknown key(s) {unknown} in config section '{section}'; valid: {sorted(names)}"
        )
    hints = typing.get_type_hints(cls)
    checked = {}
    for name, value in values.items():
        try:
            checked[name] = _coerce(value, hints[name])
        except _Mismatch:
            raise InputError(
                f"invalid config value {section}.{name}: {value!r} ({type(value).__name__}); "
                f"expected {_type_name(hints[name])}"
            ) from None
    return checked


def _require(condition: bool, key: str, value: Any, expected: str) -> None:
    if not condition:
        raise InputError(f"invalid config value {key}: {value!r}; expected {expected}")


def _from_mapping(cls, values: dict[str, Any] | None, section: str):
    return cls(**typed_fields(cls, values, section))


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
    max_e_above_hull: float | None = None
    """Keep only structures whose ``e_above_hull`` property (eV/atom, a column of the data)
    is at most this; the others are listed in the run's skipped.csv (null: keep all)."""

    def __post_init__(self) -> None:
        if self.max_e_above_hull is not None:
            _require(self.max_e_above_hull >= 0, "data.max_e_above_hull", self.max_e_above_hull,
                     ">= 0 or null")
        _require(self.batch_size >= 1, "data.batch_size", self.batch_size, ">= 1")
        _require(self.num_workers >= 0, "data.num_workers", self.num_workers, ">= 0")
        _require(0 <= self.val_fraction < 1, "data.val_fraction", self.val_fraction, "in [0, 1)")


@dataclass
class TrainConfig:
    """Optimisation and run-control settings (Lightning Trainer arguments where named so)."""

    max_epochs: int = 100
    max_steps: int = -1
    """Stop after this many optimiser steps (-1: no step limit)."""
    max_hours: float | None = None
    """Wall-clock budget in hours: training stops cleanly at the first optimiser step where
    the time spent, earlier ``--resume`` sessions included, reaches it (null: no budget)."""
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
    num_nodes: int = 1
    """Machines of a multi-node run (each with ``devices`` devices; Lightning reads the ranks
    from SLURM or torchrun's environment)."""
    strategy: str = "auto"
    """'auto', 'ddp', ... (Lightning); many GPUs work unchanged with 'ddp'."""
    precision: Literal["32-true", "bf16-mixed", "16-mixed", "64-true"] = "32-true"
    matmul_precision: Literal["highest", "high", "medium"] = "highest"
    """torch.set_float32_matmul_precision; 'high' enables TF32 on Ampere+ GPUs."""
    log_every_n_steps: int = 20
    num_threads: int | None = None
    """CPU threads for torch (None: torch's default)."""
    init_from: str | None = None
    """Generator checkpoint (file or bundled name) whose shared denoiser tensors start a new
    run: fine-tuning, or a de novo model warm-started from a CSP one. Ignored on --resume."""

    def __post_init__(self) -> None:
        for name in ("max_epochs", "max_steps"):
            value = getattr(self, name)
            _require(value == -1 or value >= 1, f"train.{name}", value, ">= 1 or -1 (no limit)")
        if self.max_hours is not None:
            _require(math.isfinite(self.max_hours) and self.max_hours > 0, "train.max_hours",
                     self.max_hours, "a finite number > 0, or null")
        _require(self.learning_rate > 0, "train.learning_rate", self.learning_rate, "> 0")
        for name in ("weight_decay", "lr_warmup_steps", "gradient_clip_val"):
            _require(getattr(self, name) >= 0, f"train.{name}", getattr(self, name), ">= 0")
        _require(0 <= self.ema_decay < 1, "train.ema_decay", self.ema_decay, "in [0, 1)")
        for name in ("checkpoint_every_n_steps", "log_every_n_steps"):
            _require(getattr(self, name) >= 1, f"train.{name}", getattr(self, name), ">= 1")
        _require(self.num_nodes >= 1, "train.num_nodes", self.num_nodes, ">= 1")
        if self.num_threads is not None:
            _require(self.num_threads >= 1, "train.num_threads", self.num_threads, ">= 1 or null")


@dataclass
class SamplingConfig:
    """Sampler defaults stored with the checkpoint (``diffcrystal sample`` may override)."""

    num_steps: int = 100
    """Predictor steps, evenly spaced over the T training steps (measured trade-off in
    docs/benchmarks.md)."""
    corrector_steps: int = 1
    """Langevin corrector steps on the coordinates per predictor step (each costs one
    denoiser call)."""
    corrector_min_t: int = 0
    """The corrector runs only at steps from a timestep t > this; the steps at and below it are
    the predictor's alone (0: the corrector runs at every step)."""
    corrector_max_t: int | None = None
    """... and at t <= this; the steps above it are the predictor's alone (None: up to T)."""
    step_spacing: float = 1.0
    """ρ > 0 of the timestep grid ``t_k = T (1 - k/K)^ρ``: 1 spaces the steps evenly, larger
    values put more of them at low noise, smaller at high noise
    (:func:`~diffcrystal.diffusion.sampler.timestep_grid`)."""

    def __post_init__(self) -> None:
        _require(self.num_steps >= 1, "sampling.num_steps", self.num_steps, ">= 1")
        _require(self.corrector_steps >= 0, "sampling.corrector_steps", self.corrector_steps, ">= 0")
        _require(self.corrector_min_t >= 0, "sampling.corrector_min_t", self.corrector_min_t, ">= 0")
        if self.corrector_max_t is not None:
            _require(self.corrector_max_t > self.corrector_min_t, "sampling.corrector_max_t", self.corrector_max_t,
                     f"null or > sampling.corrector_min_t ({self.corrector_min_t})")
        _require(math.isfinite(self.step_spacing) and self.step_spacing > 0, "sampling.step_spacing",
                 self.step_spacing, "a finite number > 0")


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
        unknown = sorted(set(values) - sections, key=str)
        if unknown:
            raise InputError(f"unknown config section(s) {unknown}; valid: {sorted(sections)}")
        name = values.get("name", "experiment")
        if not isinstance(name, str) or not name:
            raise InputError(f"invalid config value name: {name!r}; expected a non-empty string")
        model = typed_fields(DenoiserConfig, values.get("model"), "model")
        diffusion = typed_fields(DiffusionConfig, values.get("diffusion"), "diffusion")
        try:
            model = DenoiserConfig.from_dict(model)
            diffusion = DiffusionConfig.from_dict(diffusion)
        except ValueError as error:
            raise InputError(f"invalid config: {error}") from None
        return cls(
            name=name,
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
