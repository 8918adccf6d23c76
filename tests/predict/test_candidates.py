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


def test_rescaled_templates_take_the_volume_the_atomic_radii_predict():
    from pymatgen.core import Element

    library = ab_library()
    analogues = nearest_analogues({CU: 1, AU: 1}, library, 5, max_distance=None)
    plain, rescaled = template_candidates(analogues), template_candidates(analogues, rescale=True)
    for analogue, before, after in zip(analogues, plain, rescaled):
        template = analogue.template.crystal
        counts = {}
        for z in template.atomic_numbers.tolist():
            counts[z] = counts.get(z, 0) + 1

        def radius_sum(mapping):  # sum over elements of r n^(1/3), by hand from pymatgen's radii
            return sum(Element.from_Z(mapping(z)).atomic_radius * n ** (1 / 3) for z, n in counts.items())

        expected = abs(np.linalg.det(template.lattice)) * (radius_sum(lambda z: analogue.species_map[z])
                                                          / radius_sum(lambda z: z)) ** 3
        assert abs(np.linalg.det(after.crystal.lattice)) == pytest.approx(expected, rel=1e-9)
        np.testing.assert_allclose(after.crystal.frac_coords, before.crystal.frac_coords)
        np.testing.assert_array_equal(after.crystal.atomic_numbers, before.crystal.atomic_numbers)
        # isotropic: every lattice entry scaled by the same factor
        scale = (abs(np.linalg.det(after.crystal.lattice)) / abs(np.linalg.det(before.crystal.lattice))) ** (1 / 3)
        np.testing.assert_allclose(after.crystal.lattice, scale * before.crystal.lattice, rtol=1e-12, atol=1e-12)
    # the CuAu template itself keeps its volume; NiAl and AgPd ones change
    assert [abs(np.linalg.det(c.crystal.lattice)) == pytest.approx(abs(np.linalg.det(p.crystal.lattice)))
            for c, p in zip(rescaled, plain)] == [a.distance == 0 for a in analogues]


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


def test_a_given_atom_count_puts_templates_of_that_size_first():
    from tests.predict.structures import b2, rock_salt

    # a 4-atom cell of another structure type (AABB stacking)
    four = Crystal(np.diag([4.0, 4.0, 6.0]), [[0, 0, 0], [0.5, 0.5, 0.25], [0, 0, 0.5], [0.5, 0.5, 0.75]],
                   [AU, CU, CU, AU], label="AABB-4", properties={"e_above_hull": 0.0})
    from diffcrystal.analogues import AnalogueLibrary

    library = AnalogueLibrary.from_crystals([b2(), l10(), rock_salt(), four])
    anyhow = nearest_analogues({CU: 1, AU: 1}, library, 4, max_distance=None)
    assert anyhow[0].template.label == "L10-CuAu"
    sized = nearest_analogues({CU: 1, AU: 1}, library, 4, max_distance=None, num_atoms=4)
    assert sized[0].template.label == "AABB-4" and sized[0].template.num_atoms == 4
    assert {a.template.label for a in sized} == {a.template.label for a in anyhow}  # the others still follow


@pytest.mark.parametrize("composition, num_atoms, ok", [({CU: 1, AU: 1}, 2, True), ({CU: 2, AU: 2}, 6, True),
                                                        ({CU: 1, AU: 3}, 6, False), ({CU: 1, AU: 1}, 0, False),
                                                        ({CU: 1, AU: 1}, None, True)])
def test_the_atom_count_must_be_whole_formula_units(composition, num_atoms, ok):
    from diffcrystal.candidates import check_num_atoms

    if ok:
        check_num_atoms(composition, num_atoms)
    else:
        with pytest.raises(InputError, match="whole number of formula units of 4 atoms|formula units of 2 atoms"):
            check_num_atoms(composition, num_atoms)


def test_free_samples_count_formula_units_of_the_reduced_formula():
    """Ga4Te4 written out or GaTe: Z counts GaTe units, so Z = 2 is a 4-atom cell, not 16."""
    from diffcrystal.candidates import formula_unit_atoms
    from diffcrystal.data.composition import reduce

    assert reduce({31: 4, 52: 4}) == {31: 1, 52: 1}
    assert reduce({8: 14, 39: 2, 56: 4, 29: 6}) == {8: 7, 29: 3, 39: 1, 56: 2}
    assert formula_unit_atoms({31: 4, 52: 4}) == 2
    assert formula_unit_atoms({8: 7, 29: 3, 39: 1, 56: 2}) == 13


def test_structure_type_votes_against_a_hand_count():
    """Votes exp(-d) of every analogue, summed per structure type and normalised: two L1_0
    analogues (CuAu itself at d = 0 and NiPt-like at d > 0) outvote one B2 at a smaller distance."""
    import math

    from diffcrystal.analogues import AnalogueLibrary
    from tests.predict.structures import AG, PD, b2, rock_salt

    far_l10 = l10(species=(PD, AG), label="L10-PdAg")
    library = AnalogueLibrary.from_crystals([b2(), l10(), rock_salt(), far_l10])
    found = library.analogues({CU: 1, AU: 1})
    expected: dict = {}
    for analogue in found:
        expected[analogue.structure_type()] = expected.get(analogue.structure_type(), 0.0) + math.exp(-analogue.distance)
    total = sum(expected.values())
    votes = library.type_votes({CU: 1, AU: 1})
    assert votes == pytest.approx({k: v / total for k, v in expected.items()})
    assert sum(votes.values()) == pytest.approx(1.0)
    l10_type = next(a for a in found if a.template.label == "L10-CuAu").structure_type()
    assert max(votes, key=votes.get) == l10_type
    assert library.type_votes({CU: 1, AU: 1}, nearest=1) == {found[0].structure_type(): 1.0}
    candidates = template_candidates(library.distinct_analogues({CU: 1, AU: 1}, 3), votes)
    assert [c.type_vote for c in candidates] == pytest.approx([votes[a.structure_type()] for a in
                                                             library.distinct_analogues({CU: 1, AU: 1}, 3)])


def test_deduplication_agrees_with_a_plain_loop_over_pairs():
    """The grouped matcher gives what comparing each candidate with every earlier kept one
    gives (the brute-force reference), on rattled copies of three AB crystals."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from diffcrystal.potential.rank import default_matcher
    from tests.predict.structures import b2, rock_salt

    rng = np.random.default_rng(3)
    candidates = []
    for i, base in enumerate([l10(), b2(species=(CU, AU)), rock_salt(species=(CU, AU)), l10(), b2(species=(CU, AU))] * 2):
        shaken = Crystal(base.lattice * (1 + rng.normal(0, 0.03)), base.frac_coords + rng.normal(0, 0.02, (2, 3)),
                         base.atomic_numbers)
        candidates.append(Candidate(f"c{i}", shaken, "free_diffusion"))
    matcher = default_matcher()
    assert isinstance(matcher, StructureMatcher)
    kept, merged = [], {}
    for candidate in candidates:
        twin = next((k for k in kept if matcher.fit(k.crystal.to_structure(), candidate.crystal.to_structure())), None)
        if twin is None:
            kept.append(candidate)
        else:
            merged[candidate.label] = twin.label
    distinct, grouped = deduplicate_candidates(candidates)
    assert [c.label for c in distinct] == [c.label for c in kept]
    assert grouped == merged and len(distinct) < len(candidates)
