"""Fit the ranking score's weights by maximum likelihood (a conditional logit), not by a grid.

Each ranked-evaluation record (:mod:`diffcrystal.ranked_evaluation`) is one choice among its
relaxed structures. With the features of :data:`FEATURES` for structure ``i`` (``x_i``) and
parameters ``θ``, the model says the target is structure ``i`` with probability

    p_i = exp(-θ·x_i) / Σ_j exp(-θ·x_j)

over the record's converged structures (those the ranking puts first). A record whose target
some structures match contributes ``-log Σ_{i matched} p_i`` to the loss (several structures
can match one target); records that none matches carry no information and are skipped. An L2
term ``l2 · |θ|²`` keeps the weights finite when the data separate perfectly, and all weights
are held ``>= 0`` so the fit stays a :class:`~diffcrystal.ranking.RankingScore`.

Since ``θ·x`` is ``θ_E`` times the ranking score (``x_E`` is the energy above the record's
lowest, so the constant shift cancels), the score's weights are ``θ_k / θ_E`` and
``free_distance = θ_free / θ_d`` (:func:`score_from_parameters`). Records may be weighted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from diffcrystal.errors import InputError
from diffcrystal.ranking import RankingScore, fits_atom_count

__all__ = ["FEATURES", "ChoiceSet", "choice_sets", "cross_validated_at_1", "fit_parameters",
           "score_from_parameters"]

FEATURES = ("energy", "distance", "free", "template_e_above_hull", "atom_count_misfit", "vote_missing")
"""Columns of a structure's feature row: energy per atom above the record's lowest (eV/atom),
analogue distance (Mendeleev units; 0 for free samples), 1 for a free diffusion sample,
max(template e above hull, 0) (eV/atom; 0 unknown), 1 when no cell of the given atom count can
hold it, 1 - its structure type's vote share."""

MIN_DISTANCE_PARAMETER = 1e-6
"""Lower bound of θ_distance in a fit, so that a free sample's charge θ_free is always the
distance ``θ_free / θ_distance`` of :class:`RankingScore` (at this bound, distance itself
changes no ranking: 1e-6 per Mendeleev unit against energies in eV/atom)."""

LOWEST_PLAUSIBLE_ENERGY_EV = -15.0
"""eV/atom: a relaxed energy below this is a hole in the potential, not a crystal (no compound in
the Materials Project lies below about -13 eV/atom); such structures are left out of a fit."""


class ChoiceSet:
    """One record as a choice: ``features`` (n × len(FEATURES)) and ``matched`` (n booleans)."""

    def __init__(self, features: np.ndarray, matched: np.ndarray):
        self.features = np.asarray(features, dtype=np.float64)
        self.matched = np.asarray(matched, dtype=bool)

    def first(self, parameters: np.ndarray) -> int:
        """Index of the structure the parameters rank first (lowest θ·x; first on ties)."""
        return int(np.argmin(self.features @ parameters))


def _row(entry: dict, lowest: float, given_atoms: int | None) -> list[float]:
    distance, stability = entry["analogue_distance"], entry["template_e_above_hull"]
    free = distance is None
    stability = stability if stability is not None and math.isfinite(stability) else 0.0
    return [entry["energy_per_atom"] - lowest, 0.0 if free else distance, float(free), max(stability, 0.0),
            float(not fits_atom_count(entry.get("num_atoms", 0), given_atoms)), 1.0 - entry.get("type_vote", 1.0)]


def choice_sets(records: Sequence[dict]) -> list[ChoiceSet | None]:
    """One :class:`ChoiceSet` per record over its converged structures (all of them when none
    converged), or None when no structure is left (every energy non-finite or implausible)."""
    sets = []
    for record in records:
        usable = [e for e in record["ranked"] if e["energy_per_atom"] is not None
                  and math.isfinite(e["energy_per_atom"]) and e["energy_per_atom"] > LOWEST_PLAUSIBLE_ENERGY_EV]
        converged = [e for e in usable if e["converged"]]
        chosen = converged or usable
        if not chosen:
            sets.append(None)
            continue
        lowest = min(e["energy_per_atom"] for e in chosen)
        sets.append(ChoiceSet([_row(e, lowest, record.get("given_atoms")) for e in chosen],
                              [e["status"] == "match" for e in chosen]))
    return sets


