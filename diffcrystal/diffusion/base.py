"""The interface every corruption process implements, and the helpers they share.

A corruption process diffuses one variable of a crystal batch (one batch key) over the
discrete times ``t = 0 (data), 1, ..., T``. It knows its schedule; the denoiser does not.
Each process declares:

- ``field_key``: the batch key it corrupts (e.g. :data:`keys.LATTICE`);
- ``output_key``: the denoiser output it reads (e.g. :data:`keys.EPS_LATTICE`);
- ``per_atom``: True when the variable has one row per atom (N rows), False for one row per
  crystal (B rows). Per-atom losses are averaged within each crystal by the joint process;
- ``has_corrector``: whether :meth:`Corruption.corrector_step` is implemented.

Times ``t`` given to :meth:`~Corruption.noise` and :meth:`~Corruption.loss` are long tensors
with one entry per row of the variable, in 1..T. The reverse step takes plain ints
``t > s >= 0`` (the sampler moves the whole batch together and may skip timesteps).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

__all__ = ["Corruption", "NonFiniteLossError", "IncompatibleSamplerError", "check_timesteps", "gather"]


class NonFiniteLossError(FloatingPointError):
    """A training loss came out NaN or infinite; the message names the field(s) and times."""


class IncompatibleSamplerError(ValueError):
    """A predictor/corrector was asked of a process that does not provide it."""


def gather(table: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``table[t]`` on ``t``'s device, cast to ``like``'s dtype. ``table``: (T+1,); ``t``: any shape."""
    return table.to(t.device)[t].to(like.dtype)


def check_timesteps(t: torch.Tensor, num_timesteps: int, rows: int, what: str) -> None:
    """Raise ``ValueError`` unless ``t`` is a (rows,) integer tensor with values in 1..T."""
    if t.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"{what}: timesteps must be an integer tensor, got dtype {t.dtype}")
    if t.shape != (rows,):
        raise ValueError(f"{what}: timesteps must have shape ({rows},), got {tuple(t.shape)}")
    if rows and (int(t.min()) < 1 or int(t.max()) > num_timesteps):
        raise ValueError(
            f"{what}: timesteps must lie in 1..{num_timesteps}, got [{int(t.min())}, {int(t.max())}]"
        )


def check_step(t: int, s: int, num_timesteps: int, what: str) -> None:
    """Raise ``ValueError`` unless ``T >= t > s >= 0``."""
    if not (0 <= s < t <= num_timesteps):
        raise ValueError(f"{what}: reverse step needs {num_timesteps} >= t > s >= 0, got t={t}, s={s}")


class Corruption(ABC):
    """One corrupted variable: forward marginal, training target and loss, prior, reverse step.

    Subclasses set the class attributes ``field_key``, ``output_key``, ``per_atom`` and
    ``has_corrector`` and the instance attribute ``num_timesteps`` (T).
    """

    field_key: str
    output_key: str
    per_atom: bool
    has_corrector: bool = False
    num_timesteps: int

    @abstractmethod
    def sample_prior(
        self, num_rows: int, *, generator: torch.Generator, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """Draw ``x_T`` for ``num_rows`` rows (crystals or atoms) on ``generator.device``."""

    @abstractmethod
    def noise(
        self, x0: torch.Tensor, t: torch.Tensor, *, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample ``x_t ~ q(x_t | x_0)`` and return ``(x_t, target)`` for the denoiser output."""

    @abstractmethod
    def loss(self, prediction: torch.Tensor, target: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Per-row loss (rows,) of the raw denoiser ``prediction`` against ``target``."""

    @abstractmethod
    def reverse_step(
        self, x_t: torch.Tensor, t: int, s: int, prediction: torch.Tensor, *, generator: torch.Generator
    ) -> torch.Tensor:
        """One predictor step from time ``t`` to an earlier time ``s`` (``T >= t > s >= 0``)."""

    def corrector_step(
        self, x_t: torch.Tensor, t: int, prediction: torch.Tensor, *, generator: torch.Generator
    ) -> torch.Tensor:
        """One corrector step at fixed time ``t``; only where ``has_corrector`` is True."""
        raise IncompatibleSamplerError(f"{type(self).__name__} has no corrector")
