"""Batched relaxation: FIRE or BFGS on a Fréchet cell filter for many crystals at once.

The same relaxation as :func:`~diffcrystal.potential.relax.relax_atoms` (ASE ``FIRE`` or ``BFGS``
on a ``FrechetCellFilter`` at zero pressure, ASE 3.29), written over a batch of structures of
mixed sizes so that each optimiser step needs **one batched potential call** for every structure
still running. Each structure keeps its own optimiser state, convergence test, step count and
explosion checks, and leaves the batch when it converges, explodes or reaches the step cap.

Degrees of freedom of a structure with ``N`` atoms, original cell ``L0`` (3, 3; rows a, b, c in
Å) and current cell ``L = L0 Fᵀ`` (``F`` the deformation gradient):

- ``u = X F⁻ᵀ`` (N, 3): Cartesian positions ``X`` mapped back into the original cell, Å;
- ``c = N log F`` (3, 3): the matrix log of the deformation, scaled by the cell factor ``N``
  (ASE's default ``exp_cell_factor``), so ``F = exp(c / N)``. (ASE's own variable is
  ``N log(N F)``, larger by the constant ``N log(N) I``, which neither optimiser's steps see.)

Generalised forces (the negative gradient of the energy ``E`` in these variables):

- atoms: ``f_u = f F`` with ``f`` the forces (N, 3), eV/Å;
- cell: with the virial ``W = -V σ`` (σ the 3×3 stress, eV/Å³; ``V`` the volume, Å³) and
  ``G = W F⁻ᵀ``, ``f_c = (1/N) ∂/∂Y ⟨exp(Y), G⟩`` at ``Y = log F`` — the adjoint of the
  Fréchet derivative of the matrix exponential applied to ``G``, computed by autograd through
  ``torch.matrix_exp`` (ASE sums nine ``scipy.linalg.expm_frechet`` directions).

A structure has converged when the largest row norm of ``(f_u; f_c)`` ((N + 3) rows) is below
``fmax``. FIRE (Bitzek et al., PRL 97, 170201 (2006)) with ASE's update order and defaults
(:data:`FIRE_DT`, ...): with ``g`` the generalised force and ``v`` the velocity over all
``3(N + 3)`` coordinates, from the second step on, if ``g·v > 0`` then
``v ← (1 - a) v + a |v| g / |g|``, and after more than ``Nmin`` such steps in a row
``dt ← min(finc dt, dtmax)``, ``a ← fa a``; otherwise ``v ← 0``, ``a ← a_start``,
``dt ← fdec dt``. Then ``v ← v + dt g`` and the step ``dr = dt v`` is scaled down to length
``maxstep`` when longer (one norm over atoms and cell together).

BFGS (ASE's defaults): each structure keeps a Hessian estimate ``H`` over its ``3(N + 3)``
coordinates ``x = (u; c)``, ``H = α I`` (:data:`BFGS_ALPHA`) at the first step and then, with
``s = x - x₀`` and ``y = g₀ - g`` (the change of the gradient ``-g``), unless ``s`` is below
1e-7 everywhere, ``H ← H + y yᵀ / (s·y) - (H s)(H s)ᵀ / (s·H s)``. The step is
``dx = Σ_k v_k (v_k·g) / |ω_k|`` over the eigenpairs ``(ω_k, v_k)`` of ``H``, scaled down to
``maxstep`` when its longest row (an atom or a cell vector) is at least that long.

The optimiser state lives in float64 on the CPU; the potential runs on ``device`` (its own dtype).
Potentials are called through :meth:`~diffcrystal.potential.calculators.Potential.evaluator`
(:mod:`~diffcrystal.potential.evaluators`: SevenNet-0 on batches of its graphs, any other
through its ASE calculator, one structure after another).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from diffcrystal.potential.calculators import Potential, resolve_potential
from diffcrystal.potential.results import (
    RelaxResult,
    RelaxSettings,
    explosion_reason,
    prepared_atoms,
    record_final,
)
from diffcrystal.potential.threads import limited_threads
from diffcrystal.potential.trajectory import TrajectoryRecorder, trajectory_path

BFGS_ALPHA = 70.0
"""Initial Hessian of BFGS, eV/Å² times the identity (ASE ``BFGS`` default ``alpha``)."""
BFGS_MAX_STEP_A = 0.2
"""Longest row of one BFGS step, Å (ASE ``BFGS`` default ``maxstep``)."""
FIRE_DT = 0.1
"""Initial FIRE time step (ASE ``FIRE`` default ``dt``)."""
FIRE_DT_MAX = 1.0
"""Largest FIRE time step (ASE default ``dtmax``)."""
FIRE_MAX_STEP_A = 0.2
"""Longest step over all coordinates of one structure, Å (ASE optimizer default ``maxstep``)."""
FIRE_N_MIN = 5
"""Downhill steps in a row before the time step may grow (ASE default ``Nmin``)."""
FIRE_F_INC = 1.1
"""Time-step growth factor (ASE default ``finc``)."""
FIRE_F_DEC = 0.5
"""Time-step cut on an uphill step (ASE default ``fdec``)."""
FIRE_A_START = 0.1
"""Velocity-mixing parameter after a reset (ASE default ``astart``, also its initial ``a``)."""
FIRE_F_A = 0.99
"""Decay factor of the mixing parameter (ASE default ``fa``)."""

# ---------------------------------------------------------------------- the optimiser
def frechet_cell_force(log_deformation, stress_3x3, volume, deformation, num_atoms):
    """Generalised force on the cell variables ``c = N log F`` (B, 3, 3), eV.

    ``log_deformation`` ``log F`` (B, 3, 3), ``stress_3x3`` σ (B, 3, 3) eV/Å³, ``volume`` (B,)
    Å³, ``deformation`` ``F`` (B, 3, 3), ``num_atoms`` N (B,). See the module docstring.
    """
    import torch

    virial = -volume[:, None, None] * stress_3x3  # (B, 3, 3) eV
    cell_gradient = virial @ torch.linalg.inv(deformation.transpose(1, 2))  # G = W F^-T
    with torch.enable_grad():
        y = log_deformation.detach().requires_grad_(True)
        (frechet,) = torch.autograd.grad((torch.matrix_exp(y) * cell_gradient).sum(), y)
    return frechet / num_atoms[:, None, None]


def _voigt_to_3x3(stress):
    """(B, 6) Voigt (xx, yy, zz, yz, xz, xy) → (B, 3, 3) symmetric."""
    import torch

    xx, yy, zz, yz, xz, xy = stress.unbind(-1)
    return torch.stack([torch.stack([xx, xy, xz], -1), torch.stack([xy, yy, yz], -1),
                        torch.stack([xz, yz, zz], -1)], -2)


class _BatchState:
    """Optimiser state of B structures; per-atom tensors are concatenated, ``owner`` (sum N,)
    maps each atom row to its structure. FIRE's state is batched tensors, BFGS's one Hessian
    per structure (NumPy, float64)."""

    def __init__(self, structures: Sequence):
        import torch

        self.structures = list(structures)  # ASE Atoms, updated in place each step
        counts = [len(a) for a in structures]
        b = len(structures)
        self.owner = torch.repeat_interleave(torch.arange(b), torch.tensor(counts))  # (sum N,)
        self.bounds = np.cumsum([0] + counts)
        self.num_atoms = torch.tensor(counts, dtype=torch.float64)  # (B,)
        self.original_cell = torch.tensor(np.array([a.cell.array for a in structures]))  # (B, 3, 3) Å
        self.u = torch.tensor(np.concatenate([a.positions for a in structures]))  # (sum N, 3) Å
        self.c = torch.zeros(b, 3, 3, dtype=torch.float64)  # N log F
        self.v_atoms = torch.zeros_like(self.u)
        self.v_cell = torch.zeros_like(self.c)
        self.dt = torch.full((b,), FIRE_DT, dtype=torch.float64)
        self.a = torch.full((b,), FIRE_A_START, dtype=torch.float64)
        self.downhill = torch.zeros(b, dtype=torch.long)  # ASE's Nsteps
        self.started = torch.zeros(b, dtype=torch.bool)  # ASE's vel is not None
        self.steps = np.zeros(b, dtype=int)
        self.hessian: list[np.ndarray | None] = [None] * b  # BFGS, (3(N+3), 3(N+3)) eV/Å²
        self.x0: list[np.ndarray | None] = [None] * b  # BFGS: coordinates of the last step
        self.g0: list[np.ndarray | None] = [None] * b  # BFGS: generalised forces there

    def per_structure(self, atom_values):
        """Sum over each structure's atom rows: (sum N,) → (B,)."""
        import torch

        return torch.zeros(len(self.structures), dtype=atom_values.dtype).index_add_(
            0, self.owner, atom_values)

    def deformation(self, active=None):
        """``log F`` and ``F = exp(c / N)``, (B, 3, 3); with ``active`` (B,) bool, the identity
        for the structures that left the batch (whose cell may no longer be finite)."""
        import torch

        log_f = self.c / self.num_atoms[:, None, None]
        if active is not None:
            log_f = torch.where(active[:, None, None], log_f, torch.zeros_like(log_f))
        return log_f, torch.matrix_exp(log_f)

    def write_structures(self, indices: Sequence[int]) -> None:
        """Set cell ``L0 Fᵀ`` and positions ``u Fᵀ`` of the structures ``indices``."""
        _, f = self.deformation()
        cells = (self.original_cell @ f.transpose(1, 2)).numpy()
        positions = (self.u[:, None, :] @ f.transpose(1, 2)[self.owner]).squeeze(1).numpy()
        for i in indices:
            atoms = self.structures[i]
            atoms.set_cell(cells[i], scale_atoms=False)
            atoms.positions = positions[self.bounds[i]:self.bounds[i + 1]]

    def generalised_forces(self, forces, stress, active):
        """``(f_u, f_c)`` from forces (sum N, 3) eV/Å and Voigt stress (B, 6) eV/Å³ of the
        ``active`` (B,) structures (zero forces and stress elsewhere)."""
        import torch

        log_f, f = self.deformation(active)
        volume = torch.linalg.det(self.original_cell @ f.transpose(1, 2)).abs()
        f_u = (forces[:, None, :] @ f[self.owner]).squeeze(1)  # f F
        f_c = frechet_cell_force(log_f, _voigt_to_3x3(stress), volume, f, self.num_atoms)
        return f_u, f_c

    def max_generalised_force(self, f_u, f_c):
        """Largest row norm over atoms and cell rows, (B,) eV/Å."""
        import torch

        atom_norms = f_u.norm(dim=1)
        worst = torch.zeros(len(self.structures), dtype=torch.float64).scatter_reduce_(
            0, self.owner, atom_norms, reduce="amax", include_self=False)
        return torch.maximum(worst, f_c.norm(dim=2).amax(dim=1))

    def fire_step(self, f_u, f_c, moving) -> None:
        """One ASE-FIRE step of the structures where ``moving`` (B,) bool is set."""
        import torch

        vf = self.per_structure((f_u * self.v_atoms).sum(1)) + (f_c * self.v_cell).sum((1, 2))
        g2 = self.per_structure((f_u * f_u).sum(1)) + (f_c * f_c).sum((1, 2))
        v2 = self.per_structure((self.v_atoms ** 2).sum(1)) + (self.v_cell ** 2).sum((1, 2))
        mix = moving & self.started & (vf > 0)
        reset = moving & self.started & ~(vf > 0)
        scale = torch.where(mix, self.a * v2.sqrt() / g2.sqrt().clamp_min(1e-300),
                            torch.zeros_like(vf))
        keep = torch.where(mix, 1 - self.a, torch.where(reset, 0.0, 1.0))
        self.v_atoms = keep[self.owner, None] * self.v_atoms + scale[self.owner, None] * f_u
        self.v_cell = keep[:, None, None] * self.v_cell + scale[:, None, None] * f_c
        grow = mix & (self.downhill > FIRE_N_MIN)
        self.dt = torch.where(grow, torch.clamp(self.dt * FIRE_F_INC, max=FIRE_DT_MAX), self.dt)
        self.a = torch.where(grow, self.a * FIRE_F_A, self.a)
        self.downhill = torch.where(mix, self.downhill + 1, self.downhill)
        self.a = torch.where(reset, torch.full_like(self.a, FIRE_A_START), self.a)
        self.dt = torch.where(reset, self.dt * FIRE_F_DEC, self.dt)
        self.downhill = torch.where(reset, torch.zeros_like(self.downhill), self.downhill)
        self.started |= moving

        dt = torch.where(moving, self.dt, torch.zeros_like(self.dt))
        self.v_atoms = torch.where(moving[self.owner, None], self.v_atoms + dt[self.owner, None] * f_u,
                                   self.v_atoms)
        self.v_cell = torch.where(moving[:, None, None], self.v_cell + dt[:, None, None] * f_c,
                                  self.v_cell)
        dr_atoms = dt[self.owner, None] * self.v_atoms
        dr_cell = dt[:, None, None] * self.v_cell
        length = (self.per_structure((dr_atoms ** 2).sum(1)) + (dr_cell ** 2).sum((1, 2))).sqrt()
        shrink = torch.where(length > FIRE_MAX_STEP_A, FIRE_MAX_STEP_A / length.clamp_min(1e-300),
                             torch.ones_like(length))
        self.u = self.u + shrink[self.owner, None] * dr_atoms
        self.c = self.c + shrink[:, None, None] * dr_cell


    def bfgs_step(self, f_u, f_c, moving) -> None:
        """One ASE-BFGS step of each structure where ``moving`` (B,) bool is set."""
        import torch

        rows_u, rows_c = self.u.clone(), self.c.clone()
        for j in torch.nonzero(moving).flatten().tolist():
            atoms = slice(self.bounds[j], self.bounds[j + 1])
            x = torch.cat([self.u[atoms], self.c[j]]).numpy().ravel()
            g = torch.cat([f_u[atoms], f_c[j]]).numpy().ravel()
            if self.hessian[j] is None:
                self.hessian[j] = BFGS_ALPHA * np.eye(x.size)
            else:
                s, y = x - self.x0[j], self.g0[j] - g
                if np.abs(s).max() >= 1e-7:
                    hs = self.hessian[j] @ s
                    self.hessian[j] += np.outer(y, y) / (s @ y) - np.outer(hs, hs) / (s @ hs)
            self.x0[j], self.g0[j] = x, g.copy()
            omega, vectors = np.linalg.eigh(self.hessian[j])
            dx = (vectors @ (g @ vectors / np.abs(omega))).reshape(-1, 3)
            longest = float(np.linalg.norm(dx, axis=1).max())
            if longest >= BFGS_MAX_STEP_A:
                dx *= BFGS_MAX_STEP_A / longest
            step = torch.from_numpy(dx)
            rows_u[atoms] += step[:-3]
            rows_c[j] += step[-3:]
        self.u, self.c = rows_u, rows_c


