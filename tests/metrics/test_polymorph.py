"""METRe and cRMSE: the optimal assignment against brute force, the polymorph cases, real crystals."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from diffcrystal.data.crystal import Crystal
from diffcrystal.errors import InputError
from diffcrystal.metrics import PolymorphMetrics, assign_references, csp_metrics, polymorph_metrics
from diffcrystal.metrics.csp import MATCHER_STOL, compare_with_target

from tests.metrics import _structures as S

STOL = 0.5
EXACT = 1e-12
"""Tolerance on sums of a few RMS values: the optimum and brute force add the same floats."""


def random_rms_matrix(seed: int) -> np.ndarray:
    """A small (references x generated) matrix, RMS uniform in [0, STOL], about half NaN (no match)."""
    rng = np.random.default_rng(seed)
    shape = (rng.integers(1, 5), rng.integers(0, 6))
    rms = rng.uniform(0.0, STOL, size=shape)
    rms[rng.uniform(size=shape) < 0.5] = np.nan
    return rms


def brute_force_one_to_one(rms: np.ndarray) -> tuple[int, float]:
    """(most matched references, smallest summed RMS among assignments with that many), by
    enumerating every assignment: each reference gets a distinct matching column or nothing."""
    n_references, n_generated = rms.shape
    best = (0, 0.0)
    for choice in itertools.product([None, *range(n_generated)], repeat=n_references):
        used = [j for j in choice if j is not None]
        if len(used) != len(set(used)) or any(j is not None and np.isnan(rms[i, j]) for i, j in enumerate(choice)):
            continue
        found = (len(used), sum(rms[i, j] for i, j in enumerate(choice) if j is not None))
        if found[0] > best[0] or (found[0] == best[0] and found[1] < best[1]):
            best = found
    return best


def crmse_of(n_references: int, n_matched: int, rms_sum: float) -> float:
    """cRMSE by its formula: matched RMS plus STOL for each unmatched reference, over all."""
    return (rms_sum + (n_references - n_matched) * STOL) / n_references


@pytest.mark.parametrize("seed", range(300))
def test_optimal_assignment_equals_brute_force(seed):
    rms = random_rms_matrix(seed)
    n_matched, rms_sum = brute_force_one_to_one(rms)
    metrics = PolymorphMetrics.from_rms_matrix(rms, stol=STOL)
    assert metrics.n_matched == n_matched
    assert metrics.metre == pytest.approx(100.0 * n_matched / rms.shape[0], abs=EXACT)
    assert metrics.crmse == pytest.approx(crmse_of(rms.shape[0], n_matched, rms_sum), abs=EXACT)
    used = [j for j in metrics.assigned if j is not None]
    assert len(used) == len(set(used)), "a generated structure served two references"
    for i, (j, value) in enumerate(zip(metrics.assigned, metrics.assigned_rms)):
        assert (j is None) == (value is None)
        if j is not None:
            assert value == rms[i, j]


@pytest.mark.parametrize("seed", range(50))
def test_shared_reading_takes_each_references_best_match(seed):
    rms = random_rms_matrix(seed)
    metrics = PolymorphMetrics.from_rms_matrix(rms, stol=STOL, one_to_one=False)
    best = [min((v for v in row if not np.isnan(v)), default=None) for row in rms]
    assert metrics.n_matched == sum(b is not None for b in best)
    assert metrics.assigned_rms == tuple(best)
    assert metrics.crmse == pytest.approx(np.mean([STOL if b is None else b for b in best]), abs=EXACT)


def test_one_generated_structure_matching_two_polymorphs_counts_once():
    rms = [[0.10], [0.20]]  # two references of one composition, one sample matching both
    metrics = PolymorphMetrics.from_rms_matrix(rms, stol=STOL)
    assert (metrics.n_matched, metrics.metre) == (1, 50.0)
    assert metrics.assigned == (0, None)  # the better pair
    assert metrics.crmse == pytest.approx((0.10 + STOL) / 2, abs=EXACT)
    shared = PolymorphMetrics.from_rms_matrix(rms, stol=STOL, one_to_one=False)
    assert (shared.n_matched, shared.assigned) == (2, (0, 0))
    assert shared.crmse == pytest.approx(0.15, abs=EXACT)


def test_unmatched_reference_counts_stol_in_crmse():
    assert PolymorphMetrics.from_rms_matrix([[np.nan]], stol=STOL).crmse == STOL
    metrics = PolymorphMetrics.from_rms_matrix([[0.2, np.nan], [np.nan, np.nan]], stol=STOL)
    assert (metrics.n_matched, metrics.metre) == (1, 50.0)
    assert metrics.crmse == pytest.approx((0.2 + STOL) / 2, abs=EXACT)
    no_samples = PolymorphMetrics.from_rms_matrix(np.empty((3, 0)), stol=STOL)
    assert (no_samples.n_matched, no_samples.crmse, no_samples.assigned) == (0, STOL, (None, None, None))


def test_more_matches_win_over_a_smaller_rms_sum():
    # Alone, reference 0 with sample 0 has the smallest cRMSE sum (0.0 + 0.5); the assignment
    # matches both references instead (0.49 + 0.49), so METRe never drops for a better RMS.
    rms = [[0.0, 0.49], [0.49, np.nan]]
    assert assign_references(rms, stol=STOL) == (1, 0)
    assert PolymorphMetrics.from_rms_matrix(rms, stol=STOL).crmse == pytest.approx(0.49, abs=EXACT)


@pytest.mark.parametrize(
    ("rms", "stol", "message"),
    [
        ([[0.6]], STOL, r"in \[0, stol=0.5\]"),
        ([[-0.1]], STOL, r"in \[0, stol=0.5\]"),
        ([0.1, 0.2], STOL, "must be 2-D"),
        ([[0.1]], 0.0, "stol must be a positive number"),
        (np.empty((0, 2)), STOL, "no references"),
    ],
)
def test_bad_rms_matrix_is_a_one_line_error(rms, stol, message):
    with pytest.raises(InputError, match=message):
        PolymorphMetrics.from_rms_matrix(rms, stol=stol)


# ---------------------------------------------------------------------------------------- crystals


def cesium_chloride_type_nacl(a: float = 3.3) -> Crystal:
    """NaCl in the CsCl structure (Pm-3m, 2 atoms): a polymorph of rock salt, Na-Cl 2.86 Å."""
    return Crystal(np.eye(3) * a, [[0, 0, 0], [0.5, 0.5, 0.5]], [S.NA, S.CL], label="NaCl-B2")


def run(references, generated, **kwargs):
    return polymorph_metrics(references, generated, workers=1, progress=False, **kwargs)


def test_polymorphs_share_their_samples_with_real_crystals():
    rocksalt, b2 = S.rocksalt(), cesium_chloride_type_nacl()
    assert not compare_with_target(b2, rocksalt).matched, "the two polymorphs must differ for the matcher"
    references = [rocksalt, b2, S.perovskite()]
    # The sampler gave each NaCl entry the *other* polymorph (rotated, permuted, shifted) and
    # failed on SrTiO3.
    generated = [[S.rotated_permuted_shifted(b2, seed=1)], [S.rotated_permuted_shifted(rocksalt, seed=2)], [None]]
    per_index = csp_metrics(generated, references, workers=1, progress=False)
    assert per_index.n_matched_at_1 == 0

    metrics = run(references, generated)
    assert metrics.assigned == (1, 0, None)  # flat indices into the samples
    assert (metrics.n_matched, metrics.metre) == (2, pytest.approx(200.0 / 3))
    assert metrics.crmse == pytest.approx(MATCHER_STOL / 3, abs=1e-6)  # exact copies: RMS ~ 0
    assert (metrics.n_generated, metrics.n_missing, metrics.n_invalid, metrics.n_errors) == (3, 1, 0, 0)


def test_one_sample_serves_one_polymorph_with_real_crystals():
    rocksalt, b2 = S.rocksalt(), cesium_chloride_type_nacl()
    # Both samples are rock salt: the B2 reference stays unmatched, and the overlapping atoms
    # of the second sample make it invalid, so it is never compared.
    generated = [[S.rotated_permuted_shifted(rocksalt, seed=3)], [S.overlapping(rocksalt), S.generic_three()]]
    metrics = run([rocksalt, b2], generated)
    assert metrics.assigned == (0, None)
    assert metrics.crmse == pytest.approx((0.0 + MATCHER_STOL) / 2, abs=1e-6)
    assert (metrics.n_invalid, metrics.n_without_reference) == (1, 1)


def test_bad_sample_lists_are_one_line_errors():
    rocksalt = S.rocksalt()
    with pytest.raises(InputError, match="got 1 sample lists for 2 references"):
        run([rocksalt, rocksalt], [[rocksalt]])
    with pytest.raises(InputError, match="reference 0 has no samples"):
        run([rocksalt], [[]])
    with pytest.raises(InputError, match="no references"):
        run([], [])
