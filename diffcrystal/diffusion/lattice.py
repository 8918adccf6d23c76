"""DDPM on the lattice matrix ``L`` (B, 3, 3), rows a, b, c in Å.

The process works on the dimensionless ``x = L / length_scale_A`` and hands the denoiser
``L_t = length_scale_A * x_t`` back in Å, so the network always sees a Cartesian cell.

- **Forward marginal** (DDPM arXiv:2006.11239 eq. 4):
  ``x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps``, ``eps ~ N(0, I)`` entrywise,
  with ``alpha_bar_t`` from :class:`~diffcrystal.diffusion.schedules.CosineBetaSchedule`.
- **Target**: ``eps`` (B, 3, 3); the denoiser predicts it as :data:`keys.EPS_LATTICE`.
- **Loss**: mean squared error over the 9 entries, one value per crystal (eq. 14, "simple").
- **Prior**: ``x_T ~ N(0, I)``, i.e. ``L_T ~ N(0, length_scale_A^2 I)``.
- **Reverse update** from t to any earlier s (strided sampling): the DDIM family
  (Song et al., arXiv:2010.02502 eq. 12) *built on the marginals of the chosen timesteps*,
  ``x0_hat = (x_t - sqrt(1 - ab_t) eps_hat) / sqrt(ab_t)``,
  ``sigma^2 = eta^2 (1 - ab_s) / (1 - ab_t) (1 - ab_t / ab_s)``,
  ``x_s = sqrt(ab_s) x0_hat + sqrt(1 - ab_s - sigma^2) eps_hat + sigma z``.
  With ``eta = 1`` (default) this is exactly the ancestral DDPM step with the posterior
  ``q(x_s | x_t, x0_hat)`` of the respaced process ``beta' = 1 - ab_t / ab_s`` (improved DDPM
  §4 "respacing"); for ``s = t - 1`` it is DDPM's Algorithm 2 with variance ``beta_tilde``.
  ``eta = 0`` is deterministic DDIM. At ``s = 0`` the step returns ``x0_hat``.

Why a length scale: lattice entries are a few Å while the prior is N(0, 1); the DiffCSP
default diffuses raw Å (``length_scale_A = 1``). A larger scale (e.g. a typical lattice
vector length) keeps ``x_0`` entries O(1), so the prior is not dominated by the data scale.

Note on ``alpha_bar_T``: with the cosine schedule ``ab_T`` is ~1e-9, so ``x0_hat`` divides
errors of ``eps_hat`` by ~5e-5 at the first reverse step; ``clip_x0`` (dimensionless, in
units of ``length_scale_A``) optionally clamps ``x0_hat`` entrywise, as DDPM does for images.
"""

from __future__ import annotations

import torch

from diffcrystal.data import keys
from diffcrystal.diffusion.base import Corruption, check_step, check_timesteps, gather
from diffcrystal.diffusion.schedules import CosineBetaSchedule

__all__ = ["LatticeDiffusion"]


class LatticeDiffusion(Corruption):
    """DDPM on the lattice (see module docstring for the maths).

    Parameters
    ----------
    schedule : the beta schedule (defines T).
    length_scale_A : Å per unit of the diffused variable; ``L = length_scale_A * x``
        (DiffCSP: 1.0, i.e. raw Å).
    eta : DDIM stochasticity of the reverse step; 1.0 = ancestral DDPM, 0.0 = deterministic.
    clip_x0 : if given, clamp ``x0_hat`` entries to ``[-clip_x0, clip_x0]`` (dimensionless)
        in the reverse step; None (default) leaves it unclamped.
    """

    field_key = keys.LATTICE
    output_key = keys.EPS_LATTICE
    per_atom = False
    has_corrector = False

    def __init__(
        self,
        schedule: CosineBetaSchedule,
        *,
        length_scale_A: float = 1.0,
        eta: float = 1.0,
        clip_x0: float | None = None,
    ):
        if not length_scale_A > 0:
            raise ValueError(f"length_scale_A must be > 0, got {length_scale_A}")
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {eta}")
        if clip_x0 is not None and not clip_x0 > 0:
            raise ValueError(f"clip_x0 must be > 0 or None, got {clip_x0}")
        self.schedule = schedule
        self.num_timesteps = schedule.num_timesteps
        self.length_scale_A = float(length_scale_A)
        self.eta = float(eta)
        self.clip_x0 = clip_x0

    def __repr__(self) -> str:
        return (
            f"LatticeDiffusion({self.schedule!r}, length_scale_A={self.length_scale_A}, "
            f"eta={self.eta}, clip_x0={self.clip_x0})"
        )

    # ------------------------------------------------------------------ forward
    def marginal_mean_std(self, lattice0: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (B, 3, 3) and std (B, 1, 1) of ``L_t | L_0`` in Å. ``t``: (B,) long in 0..T."""
        ab = gather(self.schedule.alpha_bars, t, lattice0)[:, None, None]  # (B, 1, 1)
        return ab.sqrt() * lattice0, (1 - ab).sqrt() * self.length_scale_A

    def noise(
        self, x0: torch.Tensor, t: torch.Tensor, *, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x0``: (B, 3, 3) lattice in Å; ``t``: (B,) in 1..T. Returns ``(L_t in Å, eps)``."""
        check_timesteps(t, self.num_timesteps, x0.shape[0], "lattice noise")
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)  # (B, 3, 3)
        ab = gather(self.schedule.alpha_bars, t, x0)[:, None, None]  # (B, 1, 1)
        x_t = ab.sqrt() * (x0 / self.length_scale_A) + (1 - ab).sqrt() * eps  # (B, 3, 3)
        return x_t * self.length_scale_A, eps

    def loss(self, prediction: torch.Tensor, target: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """MSE over the 9 entries: (B,)."""
        return ((prediction - target) ** 2).flatten(1).mean(dim=1)  # (B,)

    # ------------------------------------------------------------------ reverse
    def sample_prior(
        self, num_rows: int, *, generator: torch.Generator, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """``L_T ~ N(0, length_scale_A^2 I)``: (num_rows, 3, 3) in Å."""
        eps = torch.randn((num_rows, 3, 3), generator=generator, dtype=dtype, device=generator.device)
        return eps * self.length_scale_A  # (B, 3, 3)

    def reverse_step(
        self, x_t: torch.Tensor, t: int, s: int, prediction: torch.Tensor, *, generator: torch.Generator
    ) -> torch.Tensor:
        """DDIM(eta) step from t to s on the marginals of t and s. ``x_t``: (B, 3, 3) Å; returns Å."""
        check_step(t, s, self.num_timesteps, "lattice")
        ab_t = float(self.schedule.alpha_bars[t])
        ab_s = float(self.schedule.alpha_bars[s])
        x = x_t / self.length_scale_A  # (B, 3, 3)
        eps_hat = prediction  # (B, 3, 3)
        x0_hat = (x - (1 - ab_t) ** 0.5 * eps_hat) / ab_t**0.5  # (B, 3, 3)
        if self.clip_x0 is not None:
            x0_hat = x0_hat.clamp(-self.clip_x0, self.clip_x0)
            eps_hat = (x - ab_t**0.5 * x0_hat) / (1 - ab_t) ** 0.5  # (B, 3, 3)
        var = self.eta**2 * (1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s)
        x_s = ab_s**0.5 * x0_hat + max(1 - ab_s - var, 0.0) ** 0.5 * eps_hat  # (B, 3, 3)
        if var > 0:
            z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)  # (B, 3, 3)
            x_s = x_s + var**0.5 * z
        return x_s * self.length_scale_A
