"""Exact denoisers of toy data distributions: the reference the sampler's tests sample with.

:class:`ExactToyDenoiser` returns, for each field of a :class:`JointDiffusion`, the exact
optimum of that field's training loss when the clean data are

- lattice: every entry i.i.d. ``N(lattice_mean_A, lattice_std_A^2)`` (Å). With
  ``x = L / length_scale`` (mean ``mu``, variance ``v``), ``x_t ~ N(sqrt(ab) mu, ab v + 1 - ab)``
  and ``E[eps | x_t] = sqrt(1 - ab) (x_t - sqrt(ab) mu) / (ab v + 1 - ab)``;
- coordinates: every fractional coordinate i.i.d. wrapped normal ``WN(coord_center, coord_std^2)``,
  so ``F_t ~ WN(coord_center, coord_std^2 + sigma_t^2)`` and the marginal score is the wrapped
  normal score with that variance (returned normalised, as the network's output is);
- species: every atom i.i.d. from ``species_probs`` (100,) over atomic numbers 1..100, whose
  logits are the exact ``x_0`` prediction (the absorbing process carries no information about
  a masked atom's species when atoms are independent).

The denoiser reads the integer time back as ``round(keys.TIME * T)``.
"""

from __future__ import annotations

import torch

from diffcrystal import MAX_ATOMIC_NUMBER
from diffcrystal.data import keys
from diffcrystal.diffusion.coords import CoordDiffusion, wrap_difference, wrapped_normal_score
from diffcrystal.diffusion.joint import JointDiffusion
from diffcrystal.diffusion.lattice import LatticeDiffusion
from diffcrystal.diffusion.species import SpeciesDiffusion


class ExactToyDenoiser:
    """Exact ``denoiser(batch) -> dict`` for the toy distributions above.

    Parameters
    ----------
    joint : the diffusion whose schedules the optimum depends on.
    lattice_mean_A, lattice_std_A : mean and std (Å) of each lattice entry.
    coord_center : (3,) centre of the coordinate distribution, fractional.
    coord_std : std of the wrapped normal of each coordinate, fractional (> 0).
    species_probs : (100,) probabilities of atomic numbers 1..100 (None: uniform).

    Attributes
    ----------
    calls : number of times the denoiser was called.
    """

    def __init__(
        self,
        joint: JointDiffusion,
        *,
        lattice_mean_A: float = 4.0,
        lattice_std_A: float = 0.5,
        coord_center=(0.25, 0.5, 0.75),
        coord_std: float = 0.05,
        species_probs: torch.Tensor | None = None,
    ):
        self.joint = joint
        self.lattice_mean_A = float(lattice_mean_A)
        self.lattice_std_A = float(lattice_std_A)
        self.coord_center = torch.as_tensor(coord_center, dtype=torch.float64)  # (3,)
        if not coord_std > 0:
            raise ValueError(f"coord_std must be > 0, got {coord_std}")
        self.coord_std = float(coord_std)
        if species_probs is None:
            species_probs = torch.full((MAX_ATOMIC_NUMBER,), 1.0 / MAX_ATOMIC_NUMBER)
        species_probs = torch.as_tensor(species_probs, dtype=torch.float64)  # (100,)
        if species_probs.shape != (MAX_ATOMIC_NUMBER,) or (species_probs < 0).any():
            raise ValueError(f"species_probs must be ({MAX_ATOMIC_NUMBER},) non-negative")
        self.species_logits = torch.log(species_probs / species_probs.sum())  # (100,)
        self.calls = 0

    def __call__(self, batch) -> dict[str, torch.Tensor]:
        self.calls += 1
        T = self.joint.num_timesteps
        t_graph = torch.round(batch[keys.TIME].double() * T).long()  # (B,)
        t_atom = t_graph[batch[keys.BATCH]]  # (N,)
        out: dict[str, torch.Tensor] = {}
        for proc in self.joint.fields.values():
            if isinstance(proc, LatticeDiffusion):
                out[proc.output_key] = self._lattice(proc, batch[proc.field_key], t_graph)
            elif isinstance(proc, CoordDiffusion):
                out[proc.output_key] = self._coords(proc, batch[proc.field_key], t_atom)
            elif isinstance(proc, SpeciesDiffusion):
                x = batch[proc.field_key]  # (N,)
                out[proc.output_key] = self.species_logits.to(x.device).expand(x.shape[0], -1).float()
            else:
                raise TypeError(f"no exact toy denoiser for {type(proc).__name__}")
        return out

    def _lattice(self, proc: LatticeDiffusion, lattice: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ab = proc.schedule.alpha_bars.to(t.device)[t][:, None, None]  # (B, 1, 1) float64
        mu = self.lattice_mean_A / proc.length_scale_A
        var = (self.lattice_std_A / proc.length_scale_A) ** 2
        x = lattice.double() / proc.length_scale_A  # (B, 3, 3)
        eps = (1 - ab).sqrt() * (x - ab.sqrt() * mu) / (ab * var + 1 - ab)  # (B, 3, 3)
        return eps.to(lattice.dtype)

    def _coords(self, proc: CoordDiffusion, frac: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        sigma_t = proc.schedule.sigmas.to(t.device)[t][:, None]  # (N, 1) float64
        total = (sigma_t**2 + self.coord_std**2).sqrt()  # (N, 1)
        d = wrap_difference(frac.double() - self.coord_center.to(frac.device))  # (N, 3)
        score = wrapped_normal_score(d, total, proc.n_images)  # (N, 3)
        return (score / proc.score_norms.to(t.device)[t][:, None]).to(frac.dtype)
