"""Score-based diffusion of fractional coordinates with a wrapped normal on the 3-torus.

Fractional coordinates ``F`` (N, 3) live on ``[0, 1)^3``; each of the 3N numbers is
corrupted independently (DiffCSP arXiv:2309.04475 §4.2, eq. 6-7).

- **Forward marginal**: ``F_t = (F_0 + sigma_t eps) mod 1``, ``eps ~ N(0, I)``, i.e. a
  wrapped normal ``WN(F_0, sigma_t^2)`` with ``sigma_t`` from
  :class:`~diffcrystal.diffusion.schedules.ExponentialSigmaSchedule`.
- **Score**: for the wrapped difference ``d = w(F_t - F_0)`` in [-0.5, 0.5),
  ``grad_{F_t} log p(F_t | F_0) = -sum_k (d + k) / sigma^2 * exp(-(d + k)^2 / 2 sigma^2)
  / sum_k exp(-(d + k)^2 / 2 sigma^2)``, sums over the periodic images
  ``k = -n_images..n_images`` (:func:`wrapped_normal_score`).
- **Normalisation** (applied and undone in this class only): with
  ``lambda(sigma) = E_{d ~ WN(0, sigma^2)}[score(d)^2]`` (one dimension), the training target
  is ``score / sqrt(lambda(sigma_t))``, so every noise level has unit target variance and
  weighs equally in the loss. The network predicts this *normalised* score
  (:data:`keys.COORD_SCORE`); :meth:`CoordDiffusion.score` multiplies back by
  ``sqrt(lambda)`` before any update. ``lambda`` is computed once, deterministically, by the
  periodic trapezoidal rule on [-0.5, 0.5) (spectrally accurate for smooth periodic
  integrands) in float64 -- not by Monte Carlo.
- **Loss**: mean over the 3 dimensions of the squared error of the normalised score (per atom).
- **Prior**: uniform on [0, 1)^3 (DiffCSP; ``WN(., 0.5^2)`` differs from uniform by a density
  ripple of relative amplitude ``2 exp(-2 pi^2 sigma_max^2)`` ~ 1.4 %).
- **Predictor** (reverse-diffusion / ancestral step for a variance-exploding process, Song et
  al. arXiv:2011.13456 eq. 47, DiffCSP Algorithm 2), from ``sigma_t`` to ``sigma_s``:
  ``F_s = F_t + (sigma_t^2 - sigma_s^2) score + sqrt(sigma_s^2 (sigma_t^2 - sigma_s^2) / sigma_t^2) z``,
  wrapped to [0, 1); ``sigma_0 = 0`` makes the last step a deterministic denoising step.
- **Corrector** (annealed Langevin, Song & Ermon arXiv:1907.05600 Algorithm 1, as DiffCSP):
  step ``delta = step_lr * (sigma_t / sigma_min)^2``,
  ``F <- F + delta * score + sqrt(2 delta) z``, wrapped. ``step_lr`` was tuned per dataset by
  DiffCSP (see :data:`CORRECTOR_STEP_LR_BY_DATASET`).
"""

from __future__ import annotations

import math

import torch

from diffcrystal.data import keys
from diffcrystal.diffusion.base import Corruption, check_step, check_timesteps, gather
from diffcrystal.diffusion.schedules import ExponentialSigmaSchedule

__all__ = [
    "CORRECTOR_STEP_LR_BY_DATASET",
    "CoordDiffusion",
    "wrap_unit",
    "wrap_difference",
    "wrapped_normal_score",
    "wrapped_normal_fisher",
]

CORRECTOR_STEP_LR_BY_DATASET: dict[str, float] = {
    "perov_5": 5e-7,
    "carbon_24": 5e-6,
    "mp_20": 1e-5,
}
"""Langevin corrector ``step_lr`` tuned per benchmark by DiffCSP (arXiv:2309.04475, released
evaluation settings); the corrector step is ``step_lr * (sigma_t / sigma_min)^2``, so these
values assume ``sigma_min = 0.005``."""

