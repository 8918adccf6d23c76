"""Maximum-likelihood fit of the ranking score (diffcrystal.ranking_fit) against independent
computations: finite differences, data drawn from a known conditional logit, brute-force
orderings through RankingScore."""

import math

import numpy as np
import pytest

from diffcrystal.errors import InputError
from diffcrystal.ranked_evaluation import rescored_results
from diffcrystal.ranking_fit import (FEATURES, ChoiceSet, _loss_and_gradient, choice_sets, cross_validated_at_1,
                                     fit_parameters, score_from_parameters)


def entry(label, energy, distance, *, matched=False, converged=True, stability=0.0, atoms=4, vote=1.0):
    return {"label": label, "energy_per_atom": energy, "analogue_distance": distance, "converged": converged,
            "template_e_above_hull": stability, "num_atoms": atoms, "type_vote": vote,
            "status": "match" if matched else "no_match", "rms": 0.05 if matched else None}


def random_sets(rng, theta, n_sets):
    """Choice sets whose matched structure is drawn from the conditional logit with ``theta``."""
    sets = []
    for _ in range(n_sets):
        n = rng.integers(2, 7)
        features = np.column_stack([rng.uniform(0, 0.1, n), rng.uniform(0, 4, n), rng.integers(0, 2, n),
                                    rng.uniform(0, 0.05, n), rng.integers(0, 2, n), rng.uniform(0, 1, n)])
        logits = -(features @ theta)
        p = np.exp(logits - logits.max())
        p /= p.sum()
        matched = np.zeros(n, dtype=bool)
        matched[rng.choice(n, p=p)] = True
        sets.append(ChoiceSet(features, matched))
    return sets


def test_gradient_matches_central_differences_in_float64():
    rng = np.random.default_rng(0)
    sets = random_sets(rng, np.array([30.0, 0.5, 1.0, 5.0, 2.0, 1.5]), 20)
    sets[0].matched[:] = True  # several matched structures in one set
    weights = rng.uniform(0.5, 2.0, len(sets))
    theta = rng.uniform(0.1, 3.0, len(FEATURES))
    _, gradient = _loss_and_gradient(theta, sets, weights, 0.1)
    h = 1e-6
    for k in range(len(FEATURES)):
        step = np.zeros(len(FEATURES))
        step[k] = h
        numeric = (_loss_and_gradient(theta + step, sets, weights, 0.1)[0]
                   - _loss_and_gradient(theta - step, sets, weights, 0.1)[0]) / (2 * h)
        assert gradient[k] == pytest.approx(numeric, rel=1e-5, abs=1e-7)


def test_the_fit_recovers_the_parameters_that_generated_the_choices():
    true_theta = np.array([40.0, 0.8, 1.5, 10.0, 2.0, 2.5])
    sets = random_sets(np.random.default_rng(1), true_theta, 4000)
    fitted = fit_parameters(sets, l2=0.0)
    assert fitted == pytest.approx(true_theta, rel=0.2)


def test_the_score_ranks_every_record_as_the_parameters_do():
    rng = np.random.default_rng(2)
    theta = np.array([25.0, 0.7, 2.1, 4.0, 3.0, 1.2])
    score = score_from_parameters(theta)
    for trial in range(50):
        given = 8
        entries = []
        for i in range(rng.integers(2, 6)):
            free = rng.random() < 0.3
            entries.append(entry(f"c{i}", -4.0 + rng.uniform(0, 0.1), None if free else float(rng.uniform(0, 5)),
                                 stability=float(rng.uniform(-0.01, 0.05)), atoms=int(rng.choice([4, 8, 6])),
                                 vote=float(rng.uniform(0, 1)), matched=i == 0))
        record = {"label": f"t{trial}", "given_atoms": given, "ranked": entries}
        (choice,) = choice_sets([record])
        by_theta = entries[choice.first(theta)]["label"]
        first = sorted(entries, key=lambda e: score(e["energy_per_atom"],
                                                   math.nan if e["analogue_distance"] is None else e["analogue_distance"],
                                                   e["template_e_above_hull"], given % e["num_atoms"] == 0,
                                                   e["type_vote"]))[0]["label"]
        assert first == by_theta
        assert rescored_results([record], score, 1)[0].candidates[0].matched == (by_theta == "c0")


def test_choice_sets_keep_converged_plausible_structures():
    record = {"label": "t", "given_atoms": None, "ranked": [
        entry("hole", -2.4e7, 1.0, matched=True), entry("a", -4.0, 1.0), entry("b", -3.9, None, matched=True),
        entry("slow", -4.5, 0.5, converged=False)]}
    (choice,) = choice_sets([record])
    assert choice.matched.tolist() == [False, True]
    assert choice.features[:, 0] == pytest.approx([0.0, 0.1])  # energy above the set's lowest
    assert choice.features[1, FEATURES.index("free")] == 1.0
    unconverged = {"label": "u", "given_atoms": None, "ranked": [entry("slow", -4.5, 0.5, converged=False)]}
    assert choice_sets([unconverged])[0].features.shape == (1, len(FEATURES))
    assert choice_sets([{"label": "v", "given_atoms": None, "ranked": [entry("nan", math.nan, 1.0)]}]) == [None]


def test_cross_validation_scores_held_out_records_only():
    # Energy alone decides: every fold's fit must put the lowest structure first.
    rng = np.random.default_rng(3)
    sets = []
    for _ in range(30):
        features = np.column_stack([rng.permutation([0.0, 0.05, 0.1]), np.zeros((3, 5))])
        sets.append(ChoiceSet(features, features[:, 0] == 0.0))
    assert cross_validated_at_1(sets, l2=0.01) == 1.0
    # Records nothing matches count as misses.
    none = ChoiceSet(np.zeros((2, len(FEATURES))), [False, False])
    assert cross_validated_at_1(sets + [none] * 10 + [None] * 5, l2=0.01) == pytest.approx(30 / 45)
    with pytest.raises(InputError, match="folds"):
        cross_validated_at_1(sets, l2=0.01, folds=1)


def test_a_fit_without_any_matched_record_is_an_error():
    with pytest.raises(InputError, match="nothing to fit"):
        fit_parameters([ChoiceSet(np.zeros((2, len(FEATURES))), [False, False]), None], l2=0.1)


def test_the_default_weights_are_the_fit_on_the_committed_validation_records():
    from pathlib import Path

    from diffcrystal.ranked_evaluation import read_records
    from diffcrystal.ranking import RankingScore

    records = read_records(Path(__file__).resolve().parents[2] / "benchmarks" / "ranked_calibration_atoms_mp20_val"
                           / "records.jsonl.gz")
    assert len(records) == 158
    fitted = score_from_parameters(fit_parameters(choice_sets(records), l2=0.03))
    default = RankingScore()
    for name in ("distance_weight", "free_distance", "stability_weight", "atom_count_weight", "vote_weight"):
        assert getattr(default, name) == pytest.approx(getattr(fitted, name), rel=0.03), name  # two digits