def relax_batched(items: Sequence[tuple[str, object]], potential: Potential | str, settings: RelaxSettings,
                  progress: bool = True, threads: int | None = 1,
                  trajectory_dir: str | Path | None = None) -> list[RelaxResult]:
    """Relax ``(label, Atoms | Crystal | MissingStructure)`` pairs together; one
    :class:`RelaxResult` per item, in input order, never raising for one structure.

    ``potential``: a :class:`~diffcrystal.potential.calculators.Potential` (or a name, resolved
    on CPU): its :meth:`~diffcrystal.potential.calculators.Potential.evaluator` maps a list of
    ASE ``Atoms`` to ``(energy, forces, stress)`` tuples or exceptions, its label is recorded.
    ``threads`` caps torch / BLAS threads while relaxing (``None``: leave them).
    ``trajectory_dir``: write each structure's steps to ``<label>.traj`` there. Verdicts, step
    counts and reasons follow :func:`~diffcrystal.potential.relax.relax_atoms`.
    """
    import torch  # noqa: F401  (imported before limited_threads caps its threads)

    potential = resolve_potential(potential)
    if threads is None:
        return _relax_batched(items, potential, settings, progress, trajectory_dir)
    with limited_threads(threads):
        return _relax_batched(items, potential, settings, progress, trajectory_dir)