DEFAULT_N_IMAGES = 10
"""Periodic images on each side in the wrapped-normal sums (DiffCSP uses 10); at
``sigma = 0.5`` the first omitted term is ``exp(-10.5^2 / 0.5) ~ 1e-96`` relative."""

DEFAULT_QUADRATURE_POINTS = 193
"""Nodes of the trapezoidal rule for ``lambda(sigma)`` over ``u = x / sigma`` in
[-12, 12] (spacing 0.125). The integrand is a Gaussian times a smooth function whose
variation in ``u`` has period ``1 / sigma >= 2``, so the rule is spectrally accurate; the test
suite checks it against a 4096-point periodic quadrature and against Monte Carlo."""

QUADRATURE_HALF_WIDTH = 12.0
"""Half-width, in standard deviations, of the quadrature interval; the Gaussian mass
outside it is ~4e-33."""

_MIN_QUADRATURE_POINTS = 97
"""Coarsest accepted rule (spacing 0.25 standard deviations)."""


def wrap_unit(x: torch.Tensor) -> torch.Tensor:
    """Wrap into [0, 1). ``remainder`` can round tiny negatives to exactly 1.0; those map to 0."""
    y = torch.remainder(x, 1.0)
    return torch.where(y >= 1.0, torch.zeros_like(y), y)


def wrap_difference(d: torch.Tensor) -> torch.Tensor:
    """Wrap a fractional difference into [-0.5, 0.5)."""
    return wrap_unit(d + 0.5) - 0.5


def _image_offsets(n_images: int, like: torch.Tensor) -> torch.Tensor:
    return torch.arange(-n_images, n_images + 1, dtype=like.dtype, device=like.device)  # (K,)


def wrapped_normal_score(d: torch.Tensor, sigma: torch.Tensor, n_images: int = DEFAULT_N_IMAGES) -> torch.Tensor:
    """Score ``d/dx log WN(x; 0, sigma^2)`` at ``x = d`` (any real ``d``; exact for ``d`` in
    [-0.5, 0.5), which callers should pass), by a softmax-weighted image sum.

    ``d``: any shape, fractional; ``sigma``: broadcastable to ``d``, > 0. Returns ``d``'s shape.
    """
    sigma = torch.as_tensor(sigma, dtype=d.dtype, device=d.device)
    z = d.unsqueeze(-1) + _image_offsets(n_images, d)  # (..., K)
    s2 = (sigma**2).unsqueeze(-1)  # (..., 1)
    weights = torch.softmax(-(z**2) / (2 * s2), dim=-1)  # (..., K)
    return -(weights * z).sum(dim=-1) / s2.squeeze(-1)  # (...)


def wrapped_normal_fisher(
    sigmas: torch.Tensor, n_images: int = DEFAULT_N_IMAGES, quadrature_points: int = DEFAULT_QUADRATURE_POINTS
) -> torch.Tensor:
    """``lambda(sigma) = E_{d ~ WN(0, sigma^2)}[score(d)^2]`` (one dimension), float64.

    Written over the unwrapped variable ``x = sigma u ~ N(0, sigma^2)`` (``w(x)`` has the
    wrapped-normal law): ``lambda = int phi(u) score(w(sigma u))^2 du``, computed by the
    trapezoidal rule on ``quadrature_points`` nodes in
    ``[-QUADRATURE_HALF_WIDTH, QUADRATURE_HALF_WIDTH]``. Deterministic; tends to
    ``1 / sigma^2`` (the Gaussian Fisher information) as ``sigma -> 0``. ``sigmas``: (S,) > 0.
    """
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64).flatten()  # (S,)
    u = torch.linspace(-QUADRATURE_HALF_WIDTH, QUADRATURE_HALF_WIDTH, quadrature_points, dtype=torch.float64)  # (M,)
    step = float(u[1] - u[0])
    weights = torch.exp(-0.5 * u**2) * step / math.sqrt(2 * math.pi)  # (M,)
    d = wrap_difference(sigmas[:, None] * u)  # (S, M)
    score = wrapped_normal_score(d, sigmas[:, None], n_images)  # (S, M)
    return (score**2 * weights).sum(dim=-1)  # (S,)