def _loss_and_gradient(parameters: np.ndarray, sets: Sequence[ChoiceSet], weights: np.ndarray,
                       l2: float) -> tuple[float, np.ndarray]:
    loss, gradient = l2 * parameters @ parameters, 2.0 * l2 * parameters
    for choice, weight in zip(sets, weights):
        logits = -(choice.features @ parameters)
        logits -= logits.max()
        p = np.exp(logits)
        p /= p.sum()
        p_matched = p[choice.matched].sum()
        q = np.where(choice.matched, p, 0.0) / p_matched
        loss -= weight * math.log(p_matched)
        gradient += weight * ((q - p) @ choice.features)
    return float(loss), gradient


def fit_parameters(sets: Sequence[ChoiceSet | None], l2: float, weights: Sequence[float] | None = None) -> np.ndarray:
    """θ (one per :data:`FEATURES`, all ``>= 0``) minimising the weighted loss of the module
    docstring over the sets that some structure matches."""
    from scipy.optimize import minimize

    if not l2 >= 0:
        raise InputError(f"l2 must be >= 0, got {l2}")
    weights = np.ones(len(sets)) if weights is None else np.asarray(weights, dtype=np.float64)
    informative = [(s, w) for s, w in zip(sets, weights) if s is not None and s.matched.any()]
    if not informative:
        raise InputError("no record has a structure that matches its target: nothing to fit")
    chosen, chosen_weights = [s for s, _ in informative], np.array([w for _, w in informative])
    start = np.zeros(len(FEATURES))
    start[0] = 10.0  # energy alone, 0.1 eV/atom per e-fold
    bounds = [(0.0, None)] * len(FEATURES)
    bounds[FEATURES.index("distance")] = (MIN_DISTANCE_PARAMETER, None)
    result = minimize(_loss_and_gradient, start, args=(chosen, chosen_weights, l2), jac=True, method="L-BFGS-B",
                      bounds=bounds)
    return result.x


def score_from_parameters(parameters: np.ndarray) -> RankingScore:
    """The :class:`RankingScore` that orders structures as θ does (module docstring)."""
    theta = dict(zip(FEATURES, (float(value) for value in parameters)))
    if not theta["energy"] > 0:
        raise InputError("the fit gave the energy no weight: its ranking is not an energy score")
    per_energy = {name: value / theta["energy"] for name, value in theta.items()}
    if not theta["distance"] > 0:
        raise InputError("the distance parameter must be > 0 for free samples' charge to be a distance")
    free_distance = theta["free"] / theta["distance"]
    return RankingScore(per_energy["distance"], free_distance, per_energy["template_e_above_hull"],
                        per_energy["atom_count_misfit"], per_energy["vote_missing"])


def cross_validated_at_1(sets: Sequence[ChoiceSet | None], l2: float, folds: int = 5, seed: int = 0,
                         weights: Sequence[float] | None = None) -> float:
    """Weighted share of records whose first structure matches when each fold is ranked by the
    parameters fitted on the other folds (records split at random with ``seed``); records
    without a usable structure count as misses."""
    if folds < 2 or folds > len(sets):
        raise InputError(f"folds must be between 2 and the number of records ({len(sets)}), got {folds}")
    weights = np.ones(len(sets)) if weights is None else np.asarray(weights, dtype=np.float64)
    order = np.random.default_rng(seed).permutation(len(sets))
    hits = 0.0
    for held in np.array_split(order, folds):
        held_set = set(held.tolist())
        train = [i for i in order if i not in held_set]
        parameters = fit_parameters([sets[i] for i in train], l2, weights[train])
        hits += sum(weights[i] for i in held if sets[i] is not None and sets[i].matched[sets[i].first(parameters)])
    return float(hits / weights.sum())
