"""The trivial CSP baselines, checked against independent computations."""

from __future__ import annotations

import numpy as np
import pytest

from diffcrystal.baselines import TrainingGeometries, baseline_predictions, perovskite_prototype
from diffcrystal.data.crystal import Crystal
from diffcrystal.errors import InputError
from diffcrystal.metrics import csp_metrics

from tests.metrics import _structures as S


def score(predictions, targets):
    return csp_metrics(predictions, targets, workers=1, progress=False)


def sr_at_origin(candidate: Crystal) -> bool:
    """Independent check of where Sr landed: the atom at fractional (0, 0, 0) is Sr."""
    at_origin = np.all(np.isclose(candidate.frac_coords, 0.0), axis=1)
    return candidate.atomic_numbers[at_origin].tolist() == [S.SR]


def test_prototype_of_srtio3_matches_real_srtio3_exactly_when_sr_takes_the_a_site():
    target = S.rotated_permuted_shifted(S.perovskite(a=3.905), seed=5)  # real cubic SrTiO3, atoms shuffled
    training = TrainingGeometries.from_crystals([S.perovskite(a=4.0)])
    (candidates,) = baseline_predictions("prototype", [target], 12, training, seed=0)
    expected = [sr_at_origin(c) for c in candidates]
    assert 0 < sum(expected) < len(expected)  # both placements occur over 12 draws
    for candidate in candidates:  # O always on the X sites (the 3 most electronegative atoms)
        x_sites = np.isclose(candidate.frac_coords, 0.5).sum(axis=1) == 2
        assert candidate.atomic_numbers[x_sites].tolist() == [S.O] * 3
    result = score([candidates], [target])
    pairs = result.per_target[0].candidates
    assert [p.matched for p in pairs] == expected
    assert all(p.rms < 1e-8 for p in pairs if p.matched)


def test_prototype_lattice_constant_is_the_training_median_for_that_atom_count():
    training = TrainingGeometries.from_crystals(
        [S.perovskite(a=3.8), S.perovskite(a=4.0), S.perovskite(a=4.3), S.rocksalt(a=5.64)]
    )
    assert training.median_volume_per_atom(5) == pytest.approx(4.0**3 / 5)
    assert training.median_volume_per_atom(8) == pytest.approx(5.64**3 / 8)
    (candidate,) = baseline_predictions("prototype", [S.perovskite(a=3.905)], 1, training, seed=0)[0]
    np.testing.assert_allclose(candidate.lattice, np.eye(3) * 4.0)
    # no training structure with 10 atoms: the median of all four structures' volume per atom
    everything = np.median([3.8**3 / 5, 4.0**3 / 5, 4.3**3 / 5, 5.64**3 / 8])
    assert training.median_volume_per_atom(10) == pytest.approx(everything)


def test_prototype_of_two_formula_units_is_a_supercell_that_matches_when_species_land_right():
    target = S.perovskite()
    supercell = target.to_structure()
    supercell.make_supercell([1, 2, 1])
    target2 = Crystal.from_structure(supercell)
    rng = np.random.default_rng(0)
    candidates = [perovskite_prototype(target2, 0, 3.905**3 / 5, rng) for _ in range(16)]
    assert all(sorted(c.atomic_numbers.tolist()) == sorted(target2.atomic_numbers.tolist()) for c in candidates)
    np.testing.assert_allclose(candidates[0].lattice, np.diag([2 * 3.905, 3.905, 3.905]))
    # independent check: matched exactly when both corner sites (x = 0 and x = 1/2) hold Sr
    def both_corners_sr(c: Crystal) -> bool:
        corners = np.isclose(c.frac_coords[:, 1], 0) & np.isclose(c.frac_coords[:, 2], 0)
        return c.atomic_numbers[corners].tolist() == [S.SR, S.SR]

    expected = [both_corners_sr(c) for c in candidates]
    assert 0 < sum(expected) < len(expected)
    pairs = score([candidates], [target2]).per_target[0].candidates
    assert [p.matched for p in pairs] == expected


@pytest.mark.parametrize("make", [S.rocksalt, S.generic_three])
def test_prototype_refuses_a_composition_that_is_not_abx3(make):
    training = TrainingGeometries.from_crystals([S.perovskite()])
    with pytest.raises(InputError, match="ABX3") as error:
        baseline_predictions("prototype", [S.perovskite(), make()], 1, training, seed=0)
    assert "target 1" in str(error.value) and "\n" not in str(error.value)


def test_train_baseline_reproduces_a_target_that_is_a_training_structure():
    target = S.generic_three()
    training = TrainingGeometries.from_crystals([S.rocksalt(), target])  # only one 3-atom structure
    predictions = baseline_predictions("train", [target], 1, training, seed=3)
    (candidate,) = predictions[0]
    np.testing.assert_array_equal(candidate.lattice, target.lattice)
    np.testing.assert_array_equal(candidate.frac_coords, target.frac_coords)
    result = score(predictions, [target])
    assert result.n_matched_at_1 == 1 and result.rmse_at_1 == pytest.approx(0.0, abs=1e-8)


def test_train_baseline_carries_the_target_species_in_file_order_on_a_training_geometry():
    geometry_a, geometry_b = S.generic_three(a=4.0), S.displaced(S.generic_three(a=4.4), 0, [0.3, 0, 0])
    training = TrainingGeometries.from_crystals([geometry_a, geometry_b])
    target = Crystal(np.eye(3) * 5.0, np.random.default_rng(1).uniform(size=(3, 3)), [S.K, S.NA, S.CL])
    candidates = baseline_predictions("train", [target], 6, training, seed=0)[0]
    sources = [geometry_a, geometry_b]
    for candidate in candidates:
        assert candidate.atomic_numbers.tolist() == [S.K, S.NA, S.CL]
        assert any(np.array_equal(candidate.frac_coords, s.frac_coords) and np.array_equal(candidate.lattice, s.lattice)
                   for s in sources)
    assert {c.lattice[0, 0] for c in candidates} == {4.0, 4.4}  # both drawn (with replacement: pool < k)


def test_train_baseline_without_a_training_structure_of_that_size_gives_missing_candidates():
    training = TrainingGeometries.from_crystals([S.perovskite()])
    predictions = baseline_predictions("train", [S.rocksalt(), S.perovskite()], 2, training, seed=0)
    assert predictions[0] == [None, None]
    result = score(predictions, [S.rocksalt(), S.perovskite()])
    assert result.n_matched_at_k == 1 and result.n_missing == 2


def test_baselines_are_seeded_per_target():
    training = TrainingGeometries.from_crystals([S.perovskite(a=a) for a in (3.8, 3.9, 4.0, 4.1)])
    targets = [S.perovskite(), S.rotated_permuted_shifted(S.perovskite(), 2)]
    for name in ("prototype", "train"):
        first = baseline_predictions(name, targets, 5, training, seed=7)
        again = baseline_predictions(name, targets, 5, training, seed=7)
        alone = baseline_predictions(name, targets[:1], 5, training, seed=7)  # as with --limit 1
        other = baseline_predictions(name, targets, 5, training, seed=8)

        def key(predictions):
            return [[(c.lattice.tobytes(), c.atomic_numbers.tobytes()) for c in t] for t in predictions]

        assert key(first) == key(again) and key(first)[:1] == key(alone)
        assert key(first) != key(other)
