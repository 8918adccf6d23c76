"""``scripts/studies/symmetrized_samples.py``: samples symmetrized by spglib, and the counts of
what that changed, on hand-made displaced perovskites scored with the protocol's matcher."""

from __future__ import annotations

import numpy as np

from diffcrystal.data.crystal import Crystal
from diffcrystal.metrics import csp_metrics
from diffcrystal.metrics.csp import compare_with_target
from tests.metrics import _structures
from tests.script_loading import load_script


def displaced(crystal: Crystal, distance_A: float, seed: int = 1) -> Crystal:
    """Every site moved ``distance_A`` Å in a random direction (cubic cell)."""
    rng = np.random.default_rng(seed)
    moves = rng.normal(size=(crystal.num_atoms, 3))
    moves *= distance_A / np.linalg.norm(moves, axis=1, keepdims=True)
    return Crystal(crystal.lattice, crystal.frac_coords + moves @ np.linalg.inv(crystal.lattice),
                   crystal.atomic_numbers)


def test_a_slightly_displaced_perovskite_snaps_back_exactly_and_p1_stays_as_it_is():
    study = load_script("studies/symmetrized_samples")
    target = _structures.perovskite()
    sample = displaced(target, 0.05)
    assert compare_with_target(sample, target).rms > 0.01
    refined = study.symmetrized_or_raw(sample, 0.2)
    assert refined is not sample
    assert compare_with_target(refined, target).rms < 1e-6
    generic = _structures.generic_three()
    assert study.symmetrized_or_raw(generic, 0.01) is generic
    assert study.symmetrized_or_raw(None, 0.1) is None


def test_row_counts_the_samples_symmetrization_made_precise():
    study = load_script("studies/symmetrized_samples")
    target = _structures.perovskite()
    far, near = displaced(target, 0.3), displaced(target, 0.05, seed=2)
    raw_rms = [compare_with_target(c, target).rms for c in (far, near)]
    assert raw_rms[0] > study.PRECISE_RMSE > raw_rms[1]  # imprecise and precise before
    predictions = [[far, near]]
    raw_metrics = csp_metrics(predictions, [target], workers=1, progress=False)
    assert raw_metrics.sample_rms() == raw_rms

    refined = [[study.symmetrized_or_raw(c, 0.6) for c in predictions[0]]]
    metrics = csp_metrics(refined, [target], workers=1, progress=False)
    refined_rms = [compare_with_target(c, target).rms for c in refined[0]]
    assert refined_rms[0] < study.PRECISE_RMSE  # spglib's group made the far sample precise

    row = study.row_of("symmetrized", metrics, raw_metrics, changed=2, seconds=0.0)
    assert (row["precise_gained"], row["precise_lost"]) == (1, 0)
    assert (row["matched_gained"], row["matched_lost"]) == (0, 0)
    assert row["rms_lower_of_both_matched"] == sum(a < b for a, b in zip(refined_rms, raw_rms)) == 2
    assert row["precise_per_sample_percent"] == 100.0
    assert row["precise_at_1_percent"] == 100.0
