"""Absorbing-state (mask) discrete diffusion of the species, D3PM arXiv:2107.03006.

Tokens are atomic numbers 1..100 (:data:`~diffcrystal.MAX_ATOMIC_NUMBER`) plus the absorbing
state :data:`~diffcrystal.MASK_SPECIES` = 0. Each atom is corrupted independently.

- **Forward marginal**: ``q(x_t | x_0) = (1 - m_t) delta(x_0) + m_t delta(MASK)`` with ``m_t``
  from :class:`~diffcrystal.diffusion.schedules.MaskSchedule` (``m_0 = 0``, ``m_T = 1``).
- **Target**: ``x_0`` where the token is masked, :data:`MASK_SPECIES` where it is not (no
  loss there). The denoiser predicts logits of ``x_0`` (:data:`keys.SPECIES_LOGITS`, column
  ``k`` is atomic number ``k + 1``).
- **Loss** per atom: cross entropy ``-log p_hat(x_0)`` on masked atoms times a weight:
  ``'elbo'`` (default) ``w_t = T (m_t - m_{t-1}) / m_t``. For the absorbing process the KL term
  of step t for a masked token is ``(m_t - m_{t-1}) / m_t * CE`` (the posterior unmasks with
  that probability, see below; the t = 1 term is the reconstruction term), so with t uniform
  on 1..T, ``E_t[sum_atoms w_t CE]`` is exactly the negative ELBO (the prior term vanishes
  since ``m_T = 1``). For the linear schedule ``w_t = T / t = 1 / m_t``, the continuous-time
  MDLM weight (arXiv:2406.07524 eq. 10). ``'uniform'``: ``w_t = 1`` (plain masked-token CE).
- **Prior**: every atom masked.
- **Reverse update** t -> s < t, exact posterior of the absorbing process with ``x_0`` drawn
  from the prediction: an unmasked token stays; a masked token is unmasked with probability
  ``(m_t - m_s) / m_t`` to ``x_0 ~ softmax(logits)`` (restricted to the allowed elements),
  otherwise stays masked. At ``s = 0`` every token is unmasked.
"""

from __future__ import annotations

from typing import Iterable, Literal, get_args

import torch
import torch.nn.functional as F

from diffcrystal import MASK_SPECIES, MAX_ATOMIC_NUMBER
from diffcrystal.data import keys
from diffcrystal.diffusion.base import Corruption, check_step, check_timesteps, gather
from diffcrystal.diffusion.schedules import MaskSchedule

__all__ = ["SpeciesDiffusion", "SpeciesLossWeighting"]

SpeciesLossWeighting = Literal["elbo", "uniform"]


