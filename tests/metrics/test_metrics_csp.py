"""CSP metrics on hand-made crystals with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from diffcrystal.data.crystal import Crystal
from diffcrystal.metrics import csp_metrics
from diffcrystal.metrics.csp import MATCHER_ANGLE_TOL_DEG, MATCHER_LTOL, MATCHER_STOL

from tests.metrics import _structures as S


def expected_single_displacement_rms(crystal: Crystal, delta_A: float) -> tuple[float, float]:
    """StructureMatcher's (rms, max_dist) when one of N atoms moves by ``delta_A`` Å.

    The matcher pairs sites on the (here unchanged) lattice, removes the mean displacement
    (best origin shift: d̄ = δ/N), and normalises lengths by (V/N)^(1/3). Residuals: δ(1 - 1/N)
    for the moved atom, δ/N for the N - 1 others, so
    rms = sqrt(((N-1)²/N² + (N-1)/N²) δ² / N) = δ sqrt(N-1) / N, max = δ (N-1)/N.
    """
    n = crystal.num_atoms
    length = (crystal.volume / n) ** (1.0 / 3.0)
    return delta_A * math.sqrt(n - 1) / n / length, delta_A * (n - 1) / n / length


def run(predictions, targets, **kwargs):
    kwargs.setdefault("workers", 1)
    kwargs.setdefault("progress", False)
    return csp_metrics(predictions, targets, **kwargs)


def test_protocol_defaults():
    assert (MATCHER_STOL, MATCHER_ANGLE_TOL_DEG, MATCHER_LTOL) == (0.5, 10.0, 0.3)


@pytest.mark.parametrize("make", [S.perovskite, S.rocksalt, S.generic_three])
def test_matches_itself_after_rotation_permutation_and_shift(make):
    target = make()
    candidates = [S.rotated_permuted_shifted(target, seed) for seed in range(3)]
    result = run([candidates], [target])
    assert result.n_matched_at_1 == 1 and result.n_matched_at_k == 1
    assert all(c.status == "match" for c in result.per_target[0].candidates)
    assert result.rmse_at_k == pytest.approx(0.0, abs=1e-8)


def test_supercell_and_alternative_basis_match():
    target = S.perovskite()
    supercell = target.to_structure()
    supercell.make_supercell([2, 1, 1])
    unimodular = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 1]])  # det 1: same lattice, new basis
    other_basis = Crystal(
        unimodular @ target.lattice,
        target.frac_coords @ np.linalg.inv(unimodular),
        target.atomic_numbers,
    )
    result = run([[Crystal.from_structure(supercell), other_basis]], [target])
    statuses = [c.status for c in result.per_target[0].candidates]
    assert statuses == ["match", "match"]
    assert result.rmse_at_1 == pytest.approx(0.0, abs=1e-8)


def test_rmse_of_a_known_displacement_equals_the_hand_computed_value():
    target = S.generic_three(a=4.0)
    delta = 0.1  # Å
    candidate = S.displaced(target, 1, [delta, 0.0, 0.0])
    expected_rms, expected_max = expected_single_displacement_rms(target, delta)
    # By hand for this cell: N = 3, V = 64 Å³, (V/N)^(1/3) = 2.7734 Å
    assert expected_rms == pytest.approx(0.1 * math.sqrt(2) / 3 / (64 / 3) ** (1 / 3))
    result = run([[candidate]], [target])
    pair = result.per_target[0].candidates[0]
    assert pair.status == "match"
    assert pair.rms == pytest.approx(expected_rms, rel=1e-9)
    assert pair.max_dist == pytest.approx(expected_max, rel=1e-9)
    assert result.rmse_at_1 == pytest.approx(expected_rms, rel=1e-9)


def test_displacement_beyond_site_tolerance_fails():
    target = S.generic_three()
    candidate = S.displaced(target, 1, [0.1, 0.0, 0.0])
    rms, _ = expected_single_displacement_rms(target, 0.1)
    assert run([[candidate]], [target], stol=1.1 * rms).n_matched_at_1 == 1
    assert run([[candidate]], [target], stol=0.9 * rms).n_matched_at_1 == 0


def test_strain_and_large_noise_beyond_tolerance_fail():
    target = S.perovskite()
    rng = np.random.default_rng(2)
    noisy = Crystal(
        target.lattice, target.frac_coords + rng.normal(scale=0.25, size=(5, 3)), target.atomic_numbers
    )
    result = run([[S.strained(target, 1.5), noisy]], [target])
    assert [c.status for c in result.per_target[0].candidates] == ["no_match", "no_match"]
    assert result.n_matched_at_k == 0 and result.rmse_at_k is None and result.match_rate_at_k == 0.0


def test_at_1_and_at_k_counting():
    a, b, c = S.generic_three(), S.perovskite(), S.rocksalt()
    r_a3 = expected_single_displacement_rms(a, 0.15)[0]
    r_b1 = expected_single_displacement_rms(b, 0.20)[0]
    r_b2 = expected_single_displacement_rms(b, 0.05)[0]
    predictions = [
        # a: first candidate matches (rms r_a3), the others do not
        [S.displaced(a, 0, [0.15, 0, 0]), S.strained(a, 1.5), S.strained(a, 1.6)],
        # b: first fails, second and third match; @k takes the lower rms (r_b2)
        [S.strained(b, 1.5), S.displaced(b, 1, [0.20, 0, 0]), S.displaced(b, 1, [0.05, 0, 0])],
        # c: invalid (overlapping atoms), missing, wrong structure: never matched
        [S.overlapping(c), None, S.strained(c, 1.5)],
    ]
    result = run(predictions, [a, b, c])
    assert (result.n_targets, result.k, result.n_candidates) == (3, 3, 9)
    assert result.n_matched_at_1 == 1 and result.n_matched_at_k == 2
    assert result.match_rate_at_1 == pytest.approx(100 / 3)
    assert result.match_rate_at_k == pytest.approx(200 / 3)
    assert result.rmse_at_1 == pytest.approx(r_a3, rel=1e-9)
    assert result.rmse_at_k == pytest.approx((r_a3 + r_b2) / 2, rel=1e-9)
    assert r_b1 > r_b2
    assert result.per_target[1].best_index == 2
    assert (result.n_invalid, result.n_missing, result.n_errors) == (1, 1, 0)
    statuses = [p.status for p in result.per_target[2].candidates]
    assert statuses == ["invalid", "missing", "no_match"]
    assert "apart" in result.per_target[2].candidates[0].reason


def test_invalid_prediction_is_a_non_match_even_if_it_would_match():
    target = S.rocksalt()
    result = run([[S.overlapping(target)]], [target])
    assert result.per_target[0].candidates[0].status == "invalid"
    assert result.n_matched_at_1 == 0


def test_matcher_exception_is_recorded_not_raised(monkeypatch):
    from pymatgen.analysis.structure_matcher import StructureMatcher

    def broken(self, s1, s2):
        raise RuntimeError("boom")

    monkeypatch.setattr(StructureMatcher, "get_rms_dist", broken)
    target = S.perovskite()
    result = run([[target, target]], [target])
    assert result.n_errors == 2 and result.n_matched_at_k == 0
    assert "boom" in result.per_target[0].candidates[0].reason


def test_input_checks():
    target = S.perovskite()
    with pytest.raises(ValueError, match="prediction lists"):
        run([[target]], [target, target])
    with pytest.raises(ValueError, match="k=2"):
        run([[target, target], [target]], [target, target])
    with pytest.raises(ValueError, match="no targets"):
        run([], [])


def test_parallel_workers_give_the_same_answer():
    a, b = S.generic_three(), S.perovskite()
    predictions = [[S.displaced(a, 0, [0.1, 0, 0]), a], [S.strained(b, 1.5), S.rotated_permuted_shifted(b, 4)]]
    serial = run(predictions, [a, b], workers=1)
    parallel = run(predictions, [a, b], workers=2)
    assert serial.summary() == parallel.summary()
    assert serial.n_matched_at_1 == 1 and serial.n_matched_at_k == 2


@pytest.mark.slow  # ~7 s: each spawned worker re-imports pymatgen
def test_spawned_workers_work_too():
    a = S.generic_three()
    result = run([[a], [S.strained(a, 1.5)]], [a, a], workers=2, start_method="spawn")
    assert result.n_matched_at_1 == 1 and result.n_targets == 2


def displaced_to_rms(target: Crystal, rms: float) -> Crystal:
    """``target`` with atom 0 moved along x so that the matcher's RMS is ``rms`` (inverting
    :func:`expected_single_displacement_rms`)."""
    n = target.num_atoms
    length = (target.volume / n) ** (1.0 / 3.0)
    return S.displaced(target, 0, [rms * n * length / math.sqrt(n - 1), 0.0, 0.0])


def test_precise_share_counts_targets_below_each_threshold_at_1_and_at_k():
    targets = [S.generic_three(a=a) for a in (4.0, 4.1, 4.2, 4.3)]
    rms = [[0.03, 0.2], [0.07, 0.04], [0.2, 0.09], [0.12, 0.15]]  # per target, first and second candidate
    predictions = [[displaced_to_rms(t, r) for r in rs] for t, rs in zip(targets, rms)]
    result = run(predictions, targets)
    assert [c.rms for t in result.per_target for c in t.candidates] == pytest.approx(sum(rms, []), rel=1e-6)
    # @1 uses [0.03, 0.07, 0.2, 0.12]; @k the best of each pair: [0.03, 0.04, 0.09, 0.12]
    assert (result.n_precise("1", 0.1), result.n_precise("1", 0.05)) == (2, 1)
    assert (result.n_precise("k", 0.1), result.n_precise("k", 0.05)) == (3, 2)
    summary = result.summary()
    assert summary["n_rmse_below_0.1_at_1"] == 2 and summary["rmse_below_0.1_at_1_percent"] == 50.0
    assert summary["n_rmse_below_0.05_at_k"] == 2 and summary["rmse_below_0.05_at_k_percent"] == 50.0
    rows = {name: (value, counts) for name, value, counts in result.table_rows()}
    assert rows["RMSE < 0.1 @1"] == ("50.00 %", "2 / 4 targets")
    assert rows["RMSE < 0.05 @2"] == ("50.00 %", "2 / 4 targets")
    assert rows["RMSE < 0.1 @2"] == ("75.00 %", "3 / 4 targets")


def test_diversity_counts_distinct_samples_per_target():
    a, nacl = S.perovskite(), S.rocksalt()
    cscl_type = Crystal(np.eye(3) * 3.3, [[0, 0, 0], [0.5, 0.5, 0.5]], [S.NA, S.CL])
    layered = Crystal(np.diag([3.0, 3.0, 9.0]), [[0, 0, 0], [0, 0, 0.5]], [S.NA, S.CL])
    predictions = [
        # the same crystal twice (moved), a strained one and a missing one: 2 distinct of 4
        [a, S.rotated_permuted_shifted(a, 1), S.strained(a, 1.5), None],
        # rock salt twice (moved), CsCl type, a tetragonal layered cell: 3 distinct of 4
        [nacl, cscl_type, layered, S.rotated_permuted_shifted(nacl, 2)],
        [None, None, None, None],  # no sample at all: left out of the mean, counted
    ]
    result = run(predictions, [a, nacl, nacl], measure_diversity=True)
    diversity = result.diversity
    assert diversity.distinct == (2, 3, None)
    assert diversity.mean_distinct == 2.5 and diversity.mean_distinct_per_k == 0.625
    summary = result.summary()
    assert summary["diversity_n_targets"] == 2 and summary["diversity_n_targets_without_samples"] == 1
    assert ("distinct samples @4", "0.625 of k", "mean 2.50 distinct of 4, over 2 targets") in result.table_rows()
    assert result.to_dict()["diversity_per_target"] == [2, 3, None]
    assert run([[a]], [a], measure_diversity=True).diversity is None  # k = 1: nothing to compare
    assert run(predictions, [a, nacl, nacl]).diversity is None  # not asked for


def test_diversity_grouping_error_is_counted_not_raised(monkeypatch):
    from pymatgen.analysis.structure_matcher import StructureMatcher

    def broken(self, structures, anonymous=False):
        raise RuntimeError("boom")

    monkeypatch.setattr(StructureMatcher, "group_structures", broken)
    a = S.perovskite()
    result = run([[a, a]], [a], measure_diversity=True)
    assert result.diversity.n_errors == 1 and result.diversity.mean_distinct is None
    assert "1 grouping errors" in result.diversity.table_rows()[0][2]


def test_chunks_merge_to_the_metrics_of_one_run():
    """Scoring a test set in chunks and merging gives what scoring it at once gives, including
    the precise shares, the RMSEs and the diversity; a metrics.json round-trips through from_dict."""
    from diffcrystal.metrics import CSPMetrics, merge_csp_metrics

    a, nacl = S.perovskite(), S.rocksalt()
    targets = [S.generic_three(a=4.0), a, nacl, S.generic_three(a=4.3)]
    predictions = [
        [displaced_to_rms(targets[0], 0.03), displaced_to_rms(targets[0], 0.2)],
        [S.strained(a, 1.5), S.rotated_permuted_shifted(a, 1)],
        [None, nacl],
        [displaced_to_rms(targets[3], 0.12), displaced_to_rms(targets[3], 0.07)],
    ]
    whole = run(predictions, targets, measure_diversity=True)
    chunks = [run(predictions[:1], targets[:1], measure_diversity=True),
              run(predictions[1:], targets[1:], measure_diversity=True)]
    merged = merge_csp_metrics(chunks)
    assert merged.summary() == whole.summary()
    assert merged.to_dict() == whole.to_dict()
    assert CSPMetrics.from_dict(whole.to_dict()).to_dict() == whole.to_dict()
    with pytest.raises(ValueError, match="cannot merge k=1"):
        merge_csp_metrics([whole, run([[a]], [a])])
    assert merge_csp_metrics([whole, run(predictions, targets)]).diversity is None  # one part without it


def test_per_sample_rates_count_every_candidate():
    """Two targets, two candidates each: 3 of 4 match, 2 of them below 0.1; @1 only t1 matches
    (0.05, precise); @k both targets match, one of them precisely (t2's only match is 0.3)."""
    from diffcrystal.metrics.csp import CSPMetrics, PairResult, TargetResult

    per_target = [
        TargetResult("t1", (PairResult("match", rms=0.05), PairResult("match", rms=0.08))),
        TargetResult("t2", (PairResult("no_match"), PairResult("match", rms=0.3))),
    ]
    metrics = CSPMetrics.from_results(per_target, stol=MATCHER_STOL, angle_tol=MATCHER_ANGLE_TOL_DEG, ltol=MATCHER_LTOL)
    assert metrics.per_sample_rates() == {
        "n_samples": 4, "match_per_sample_percent": 75.0, "precise_per_sample_percent": 50.0,
        "match_at_1_percent": 50.0, "precise_at_1_percent": 50.0, "match_at_k_percent": 100.0, "precise_at_k_percent": 50.0, "n_invalid": 0}
    assert metrics.per_sample_rates(0.06)["precise_per_sample_percent"] == 25.0


def test_changes_from_counts_each_candidate_against_its_own_earlier_self():
    """Hand-written before/after RMS of three targets × two candidates, every kind of change once:
    precise gained (0.3 -> 0.05) and lost (0.05 -> 0.2), matched gained (none -> 0.5) and lost
    (0.08 -> none), one unmatched both times, one precise both times that came nearer."""
    from diffcrystal.metrics.csp import CSPMetrics, PairResult, TargetResult

    def metrics_of(rms_rows):
        per_target = [TargetResult(f"t{i}", tuple(PairResult("no_match") if r is None else PairResult("match", rms=r)
                                                  for r in row)) for i, row in enumerate(rms_rows)]
        return CSPMetrics.from_results(per_target, stol=MATCHER_STOL, angle_tol=MATCHER_ANGLE_TOL_DEG, ltol=MATCHER_LTOL)

    before = metrics_of([(0.3, 0.05), (None, 0.08), (None, 0.09)])
    after = metrics_of([(0.05, 0.2), (0.5, None), (None, 0.01)])
    assert after.sample_rms() == [0.05, 0.2, 0.5, None, None, 0.01]
    assert after.changes_from(before) == {
        "precise_gained": 1, "precise_lost": 2, "matched_gained": 1, "matched_lost": 1,
        "rms_lower_of_both_matched": 2, "rms_higher_of_both_matched": 1}
    assert after.changes_from(before, threshold=0.25)["precise_gained"] == 1  # 0.3 -> 0.05 only
    with pytest.raises(ValueError, match="candidates differ"):
        after.changes_from(metrics_of([(0.3, 0.05)]))
    from diffcrystal.metrics.csp import CHANGE_COLUMNS, change_cells

    assert change_cells(after.changes_from(before)) == "1 / 2 | 1 / 1 | 2 / 1"
    assert change_cells({"variant": "raw"}) == "– | – | –"
    assert CHANGE_COLUMNS.count("|") == 2
