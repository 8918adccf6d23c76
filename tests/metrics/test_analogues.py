"""Chemical-analogue templates and the ``analogue`` baseline, checked against brute force and
against structures whose answer is known."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from pymatgen.core import Element

from diffcrystal.analogues import AnalogueLibrary, formula_type
from diffcrystal.baselines import TrainingGeometries, baseline_predictions
from diffcrystal.data.crystal import Crystal
from diffcrystal.metrics import csp_metrics
from diffcrystal.spacegroup import assignment_of

from tests.metrics import _structures as S

BR, CS, RB, LI, F, I_ = 35, 55, 37, 3, 9, 53


def with_species(crystal: Crystal, mapping: dict[int, int], e_above_hull: float | None = None) -> Crystal:
    species = [mapping.get(int(z), int(z)) for z in crystal.atomic_numbers]
    properties = {} if e_above_hull is None else {"e_above_hull": e_above_hull}
    return Crystal(crystal.lattice, crystal.frac_coords, species, properties=properties)


def caesium_chloride(a: float = 4.1, species=(CS, S.CL)) -> Crystal:
    """B2 (CsCl type), Pm-3m, 2 atoms."""
    return Crystal(np.eye(3) * a, [[0, 0, 0], [0.5, 0.5, 0.5]], list(species))


def random_crystal(counts: dict[int, int], rng: np.random.Generator) -> Crystal:
    species = [z for z, c in counts.items() for _ in range(c)]
    return Crystal(np.eye(3) * 6.0, rng.uniform(size=(len(species), 3)), species)


def brute_force_distance(target: dict[int, int], template: dict[int, int]) -> float:
    """Smallest count-preserving pairing cost, over every bijection of the elements."""
    m = {z: Element.from_Z(z).mendeleev_no for z in set(target) | set(template)}
    g_t, g_p = np.gcd.reduce(list(target.values())), np.gcd.reduce(list(template.values()))
    best = np.inf
    for image in itertools.permutations(template):
        pairs = list(zip(target, image))
        if all(target[a] // g_t == template[b] // g_p for a, b in pairs):
            best = min(best, sum(target[a] // g_t * abs(m[a] - m[b]) for a, b in pairs))
    return best / (sum(target.values()) // g_t)


def test_formula_type_is_the_sorted_reduced_counts():
    assert formula_type({8: 6, 22: 2, 38: 2}) == (1, 1, 3)
    assert formula_type({11: 4, 17: 4}) == (1, 1)
    assert formula_type({6: 8}) == (1,)


def test_pairing_distance_equals_the_brute_force_minimum_over_bijections():
    rng = np.random.default_rng(0)
    elements = [z for z in range(1, 84) if z not in (2, 10, 18, 36, 54)]
    checked = 0
    for _ in range(200):
        kind = [1, 1, 2, 2, 3][: rng.integers(2, 6)]
        target = dict(zip(rng.choice(elements, len(kind), replace=False).tolist(), kind))
        template = dict(zip(rng.choice(elements, len(kind), replace=False).tolist(), rng.permutation(kind).tolist()))
        z = int(rng.integers(1, 3))
        library = AnalogueLibrary.from_crystals([random_crystal({e: c * z for e, c in template.items()}, rng)])
        (analogue,) = library.analogues(target)
        assert analogue.distance == pytest.approx(brute_force_distance(target, template))
        # the pairing preserves counts: the substituted template has the target's reduced formula
        substituted = analogue.substituted()
        counts = dict(zip(*np.unique(substituted.atomic_numbers, return_counts=True)))
        assert formula_type(counts) == formula_type(target)
        assert {int(e) for e in counts} == set(target)
        checked += 1
    assert checked == 200


def test_other_formula_types_are_no_analogues():
    library = AnalogueLibrary.from_crystals([S.perovskite(), S.rocksalt()])
    assert library.analogues({S.K: 1, S.CL: 1})[0].template.num_atoms == 8
    assert len(library.analogues({S.K: 1, S.CL: 1})) == 1
    assert library.analogues({S.K: 1, S.CL: 2}) == []


def test_order_is_atom_count_then_distance_then_stability():
    nacl = S.rocksalt()  # 8 atoms
    kcl_unstable = with_species(S.rocksalt(5.9), {S.NA: S.K}, e_above_hull=0.05)
    kcl_stable = with_species(S.rocksalt(6.0), {S.NA: S.K}, e_above_hull=0.0)
    rbcl_two_atoms = caesium_chloride(species=(RB, S.CL))  # distance 0 to RbCl but 2 atoms
    library = AnalogueLibrary.from_crystals([nacl, kcl_unstable, kcl_stable, rbcl_two_atoms])
    target = {RB: 4, S.CL: 4}
    order = [a.index for a in library.analogues(target, num_atoms=8)]
    # K (Mendeleev 10) is 1 from Rb (9), Na (11) is 2; the two K templates in order of stability
    assert order == [2, 1, 0, 3]
    assert [a.index for a in library.analogues(target, num_atoms=2)][0] == 3
    assert [a.distance for a in library.analogues(target)] == pytest.approx([0.0, 0.5, 0.5, 1.0])


def test_analogue_assignment_is_the_templates_with_the_target_species():
    library = AnalogueLibrary.from_crystals([S.rocksalt()])
    (analogue,) = library.analogues({S.K: 1, BR: 1})
    own = assignment_of(S.rocksalt(), 0.01)
    mapped = analogue.assignment()
    assert mapped.spacegroup == own.spacegroup == 225
    assert [o.site for o in mapped.orbits] == [o.site for o in own.orbits]
    assert [o.atomic_number for o in mapped.orbits] == [{S.NA: S.K, S.CL: BR}[o.atomic_number] for o in own.orbits]


def test_distinct_analogues_skip_templates_of_a_structure_type_already_taken():
    library = AnalogueLibrary.from_crystals([S.rocksalt(5.6), S.rocksalt(5.7), caesium_chloride(), S.rocksalt(6.0)])
    chosen = library.distinct_analogues({S.K: 1, S.CL: 1}, k=5)
    assert sorted(a.assignment().spacegroup for a in chosen) == [221, 225]
    assert len(chosen) == 2


def test_analogue_baseline_matches_a_target_whose_prototype_is_in_the_training_data():
    # KBr rock salt, rotated and shuffled; training: NaCl rock salt and CsCl (B2)
    kbr = S.rotated_permuted_shifted(with_species(S.rocksalt(6.6), {S.NA: S.K, S.CL: BR}), seed=3)
    training = TrainingGeometries.from_crystals([caesium_chloride(), S.rocksalt()])
    predictions = baseline_predictions("analogue", [kbr], 3, training, seed=0)
    first, second, third = predictions[0]
    assert sorted(first.atomic_numbers.tolist()) == sorted(kbr.atomic_numbers.tolist())
    np.testing.assert_array_equal(first.frac_coords, S.rocksalt().frac_coords)  # the 8-atom template first
    assert third.num_atoms == first.num_atoms  # only two structure types: cycled
    result = csp_metrics(predictions, [kbr], workers=1, progress=False)
    assert [p.matched for p in result.per_target[0].candidates] == [True, False, True]
    assert result.per_target[0].candidates[0].rms < 1e-6


def test_analogue_baseline_without_a_template_of_the_formula_type_gives_missing_candidates():
    training = TrainingGeometries.from_crystals([S.perovskite()])
    predictions = baseline_predictions("analogue", [S.rocksalt(), S.perovskite()], 2, training, seed=0)
    assert predictions[0] == [None, None]
    result = csp_metrics(predictions, [S.rocksalt(), S.perovskite()], workers=1, progress=False)
    assert result.n_matched_at_k == 1 and result.n_missing == 2
