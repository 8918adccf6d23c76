"""De novo metrics: validity, SMACT rule, coverage, Wasserstein distances, cutoff table."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from diffcrystal.data.crystal import Crystal
from diffcrystal.metrics import (
    COVERAGE_CUTOFFS,
    coverage,
    cutoffs_for,
    denovo_metrics,
    smact_validity,
    wasserstein,
)
from diffcrystal.metrics.fingerprints import Fingerprints, standardize_composition_fingerprints
from diffcrystal.symmetry import structural_validity

from tests.metrics import _structures as S


# ----------------------------------------------------------------------------- validity


def test_overlapping_atoms_are_structurally_invalid():
    assert structural_validity(S.rocksalt()).valid
    assert not structural_validity(S.overlapping(S.rocksalt())).valid


@pytest.mark.parametrize(
    "formula_numbers, valid",
    [
        ([11, 17], True),  # NaCl: Na+ Cl-
        ([11, 17, 17], False),  # NaCl2: no neutral assignment
        ([38, 22, 8, 8, 8], True),  # SrTiO3
        ([6] * 24, True),  # single element (carbon)
        ([29, 30], True),  # CuZn: all metals, an alloy
        ([26, 26, 8, 8, 8], True),  # Fe2O3
        ([11, 18], False),  # Na + Ar: argon has no SMACT oxidation state
    ],
)
def test_smact_validity(formula_numbers, valid):
    assert smact_validity(formula_numbers) is valid


def test_smact_uses_the_reduced_composition():
    # Na4Cl4 reduces to NaCl; Na2Cl4 to NaCl2
    assert smact_validity([11] * 4 + [17] * 4)
    assert not smact_validity([11] * 2 + [17] * 4)


def test_neutral_assignments_equal_the_brute_force_product():
    """The pruned walk yields exactly the charge-neutral tuples of itertools.product, in its
    order, for 400 random compositions of 1-5 elements with real SMACT state lists."""
    import itertools

    from diffcrystal.charge_neutrality import _smact_element, neutral_assignments

    rng = np.random.default_rng(0)
    lists = [_smact_element(z)[1] for z in range(1, 84)]
    lists = [states for states in lists if states]
    for _ in range(400):
        m = int(rng.integers(1, 6))
        states = [lists[i] for i in rng.choice(len(lists), size=m, replace=False)]
        counts = [int(c) for c in rng.integers(1, 9, size=m)]
        brute = [q for q in itertools.product(*states) if sum(a * n for a, n in zip(q, counts)) == 0]
        assert list(neutral_assignments(states, counts)) == brute, (states, counts)


def test_smact_validity_of_a_six_element_composition_matches_the_brute_force():
    """Ba2 Y Cu3 O7 with three more elements: the product of their state lists is ~10^6, the
    neutral choices few; the answer matches the brute force."""
    import itertools

    from diffcrystal.charge_neutrality import _electronegativity_ok, _smact_element

    numbers = [56, 56, 39, 29, 29, 29, 8, 8, 8, 8, 8, 8, 8, 25, 24, 23]
    elements, counts = np.unique(numbers, return_counts=True)
    info = [_smact_element(int(z)) for z in elements]
    brute = any(
        sum(q * int(n) for q, n in zip(ox, counts)) == 0 and _electronegativity_ok(ox, [i[2] for i in info])
        for ox in itertools.product(*(i[1] for i in info))
    )
    assert smact_validity(numbers) is brute


def test_electronegativity_test_rejects_reversed_ions():
    from diffcrystal.charge_neutrality import _electronegativity_ok

    # cation (+1) more electronegative than anion (-1): rejected
    assert not _electronegativity_ok([1, -1], [3.0, 1.0])
    assert _electronegativity_ok([1, -1], [1.0, 3.0])
    # missing data on an opposite-sign pair: CDVAE treats it as passing
    assert _electronegativity_ok([1, -1], [None, 3.0])


# ----------------------------------------------------------------------------- coverage


def test_coverage_of_identical_sets_is_100_percent():
    rng = np.random.default_rng(0)
    s, c = rng.normal(size=(6, 4)), rng.normal(size=(6, 5)) * 10
    result = coverage(s, c, s, c, struct_cutoff=0.2, comp_cutoff=4.0)
    assert result.cov_recall == 100.0 and result.cov_precision == 100.0
    assert (result.n_recalled, result.n_test, result.n_precise, result.n_generated) == (6, 6, 6, 6)
    assert result.amsd_recall == 0.0 and result.amcd_precision == 0.0


def test_coverage_of_far_disjoint_sets_is_0_percent():
    s, c = np.zeros((3, 4)), np.zeros((3, 5))
    result = coverage(s + 100, c + 100, s, c, struct_cutoff=0.2, comp_cutoff=4.0)
    assert result.cov_recall == 0.0 and result.cov_precision == 0.0
    assert result.n_recalled == 0 and result.n_precise == 0


def test_coverage_counts_on_a_hand_made_case():
    # 1-D structure fingerprints, composition fingerprints all equal (always within cutoff)
    gen = np.array([[0.0], [10.0]])
    test = np.array([[0.1], [0.3], [20.0]])
    zeros_g, zeros_t = np.zeros((2, 1)), np.zeros((3, 1))
    result = coverage(gen, zeros_g, test, zeros_t, struct_cutoff=0.2, comp_cutoff=4.0, n_generated=4)
    # recall: test 0.1 (nearest 0.0 at 0.1) yes; 0.3 (0.3 away) no; 20 no -> 1 / 3
    assert (result.n_recalled, result.n_test) == (1, 3)
    # precision: gen 0.0 (nearest 0.1) yes; gen 10 no; 2 unfingerprinted count as no -> 1 / 4
    assert (result.n_precise, result.n_generated, result.n_generated_fingerprinted) == (1, 4, 2)
    assert result.cov_recall == pytest.approx(100 / 3) and result.cov_precision == 25.0
    assert result.amsd_recall == pytest.approx((0.1 + 0.3 + 10.0) / 3)
    # the composition cutoff also gates: push composition far away
    far = coverage(gen, zeros_g, test, zeros_t + 5.0, struct_cutoff=0.2, comp_cutoff=4.0)
    assert far.n_recalled == 0 and far.n_precise == 0


def test_cutoff_table_matches_cdvae():
    assert cutoffs_for("perov_5") == COVERAGE_CUTOFFS["perov_5"]
    assert (COVERAGE_CUTOFFS["perov_5"].structure, COVERAGE_CUTOFFS["perov_5"].composition) == (0.2, 4.0)
    assert (COVERAGE_CUTOFFS["carbon_24"].structure, COVERAGE_CUTOFFS["carbon_24"].composition) == (0.2, 4.0)
    assert (COVERAGE_CUTOFFS["mp_20"].structure, COVERAGE_CUTOFFS["mp_20"].composition) == (0.4, 10.0)
    with pytest.raises(ValueError, match="carbon_24, mp_20, perov_5"):
        cutoffs_for("mpts_52")


def test_composition_standardisation_replaces_nan_by_zero():
    from diffcrystal.metrics._cdvae_scaler import COMP_FP_MEANS, COMP_FP_STDS

    raw = np.array([COMP_FP_MEANS, np.array(COMP_FP_MEANS) + np.array(COMP_FP_STDS)])
    raw[0, 5] = np.nan
    scaled = standardize_composition_fingerprints(raw)
    assert scaled.shape == (2, 132)
    assert np.allclose(scaled[0], 0.0) and np.allclose(scaled[1], 1.0)


# ----------------------------------------------------------------------------- Wasserstein


def test_wasserstein_against_scipy_and_by_hand():
    a, b = [0.0, 1.0, 3.0], [5.0, 6.0, 8.0]
    assert wasserstein(a, b) == pytest.approx(5.0)  # a shifted by 5
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=50), rng.gamma(2.0, size=37)
    assert wasserstein(x, y) == pytest.approx(wasserstein_distance(x, y))
    assert wasserstein([], [1.0]) is None


# ----------------------------------------------------------------------------- end to end


def _two_salts():
    nacl = S.rocksalt()
    kcl = Crystal(np.eye(3) * 6.29, nacl.frac_coords, [S.K] * 4 + [S.CL] * 4, label="KCl")
    return nacl, kcl


def test_denovo_validity_and_property_distances_without_coverage():
    nacl, kcl = _two_salts()
    nacl2 = Crystal(np.eye(3) * 5.0, [[0, 0, 0], [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]], [11, 17, 17])
    generated = [nacl, S.overlapping(nacl), None, nacl2]
    result = denovo_metrics(generated, [nacl, kcl], compute_coverage=False, workers=1, progress=False)
    assert (result.n_generated, result.n_struct_valid, result.n_comp_valid, result.n_valid) == (4, 2, 2, 1)
    assert [r.valid for r in result.per_structure] == [True, False, False, False]
    assert result.validity == 25.0 and result.struct_validity == 50.0
    # rock-salt NaCl: 4 formula units of 58.44 g/mol in (5.64 Å)³
    rho_nacl = 4 * (22.98977 + 35.453) / 6.02214076e23 / (5.64e-8) ** 3
    assert result.per_structure[0].density_g_cm3 == pytest.approx(rho_nacl, rel=1e-3)
    densities_test = [rho_nacl, 4 * (39.0983 + 35.453) / 6.02214076e23 / (6.29e-8) ** 3]
    assert result.wdist_density == pytest.approx(wasserstein_distance([rho_nacl], densities_test), rel=1e-3)
    assert result.wdist_num_elems == 0.0
    assert (result.n_property_generated, result.n_property_test) == (1, 2)
    assert result.coverage is None


def test_denovo_needs_cutoffs_for_coverage():
    nacl, _ = _two_salts()
    with pytest.raises(ValueError, match="coverage needs cutoffs"):
        denovo_metrics([nacl], [nacl], workers=1, progress=False)


def test_denovo_coverage_with_real_fingerprints():
    pytest.importorskip("matminer")
    nacl, kcl = _two_salts()
    test = [nacl, kcl, S.perovskite()]
    same = denovo_metrics(test, test, dataset="perov_5", workers=1, progress=False)
    assert same.coverage.cov_recall == 100.0 and same.coverage.cov_precision == 100.0
    assert same.n_fingerprint_failed == 0
    # a missing sample: no fingerprint, still in the COV-P denominator
    partial = denovo_metrics([nacl, None], test, dataset="perov_5", workers=1, progress=False)
    cov = partial.coverage
    assert (cov.n_recalled, cov.n_test) == (1, 3)
    assert (cov.n_precise, cov.n_generated, cov.n_generated_fingerprinted) == (1, 2, 1)
    assert partial.n_fingerprint_failed == 1


def test_fingerprint_cache_is_keyed_on_content_and_survives_a_corrupt_file(tmp_path):
    pytest.importorskip("matminer")
    from diffcrystal.metrics import compute_fingerprints
    from diffcrystal.metrics.fingerprints import cached_fingerprints

    nacl, kcl = _two_salts()
    calls = []

    def compute(crystals):
        calls.append(len(crystals))
        return compute_fingerprints(crystals, workers=1, progress=False)

    first = cached_fingerprints([nacl, kcl], tmp_path, compute)
    again = cached_fingerprints([nacl, kcl], tmp_path, compute)
    assert calls == [2]  # the second call read the cache
    np.testing.assert_array_equal(first.structure, again.structure)
    np.testing.assert_array_equal(first.composition, again.composition)
    (entry,) = tmp_path.glob("fingerprints-*.npz")

    cached_fingerprints([kcl, nacl], tmp_path, compute)  # other order: other content, other key
    assert calls == [2, 2] and len(list(tmp_path.glob("fingerprints-*.npz"))) == 2

    entry.write_bytes(b"not a zip file")
    with pytest.warns(UserWarning, match="unreadable fingerprint cache"):
        recomputed = cached_fingerprints([nacl, kcl], tmp_path, compute)
    assert calls == [2, 2, 2]
    np.testing.assert_array_equal(recomputed.structure, first.structure)
    assert Fingerprints.load(entry).ok.all()  # rewritten whole


def test_uniqueness_and_novelty_against_pairwise_matching():
    """Rock-salt NaCl twice (one strained 2 %), CsCl-type NaCl and rock-salt KCl against a
    training set holding rock-salt NaCl: 3 distinct, 2 novel, both novel ones distinct; the
    same counts as an all-pairs StructureMatcher reference."""
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.core import Lattice, Structure

    from diffcrystal.metrics.novelty import uniqueness_and_novelty

    def fcc(a, species):
        return Structure(Lattice.from_parameters(a / 2**0.5, a / 2**0.5, a / 2**0.5, 60, 60, 60),
                         species, [[0, 0, 0], [0.5, 0.5, 0.5]])

    cscl = Structure(Lattice.cubic(3.3), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    generated = [fcc(5.64, ["Na", "Cl"]), fcc(5.75, ["Na", "Cl"]), cscl, fcc(6.29, ["K", "Cl"])]
    train = [fcc(5.60, ["Na", "Cl"])]
    result = uniqueness_and_novelty([Crystal.from_structure(s) for s in generated],
                                    [Crystal.from_structure(s) for s in train])

    matcher = StructureMatcher()
    novel = [not any(matcher.fit(g, t) for t in train) for g in generated]
    first = [not any(matcher.fit(g, h) for h in generated[:i]) for i, g in enumerate(generated)]
    assert (result.n_considered, result.n_unique, result.n_novel, result.n_unique_and_novel) == (
        4, sum(first), sum(novel), sum(f and n for f, n in zip(first, novel))) == (4, 3, 2, 2)
    assert result.to_dict()["unique_percent"] == 75.0
