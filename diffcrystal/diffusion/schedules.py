"""Noise schedules of the three corruption processes, all indexed by the discrete time t.

Every schedule is a table over ``t = 0, 1, ..., T`` (index 0 is clean data), computed once in
float64 from constructor arguments only (no globals, no randomness). Processes index the
tables with integer timesteps and cast to the dtype of the data they corrupt.

- :class:`CosineBetaSchedule` -- ``alpha_bar_t`` of the lattice DDPM (improved DDPM cosine
  schedule, Nichol & Dhariwal, arXiv:2102.09672 eq. 17).
- :class:`ExponentialSigmaSchedule` -- ``sigma_t`` of the wrapped normal on the coordinate
  torus (geometric between ``sigma_min`` and ``sigma_max``, as DiffCSP arXiv:2309.04475 §4.2).
- :class:`MaskSchedule` -- ``m_t``, the probability that a species token is masked at time t
  in the absorbing-state D3PM (Austin et al., arXiv:2107.03006 §3.1 (linear); cosine variant
  as in MaskGIT/MDLM).
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch

__all__ = ["CosineBetaSchedule", "ExponentialSigmaSchedule", "MaskSchedule", "MaskScheduleKind"]


def _check_num_timesteps(num_timesteps: int) -> int:
    if isinstance(num_timesteps, bool) or not isinstance(num_timesteps, int) or num_timesteps < 1:
        raise ValueError(f"num_timesteps must be a positive int, got {num_timesteps!r}")
    return num_timesteps


class CosineBetaSchedule:
    """Cosine variance schedule of a DDPM (arXiv:2102.09672 eq. 17).

    ``f(t) = cos^2(((t/T + s) / (1 + s)) * pi/2)``, ``alpha_bar_t = f(t) / f(0)``,
    ``beta_t = min(1 - alpha_bar_t / alpha_bar_{t-1}, max_beta)``; the stored ``alpha_bars``
    are the cumulative product of the clipped betas, so ``betas`` and ``alpha_bars`` are
    exactly consistent.

    Parameters
    ----------
    num_timesteps : T, the number of diffusion steps (DiffCSP: 1000).
    s : offset keeping beta_1 away from 0 (paper value 0.008).
    max_beta : clip of beta_t, avoiding the singularity at t = T (paper value 0.999).

    Attributes
    ----------
    betas : (T + 1,) float64; ``betas[0] = 0``.
    alpha_bars : (T + 1,) float64; ``alpha_bars[0] = 1``, decreasing to ~0 at T.
    """

    def __init__(self, num_timesteps: int, s: float = 0.008, max_beta: float = 0.999):
        self.num_timesteps = _check_num_timesteps(num_timesteps)
        if not s > 0:
            raise ValueError(f"cosine offset s must be > 0, got {s}")
        if not 0 < max_beta < 1:
            raise ValueError(f"max_beta must be in (0, 1), got {max_beta}")
        self.s = float(s)
        self.max_beta = float(max_beta)
        steps = torch.arange(num_timesteps + 1, dtype=torch.float64)  # (T+1,)
        f = torch.cos((steps / num_timesteps + s) / (1 + s) * math.pi / 2) ** 2  # (T+1,)
        alpha_bar_raw = f / f[0]  # (T+1,)
        betas = (1 - alpha_bar_raw[1:] / alpha_bar_raw[:-1]).clamp(min=0.0, max=max_beta)  # (T,)
        self.betas = torch.cat([torch.zeros(1, dtype=torch.float64), betas])  # (T+1,)
        self.alpha_bars = torch.cumprod(1 - self.betas, dim=0)  # (T+1,)

    def __repr__(self) -> str:
        return f"CosineBetaSchedule(num_timesteps={self.num_timesteps}, s={self.s}, max_beta={self.max_beta})"


class ExponentialSigmaSchedule:
    """Geometric noise levels of a variance-exploding process (DiffCSP arXiv:2309.04475 §4.2).

    ``sigma_t = sigma_min * (sigma_max / sigma_min) ** ((t - 1) / (T - 1))`` for t = 1..T
    (``sigma_max`` when T = 1) and ``sigma_0 = 0`` (clean data).

    Parameters
    ----------
    num_timesteps : T.
    sigma_min, sigma_max : noise std at t = 1 and t = T, in fractional units
        (DiffCSP: 0.005 and 0.5).

    Attributes
    ----------
    sigmas : (T + 1,) float64; ``sigmas[0] = 0``.
    """

    def __init__(self, num_timesteps: int, sigma_min: float = 0.005, sigma_max: float = 0.5):
        self.num_timesteps = _check_num_timesteps(num_timesteps)
        if not 0 < sigma_min <= sigma_max:
            raise ValueError(f"need 0 < sigma_min <= sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        if num_timesteps == 1:
            levels = torch.tensor([sigma_max], dtype=torch.float64)  # (1,)
        else:
            frac = torch.arange(num_timesteps, dtype=torch.float64) / (num_timesteps - 1)  # (T,)
            levels = sigma_min * (sigma_max / sigma_min) ** frac  # (T,)
        self.sigmas = torch.cat([torch.zeros(1, dtype=torch.float64), levels])  # (T+1,)

    def __repr__(self) -> str:
        return (
            f"ExponentialSigmaSchedule(num_timesteps={self.num_timesteps}, "
            f"sigma_min={self.sigma_min}, sigma_max={self.sigma_max})"
        )


MaskScheduleKind = Literal["linear", "cosine"]


class MaskSchedule:
    """Probability ``m_t`` that a token is in the absorbing (mask) state at time t.

    - ``'linear'``: ``m_t = t / T`` -- the absorbing D3PM of arXiv:2107.03006 §3.1, whose
      per-step rate is ``beta_t = 1 / (T - t + 1)``.
    - ``'cosine'``: ``m_t = 1 - cos(pi/2 * t / T)`` -- unmasks more slowly near the data.

    Both have ``m_0 = 0`` and ``m_T = 1`` (every token masked at T).

    Attributes
    ----------
    mask_probs : (T + 1,) float64, non-decreasing from 0 to 1.
    """

    def __init__(self, num_timesteps: int, kind: MaskScheduleKind = "linear"):
        self.num_timesteps = _check_num_timesteps(num_timesteps)
        if kind not in get_args(MaskScheduleKind):
            raise ValueError(f"unknown mask schedule {kind!r}; valid: {list(get_args(MaskScheduleKind))}")
        self.kind = kind
        u = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps  # (T+1,)
        if kind == "linear":
            probs = u
        else:
            probs = 1 - torch.cos(u * math.pi / 2)
        probs[0], probs[-1] = 0.0, 1.0  # exact end points
        self.mask_probs = probs  # (T+1,)

    def __repr__(self) -> str:
        return f"MaskSchedule(num_timesteps={self.num_timesteps}, kind={self.kind!r})"
