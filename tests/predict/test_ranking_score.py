"""The ranking score of predict (diffcrystal.ranking) against hand computation."""

import math

import pytest

from diffcrystal.errors import InputError
from diffcrystal.ranking import RankingScore


def test_score_is_energy_plus_weighted_distance_and_template_stability():
    score = RankingScore(distance_weight=0.02, free_distance=6.0, stability_weight=0.5)
    assert score(-3.0, 1.5, 0.04) == pytest.approx(-3.0 + 0.02 * 1.5 + 0.5 * 0.04)
    assert score(-3.0, math.nan) == pytest.approx(-3.0 + 0.02 * 6.0)  # a free sample
    assert score(-3.0, 2.0, -0.01) == pytest.approx(-3.0 + 0.04)  # below the hull counts as 0
    assert score.offset(2.0, math.nan) == pytest.approx(0.04)  # unknown stability counts as 0


def test_score_orders_a_near_template_above_a_slightly_lower_far_one():
    score = RankingScore(distance_weight=0.01)
    near, far = score(-3.000, 0.5), score(-3.020, 4.0)
    assert near < far  # 20 meV/atom lower energy does not pay for 3.5 Mendeleev units


@pytest.mark.parametrize("field", ["distance_weight", "free_distance", "stability_weight"])
@pytest.mark.parametrize("value", [-0.1, math.nan, math.inf])
def test_bad_weights_are_one_line_errors(field, value):
    with pytest.raises(InputError, match=field.replace("_", " ")):
        RankingScore(**{field: value})


@pytest.mark.parametrize("candidate_atoms, num_atoms, fits", [(4, 8, True), (8, 8, True), (3, 8, False),
                                                              (16, 8, False), (5, None, True)])
def test_a_cell_fits_the_given_atom_count_when_it_is_a_whole_multiple(candidate_atoms, num_atoms, fits):
    from diffcrystal.ranking import fits_atom_count

    assert fits_atom_count(candidate_atoms, num_atoms) is fits


def test_a_candidate_the_given_cell_cannot_hold_is_charged_the_atom_count_weight():
    score = RankingScore(distance_weight=0.0, stability_weight=0.0, atom_count_weight=0.05)
    assert score(-3.0, 1.0, fits_atoms=False) == pytest.approx(-2.95)
    assert score(-3.0, 1.0, fits_atoms=True) == pytest.approx(-3.0)
    # a misfit 0.04 eV/atom lower in energy still ranks below one that fits
    assert score(-3.04, 1.0, fits_atoms=False) > score(-3.0, 1.0, fits_atoms=True)


def test_the_vote_charges_the_share_of_votes_a_type_lacks():
    score = RankingScore(distance_weight=0.0, stability_weight=0.0, vote_weight=0.04)
    assert score(-3.0, 0.0, type_vote=1.0) == pytest.approx(-3.0)
    assert score(-3.0, 0.0, type_vote=0.25) == pytest.approx(-3.0 + 0.04 * 0.75)
    # a type with 80 % of the votes beats one 20 meV/atom lower with 10 %
    assert score(-3.0, 0.0, type_vote=0.8) < score(-3.02, 0.0, type_vote=0.1)
