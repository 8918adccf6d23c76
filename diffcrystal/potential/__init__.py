"""Machine-learned potentials: get a calculator, relax, rank, and fit an own student.

- :mod:`~diffcrystal.potential.calculators` — :func:`resolve_potential` turns a name
  (``sevennet-0`` default, ``chgnet``, ``emt``) or fitted-model path into one :class:`Potential`
  (label, cache identity, element set, calculator, batched evaluator); nequip's global torch
  state is kept out of the caller.
- :mod:`~diffcrystal.potential.results` — :class:`RelaxSettings`, :class:`RelaxResult` and the
  checks both engines use to decide a structure's status.
- :mod:`~diffcrystal.potential.relax` — FIRE/BFGS on a FrechetCellFilter with explosion checks;
  :func:`relax_many` with the batched engine or over a process pool.
- :mod:`~diffcrystal.potential.batched_relax` — the same FIRE and cell filter over a batch in
  torch, one batched potential call per step (:mod:`~diffcrystal.potential.evaluators`).
- :mod:`~diffcrystal.potential.trajectory` — relaxation trajectories as ASE ``.traj`` files.
- :mod:`~diffcrystal.potential.threads` — torch / BLAS thread caps in this process and workers.
- :mod:`~diffcrystal.potential.rank` — StructureMatcher deduplication, ranking by energy per
  atom (converged structures; those stopped at the step cap apart), energy above the hull of
  reference phases, tables and plot.
- :mod:`~diffcrystal.potential.hull` — known phases of a dataset in the candidates' chemical
  systems (ASE reference states for missing elements), convex hulls per system, known-or-novel.
- :mod:`~diffcrystal.potential.relax_cache` — relaxations stored on disk, keyed on potential
  weights, settings and structure.
- :mod:`~diffcrystal.potential.fit` — frames, teacher labels, ``nequip-train``/``nequip-compile``.
- :mod:`~diffcrystal.potential.io` — reading candidates (sample folders, CIFs, extxyz), output
  folder checks made before any work, atomic writes.

Heavy dependencies (torch, sevenn, nequip) are imported only when used.
"""

from diffcrystal.potential.calculators import (
    DEFAULT_POTENTIAL,
    POTENTIAL_NAMES,
    Potential,
    load_calculator,
    potential_label,
    resolve_potential,
)
from diffcrystal.potential.rank import rank_results, relax_and_rank, relax_paths
from diffcrystal.potential.relax import WorkersDied, relax_atoms, relax_many
from diffcrystal.potential.results import RelaxResult, RelaxSettings

__all__ = [
    "DEFAULT_POTENTIAL", "POTENTIAL_NAMES", "Potential", "load_calculator", "potential_label",
    "resolve_potential", "RelaxResult", "RelaxSettings", "WorkersDied", "relax_atoms", "relax_many",
    "rank_results", "relax_and_rank", "relax_paths",
]