class SpeciesDiffusion(Corruption):
    """Absorbing-state D3PM over atomic numbers (see module docstring).

    Parameters
    ----------
    schedule : mask probabilities ``m_t`` (defines T).
    loss_weighting : ``'elbo'`` (exact discrete-time NELBO weight) or ``'uniform'``.
    allowed_species : atomic numbers the sampler may produce (logits of all others are set to
        -inf in :meth:`reverse_step`); None allows 1..100. Training is not affected.
    """

    field_key = keys.ATOMIC_NUMBERS
    output_key = keys.SPECIES_LOGITS
    per_atom = True
    has_corrector = False

    def __init__(
        self,
        schedule: MaskSchedule,
        *,
        loss_weighting: SpeciesLossWeighting = "elbo",
        allowed_species: Iterable[int] | None = None,
    ):
        if loss_weighting not in get_args(SpeciesLossWeighting):
            raise ValueError(
                f"unknown species loss weighting {loss_weighting!r}; valid: {list(get_args(SpeciesLossWeighting))}"
            )
        self.schedule = schedule
        self.num_timesteps = schedule.num_timesteps
        self.loss_weighting = loss_weighting
        if allowed_species is None:
            self.allowed_species = None
        else:
            allowed = sorted({int(z) for z in allowed_species})
            bad = [z for z in allowed if not 1 <= z <= MAX_ATOMIC_NUMBER]
            if not allowed or bad:
                raise ValueError(
                    f"allowed_species must be a non-empty set of atomic numbers in 1..{MAX_ATOMIC_NUMBER}"
                    + (f"; got {bad}" if bad else "")
                )
            self.allowed_species = tuple(allowed)
        m = schedule.mask_probs  # (T+1,)
        weights = torch.ones_like(m)  # (T+1,)
        if loss_weighting == "elbo":
            weights[1:] = self.num_timesteps * (m[1:] - m[:-1]) / m[1:]
        self.loss_weights = weights
        """(T + 1,) float64 weight ``w_t`` of the masked-token cross entropy (index 0 unused)."""

    def restrict(self, allowed_species: Iterable[int] | None) -> "SpeciesDiffusion":
        """A copy whose sampler only produces ``allowed_species`` (atomic numbers)."""
        return SpeciesDiffusion(self.schedule, loss_weighting=self.loss_weighting, allowed_species=allowed_species)

    def __repr__(self) -> str:
        return (
            f"SpeciesDiffusion({self.schedule!r}, loss_weighting={self.loss_weighting!r}, "
            f"allowed_species={self.allowed_species})"
        )

    # ------------------------------------------------------------------ forward
    def noise(
        self, x0: torch.Tensor, t: torch.Tensor, *, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x0``: (N,) long in 1..100; ``t``: (N,) in 1..T. Returns ``(x_t, target)``, both (N,) long."""
        check_timesteps(t, self.num_timesteps, x0.shape[0], "species noise")
        if x0.numel() and (int(x0.min()) < 1 or int(x0.max()) > MAX_ATOMIC_NUMBER):
            raise ValueError(f"species noise: atomic numbers must lie in 1..{MAX_ATOMIC_NUMBER}")
        u = torch.rand(x0.shape, generator=generator, dtype=torch.float64, device=x0.device)  # (N,)
        masked = u < self.schedule.mask_probs.to(x0.device)[t]  # (N,)
        mask = torch.full_like(x0, MASK_SPECIES)  # (N,)
        return torch.where(masked, mask, x0), torch.where(masked, x0, mask)

    def loss(self, prediction: torch.Tensor, target: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Weighted cross entropy on masked atoms (0 elsewhere): (N,). ``prediction``: (N, 100) logits."""
        is_masked = target != MASK_SPECIES  # (N,)
        ce = F.cross_entropy(prediction, (target - 1).clamp(min=0), reduction="none")  # (N,)
        weight = gather(self.loss_weights, t, ce)  # (N,)
        return torch.where(is_masked, weight * ce, torch.zeros_like(ce))

    # ------------------------------------------------------------------ reverse
    def sample_prior(
        self, num_rows: int, *, generator: torch.Generator, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """All masked: (num_rows,) long (``dtype`` is ignored; species are integers)."""
        return torch.full((num_rows,), MASK_SPECIES, dtype=torch.long, device=generator.device)

    def x0_probabilities(self, prediction: torch.Tensor) -> torch.Tensor:
        """``p_hat(x_0)`` (N, 100) from logits, zero outside ``allowed_species``."""
        logits = prediction
        if self.allowed_species is not None:
            allowed = torch.zeros(MAX_ATOMIC_NUMBER, dtype=torch.bool, device=logits.device)  # (100,)
            allowed[torch.tensor(self.allowed_species, device=logits.device) - 1] = True
            logits = logits.masked_fill(~allowed, float("-inf"))  # (N, 100)
        return torch.softmax(logits.double(), dim=-1)  # (N, 100)

    def reverse_step(
        self, x_t: torch.Tensor, t: int, s: int, prediction: torch.Tensor, *, generator: torch.Generator
    ) -> torch.Tensor:
        """Posterior step t -> s; ``x_t``: (N,) long; ``prediction``: (N, 100) logits."""
        check_step(t, s, self.num_timesteps, "species")
        m_t = float(self.schedule.mask_probs[t])
        m_s = float(self.schedule.mask_probs[s])
        is_masked = x_t == MASK_SPECIES  # (N,)
        if not bool(is_masked.any()):
            return x_t
        unmask_prob = (m_t - m_s) / m_t
        u = torch.rand(x_t.shape, generator=generator, dtype=torch.float64, device=x_t.device)  # (N,)
        unmask = is_masked & (u < unmask_prob)  # (N,)
        probs = self.x0_probabilities(prediction[unmask])  # (n_unmask, 100)
        drawn = torch.multinomial(probs, 1, generator=generator).squeeze(1) + 1 if probs.shape[0] else None
        x_s = x_t.clone()  # (N,)
        if drawn is not None:
            x_s[unmask] = drawn
        return x_s
