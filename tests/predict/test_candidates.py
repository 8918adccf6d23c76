"""Candidate sources and deduplication before relaxing (diffcrystal.candidates)."""

import numpy as np
import pytest

from diffcrystal.candidates import (
    Candidate,
    check_counts,
    deduplicate_candidates,
    describe_missing_analogues,
    nearest_analogues,
    reduced_cell,
    template_candidates,
    template_formula_units,
)
from diffcrystal.data.crystal import Crystal
from diffcrystal.errors import InputError
from tests.predict.structures import AU, CU, NI, ab_library, l10


def test_templates_are_the_nearest_structure_types_with_the_composition_substituted():
    library = ab_library()
    analogues = nearest_analogues({CU: 1, AU: 1}, library, 5, max_distance=None)
    candidates = template_candidates(analogues)
    assert [c.analogue for c in candidates] == [a.template.label for a in analogues]
    assert candidates[0].analogue == "L10-CuAu" and candidates[0].analogue_distance == 0.0
    assert all(sorted(c.crystal.atomic_numbers.tolist()) == [CU, AU] for c in candidates)
    assert [c.analogue_distance for c in candidates] == sorted(c.analogue_distance for c in candidates)
    # the cut by distance leaves only the exact analogue
    assert len(nearest_analogues({CU: 1, AU: 1}, library, 5, max_distance=0.0)) == 1


def test_duplicates_are_merged_before_relaxing_even_when_rotated_and_shifted():
    base = l10()
    rotation = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # 90° about z
    twin = Crystal(base.lattice @ rotation.T, (base.frac_coords + 0.25) % 1.0, base.atomic_numbers)
    supercell = Crystal(np.diag([1, 1, 2]) @ base.lattice,
                        np.vstack([base.frac_coords * [1, 1, 0.5], base.frac_coords * [1, 1, 0.5] + [0, 0, 0.5]]),
                        np.concatenate([base.atomic_numbers] * 2))
    other = Crystal(np.eye(3) * 3.0, [[0, 0, 0], [0.5, 0.5, 0.5]], [CU, AU])
    candidates = [Candidate("a", base, "template"), Candidate("b", twin, "analogue_diffusion"),
                  Candidate("c", other, "free_diffusion"), Candidate("d", supercell, "free_diffusion")]
    kept, merged = deduplicate_candidates(candidates)
    assert [c.label for c in kept] == ["a", "c"]
    assert merged == {"b": "a", "d": "a"}


def test_a_conventional_cell_is_reduced_to_its_primitive_cell():
    conventional = Crystal(np.eye(3) * 4.0, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]], [CU] * 4)
    assert reduced_cell(conventional).num_atoms == 1
    assert reduced_cell(l10()).num_atoms == 2
    assert reduced_cell(conventional).volume == pytest.approx(conventional.volume / 4)


def test_formula_units_follow_the_templates():
    library = ab_library()
    analogues = nearest_analogues({CU: 1, AU: 1}, library, 5, max_distance=None)
    assert template_formula_units({CU: 1, AU: 1}, analogues, max_atoms=20) == [1]
    assert template_formula_units({CU: 1, AU: 1}, [], max_atoms=20) == [1]


@pytest.mark.parametrize("counts, message", [
    ({"template": 1, "magic": 2}, "unknown candidate source 'magic'"),
    ({"template": -1}, "whole number >= 0"),
    ({"template": 0, "analogue_diffusion": 0, "free_diffusion": 0}, "no candidates requested"),
])
def test_bad_counts_are_one_line_errors(counts, message):
    with pytest.raises(InputError, match=message):
        check_counts(counts)


def test_a_formula_type_without_templates_is_said():
    text = describe_missing_analogues({CU: 1, AU: 3}, ab_library(), 8.0)
    assert "no known crystal" in text and "free diffusion only" in text
    text = describe_missing_analogues({CU: 1, NI: 1}, ab_library(), 0.0)
    assert "within Mendeleev distance 0" in text


def test_a_library_without_a_label_has_one_template_less():
    library = ab_library()
    smaller = library.without({"L10-CuAu"})
    assert len(smaller) == len(library) - 1
    assert "L10-CuAu" not in [a.template.label for a in smaller.analogues({CU: 1, AU: 1})]
