"""The score that orders relaxed candidates in ``predict`` (lower is better).

    score = E/atom + w_d · d + w_s · max(e_hull(template), 0) + w_n · [N mod n ≠ 0] + w_v · (1 - v)

- ``E/atom``: the relaxed energy per atom under the ranking potential (eV/atom). Energy alone
  misranks: on MP-20 a universal potential's errors of tens of meV/atom separate polymorphs as
  often as real energy differences do.
- ``d``: the Mendeleev distance (per formula atom, :mod:`diffcrystal.analogues`) of the
  analogue a candidate comes from, its chemical prior: the nearer the analogue, the likelier
  its structure type. Free diffusion samples have no analogue and are charged
  ``free_distance`` instead.
- ``e_hull(template)``: the template's own energy above the hull in its data (eV/atom): a
  structure type that is metastable for the analogue is less likely for the target.
  Unknown values count as 0.
- ``[N mod n ≠ 0]``: when the user gives the cell's atom count ``N`` (as the CSP benchmarks give
  it), a candidate whose cell of ``n`` atoms no N-atom cell can hold is charged ``w_n``.
- ``v``: the share of the nearest analogues' votes that the candidate's structure type has
  (:meth:`~diffcrystal.analogues.AnalogueLibrary.type_votes`; 0 for free samples): a type many
  near analogues adopt is likelier.

The weights are fitted on validation structures held out of the generator's training data,
never on test files (``scripts/calibrate_ranking.py``, by maximum likelihood through
:mod:`diffcrystal.ranking_fit`; figures in docs/benchmarks.md, "Ranked prediction").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from diffcrystal.errors import InputError

DEFAULT_DISTANCE_WEIGHT_EV = 0.055
"""w_d in eV/atom per Mendeleev unit. All five weights are the maximum-likelihood fit of
:mod:`diffcrystal.ranking_fit` on 158 held-out validation structures with the atom count given
(L2 0.03, chosen by 5-fold cross-validation; rounded to two digits): cross-validated @1
70.3 % matched, against 67.7 % for the best of the 2,100-point grid chosen the same way and
62.0 % for the nearest template (``scripts/calibrate_ranking.py --atom-count --every 5``;
docs/benchmarks.md, "Ranked prediction", with the test figures). A template one Mendeleev
unit farther must be 55 meV/atom lower in energy to win: the chemical prior outweighs
SevenNet-0's small energy differences between polymorphs."""

DEFAULT_FREE_DISTANCE = 4.9
"""Mendeleev units charged to a free diffusion sample (fitted with w_d): a free sample must be
0.27 eV/atom lower than a template of the same chemistry to outrank it."""

DEFAULT_STABILITY_WEIGHT = 0.21
"""w_s, dimensionless (fitted with w_d)."""

DEFAULT_ATOM_COUNT_WEIGHT_EV = 0.43
"""w_n in eV/atom (fitted with w_d): a cell no N-atom cell can hold almost never wins."""

DEFAULT_VOTE_WEIGHT_EV = 0.24
"""w_v in eV/atom (fitted with w_d)."""


def fits_atom_count(candidate_atoms: int, num_atoms: int | None) -> bool:
    """Whether a cell of ``num_atoms`` atoms (None: not given) can hold a crystal whose cell has
    ``candidate_atoms``: ``num_atoms`` is a whole multiple of it (a supercell)."""
    return num_atoms is None or (candidate_atoms > 0 and num_atoms % candidate_atoms == 0)


@dataclass(frozen=True)
class RankingScore:
    """Weights of the ranking score (module docstring): ``distance_weight`` (eV/atom per
    Mendeleev unit), ``free_distance`` (Mendeleev units), ``stability_weight`` (dimensionless),
    ``atom_count_weight`` and ``vote_weight`` (eV/atom)."""

    distance_weight: float = DEFAULT_DISTANCE_WEIGHT_EV
    free_distance: float = DEFAULT_FREE_DISTANCE
    stability_weight: float = DEFAULT_STABILITY_WEIGHT
    atom_count_weight: float = DEFAULT_ATOM_COUNT_WEIGHT_EV
    vote_weight: float = DEFAULT_VOTE_WEIGHT_EV

    def __post_init__(self) -> None:
        for name in ("distance_weight", "free_distance", "stability_weight", "atom_count_weight", "vote_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise InputError(f"ranking score {name.replace('_', ' ')} must be a finite number >= 0, got {value}")

    def offset(self, analogue_distance: float, template_e_above_hull: float = math.nan,
               fits_atoms: bool = True, type_vote: float = 1.0) -> float:
        """The score's prior part in eV/atom,
        ``w_d · d + w_s · max(e_hull, 0) + w_n · [not fits_atoms] + w_v · (1 - type_vote)``
        (``fits_atoms``: :func:`fits_atom_count`; ``type_vote`` in [0, 1], 1 charges nothing)."""
        distance = analogue_distance if math.isfinite(analogue_distance) else self.free_distance
        stability = max(template_e_above_hull, 0.0) if math.isfinite(template_e_above_hull) else 0.0
        misfit = 0.0 if fits_atoms else self.atom_count_weight
        return (self.distance_weight * distance + self.stability_weight * stability + misfit
                + self.vote_weight * (1.0 - type_vote))

    def __call__(self, energy_per_atom: float, analogue_distance: float, template_e_above_hull: float = math.nan,
                 fits_atoms: bool = True, type_vote: float = 1.0) -> float:
        """The score of a candidate relaxed to ``energy_per_atom`` (eV/atom)."""
        return energy_per_atom + self.offset(analogue_distance, template_e_above_hull, fits_atoms, type_vote)