def _relax_batched(items, potential: Potential, settings: RelaxSettings, progress: bool,
                   trajectory_dir) -> list[RelaxResult]:
    import torch
    from tqdm.auto import tqdm

    results = [RelaxResult(label=name, status="failed", potential=potential.label) for name, _ in items]
    running: list[int] = []  # indices into items
    structures = []
    for i, (_, item) in enumerate(items):
        try:
            atoms = prepared_atoms(item, results[i])
        except Exception as error:
            results[i].reason = f"{type(error).__name__}: {error}"
            continue
        if atoms is not None:
            running.append(i)
            structures.append(atoms)
    bar = tqdm(total=len(items), initial=len(items) - len(running), desc=f"relax batched ({potential.short_name})",
               disable=not progress, unit="structure")  # unrelaxable ones count as done, not as speed
    if not running:
        bar.close()
        return results

    evaluator = potential.evaluator()
    recorders = [TrajectoryRecorder() for _ in structures] if trajectory_dir is not None else None
    state = _BatchState(structures)
    active = torch.ones(len(structures), dtype=torch.bool)
    energies: list[list[float]] = [[] for _ in structures]  # eV per step, step 0 first
    while bool(active.any()):
        now = torch.nonzero(active).flatten().tolist()
        state.write_structures(now)
        outputs = evaluator([state.structures[j] for j in now])
        forces = torch.zeros_like(state.u)
        stress = torch.zeros(len(structures), 6, dtype=torch.float64)
        for j, output in zip(now, outputs):
            result = results[running[j]]
            if isinstance(output, Exception):
                result.status, result.reason = "failed", f"{type(output).__name__}: {output}"
                result.steps = int(state.steps[j])
                active[j] = False
                continue
            energy, atom_forces, voigt = output
            energies[j].append(energy)
            if recorders is not None:
                recorders[j].record(state.structures[j], energy, atom_forces, voigt)
            why = explosion_reason(state.structures[j], energy, atom_forces, voigt)
            if why:
                result.status, result.reason = "exploded", f"step {state.steps[j]}: {why}"
                result.steps = int(state.steps[j])
                active[j] = False
                continue
            forces[state.bounds[j]:state.bounds[j + 1]] = torch.from_numpy(np.asarray(atom_forces, float))
            stress[j] = torch.from_numpy(np.asarray(voigt, float))
        f_u, f_c = state.generalised_forces(forces, stress, active)
        largest = state.max_generalised_force(f_u, f_c)  # (B,) eV/Å, what fmax is tested on
        converged = largest < settings.fmax
        for j in now:
            if not active[j]:
                continue
            if bool(converged[j]) or state.steps[j] >= settings.max_steps:
                result = results[running[j]]
                result.steps = int(state.steps[j])
                record_final(result, state.structures[j], energies[j][-1], float(largest[j]),
                             stress[j].numpy(), bool(converged[j]), energies[j], settings)
                active[j] = False
        finished = len(now) - int(active.sum())
        if finished:
            bar.update(finished)
        if not bool(active.any()):
            break
        if settings.optimizer == "BFGS":
            state.bfgs_step(f_u, f_c, active.clone())
        else:
            state.fire_step(f_u, f_c, active.clone())
        state.steps[active.numpy()] += 1
        bar.set_postfix(running=int(active.sum()), refresh=False)
    bar.close()
    if recorders is not None:
        for j, recorder in enumerate(recorders):
            if recorder.frames:
                recorder.write(trajectory_path(trajectory_dir, results[running[j]].label))
    return results