class CoordDiffusion(Corruption):
    """Wrapped-normal score diffusion of fractional coordinates (see module docstring).

    Parameters
    ----------
    schedule : noise levels ``sigma_t`` (defines T).
    n_images : periodic images on each side in the score and density sums (DiffCSP: 10).
    corrector_step_lr : Langevin ``step_lr``; DiffCSP's tuned values are in
        :data:`CORRECTOR_STEP_LR_BY_DATASET` (mp_20: 1e-5, the default).
    quadrature_points : grid size of the quadrature for the normalisation ``lambda(sigma)``.
    noise_scale : factor λ >= 0 on the noise of every reverse and corrector step (a sampling
        temperature; 1: the diffusion's own). The Langevin corrector with noise ``λ sqrt(2 γ)``
        samples ``p_t^(1/λ²)``, sharper around its modes for λ < 1; λ = 0 leaves the drift alone.
    noise_scale_max_t : λ applies only to steps from a timestep t <= this (None: to every step),
        so the high-noise steps, where the arrangement is chosen, keep the diffusion's own noise.
    """

    field_key = keys.FRAC_COORDS
    output_key = keys.COORD_SCORE
    per_atom = True
    has_corrector = True

    def __init__(
        self,
        schedule: ExponentialSigmaSchedule,
        *,
        n_images: int = DEFAULT_N_IMAGES,
        corrector_step_lr: float = CORRECTOR_STEP_LR_BY_DATASET["mp_20"],
        quadrature_points: int = DEFAULT_QUADRATURE_POINTS,
        noise_scale: float = 1.0,
        noise_scale_max_t: int | None = None,
    ):
        if not isinstance(n_images, int) or n_images < 1:
            raise ValueError(f"n_images must be a positive int, got {n_images!r}")
        if not corrector_step_lr >= 0:
            raise ValueError(f"corrector_step_lr must be >= 0, got {corrector_step_lr}")
        if not (math.isfinite(noise_scale) and noise_scale >= 0):
            raise ValueError(f"noise_scale must be a finite number >= 0, got {noise_scale}")
        if noise_scale_max_t is not None and (isinstance(noise_scale_max_t, bool) or not isinstance(noise_scale_max_t, int)
                                              or not 1 <= noise_scale_max_t <= schedule.num_timesteps):
            raise ValueError(f"noise_scale_max_t must be None or an int timestep in 1..{schedule.num_timesteps}, "
                             f"got {noise_scale_max_t!r}")
        if not isinstance(quadrature_points, int) or quadrature_points < _MIN_QUADRATURE_POINTS:
            raise ValueError(f"quadrature_points must be an int >= {_MIN_QUADRATURE_POINTS}, got {quadrature_points!r}")
        self.schedule = schedule
        self.num_timesteps = schedule.num_timesteps
        self.n_images = n_images
        self.corrector_step_lr = float(corrector_step_lr)
        self.quadrature_points = quadrature_points
        self.noise_scale = float(noise_scale)
        self.noise_scale_max_t = noise_scale_max_t
        fisher = wrapped_normal_fisher(schedule.sigmas[1:], n_images, quadrature_points)  # (T,)
        # Index 0 (sigma = 0, clean data) is never used; 1.0 keeps the table finite.
        self.score_norms = torch.cat([torch.ones(1, dtype=torch.float64), fisher.sqrt()])  # (T+1,)
        """``sqrt(lambda(sigma_t))`` for t = 0..T: the factor between the true and the
        normalised (network) score."""

    def __repr__(self) -> str:
        return (
            f"CoordDiffusion({self.schedule!r}, n_images={self.n_images}, "
            f"corrector_step_lr={self.corrector_step_lr}, quadrature_points={self.quadrature_points}, "
            f"noise_scale={self.noise_scale}, noise_scale_max_t={self.noise_scale_max_t})"
        )

    # ------------------------------------------------------------------ normalisation
    def normalised_score_target(self, d: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Normalised score of ``WN(0, sigma_t^2)`` at wrapped differences ``d`` (N, 3); ``t``: (N,)."""
        sigma = gather(self.schedule.sigmas, t, d)[:, None]  # (N, 1)
        norm = gather(self.score_norms, t, d)[:, None]  # (N, 1)
        return wrapped_normal_score(d, sigma, self.n_images) / norm  # (N, 3)

    def score(self, prediction: torch.Tensor, t: int) -> torch.Tensor:
        """Undo the normalisation: the score estimate (N, 3) from the network output at time t."""
        return prediction * float(self.score_norms[t])

    # ------------------------------------------------------------------ forward
    def noise(
        self, x0: torch.Tensor, t: torch.Tensor, *, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x0``: (N, 3) fractional; ``t``: (N,) in 1..T. Returns ``(F_t in [0,1), normalised score)``."""
        check_timesteps(t, self.num_timesteps, x0.shape[0], "coordinate noise")
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)  # (N, 3)
        sigma = gather(self.schedule.sigmas, t, x0)[:, None]  # (N, 1)
        x_t = wrap_unit(x0 + sigma * eps)  # (N, 3)
        target = self.normalised_score_target(wrap_difference(sigma * eps), t)  # (N, 3)
        return x_t, target

    def loss(self, prediction: torch.Tensor, target: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Squared error of the normalised score, mean over the 3 dimensions: (N,)."""
        return ((prediction - target) ** 2).mean(dim=1)  # (N,)

    # ------------------------------------------------------------------ reverse
    def sample_prior(
        self, num_rows: int, *, generator: torch.Generator, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """Uniform on [0, 1)^3: (num_rows, 3)."""
        return torch.rand((num_rows, 3), generator=generator, dtype=dtype, device=generator.device)

    def reverse_step(
        self, x_t: torch.Tensor, t: int, s: int, prediction: torch.Tensor, *, generator: torch.Generator
    ) -> torch.Tensor:
        """Ancestral (reverse-diffusion) step from sigma_t to sigma_s; ``x_t``: (N, 3) in [0, 1)."""
        check_step(t, s, self.num_timesteps, "coordinates")
        sig_t2 = float(self.schedule.sigmas[t]) ** 2
        sig_s2 = float(self.schedule.sigmas[s]) ** 2
        drift = (sig_t2 - sig_s2) * self.score(prediction, t)  # (N, 3)
        x_s = x_t + drift  # (N, 3)
        std = self.noise_factor(t) * (sig_s2 * (sig_t2 - sig_s2) / sig_t2) ** 0.5
        if std > 0:
            x_s = x_s + std * torch.randn(x_t.shape, generator=generator, dtype=x_t.dtype, device=x_t.device)
        return wrap_unit(x_s)

    def noise_factor(self, t: int) -> float:
        """λ for a step from timestep t (1 above ``noise_scale_max_t``)."""
        return self.noise_scale if self.noise_scale_max_t is None or t <= self.noise_scale_max_t else 1.0

    def corrector_step_size(self, t: int) -> float:
        """Langevin step ``step_lr * (sigma_t / sigma_min)^2`` at time t (fractional^2 units)."""
        return self.corrector_step_lr * (float(self.schedule.sigmas[t]) / self.schedule.sigma_min) ** 2

    def corrector_step(
        self, x_t: torch.Tensor, t: int, prediction: torch.Tensor, *, generator: torch.Generator
    ) -> torch.Tensor:
        """One Langevin step at sigma_t, noise scaled by :meth:`noise_factor`; ``x_t``: (N, 3) in [0, 1)."""
        check_step(t, 0, self.num_timesteps, "coordinates")
        step = self.corrector_step_size(t)
        z = torch.randn(x_t.shape, generator=generator, dtype=x_t.dtype, device=x_t.device)  # (N, 3)
        return wrap_unit(x_t + step * self.score(prediction, t) + self.noise_factor(t) * (2 * step) ** 0.5 * z)
