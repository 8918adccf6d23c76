"""Deduplication, ranking and energy above hull (EMT)."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, make_supercell

from diffcrystal.errors import InputError
from diffcrystal.potential import RelaxSettings, rank_results, relax_many
from diffcrystal.potential.rank import deduplicate
from diffcrystal.potential.relax import RelaxResult


def cu3au_l12(a=3.74):
    return Atoms("AuCu3", scaled_positions=[[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
                 cell=np.eye(3) * a, pbc=True)


def other_setting(atoms, seed=0):
    """The same crystal in another setting: a 1x1x2 supercell with permuted axes, rotated in
    space, origin shifted and atoms shuffled."""
    rng = np.random.default_rng(seed)
    out = make_supercell(atoms, [[0, 1, 0], [0, 0, 1], [2, 0, 0]])
    angle = 0.7
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    out.set_cell(out.cell.array @ rotation.T, scale_atoms=True)
    out.positions += out.cell.array.T @ np.array([0.13, 0.41, 0.27])
    out.wrap()
    return out[rng.permutation(len(out))]


def result(label, atoms, energy_per_atom, potential="emt"):
    return RelaxResult(label=label, status="converged", potential=potential, converged=True,
                       energy_per_atom=energy_per_atom, num_atoms=len(atoms),
                       formula=atoms.get_chemical_formula(mode="metal", empirical=True), atoms=atoms)


def test_equivalent_settings_collapse_to_one_group():
    base = cu3au_l12()
    results = [
        result("a", base, -0.010),
        result("b", other_setting(base), -0.012),
        result("cu", bulk("Cu", "fcc", a=3.59, cubic=True), -0.007),
    ]
    entries = rank_results(results)
    assert len(entries) == 2
    first = entries[0]
    assert first.best.label == "b" and first.group_size == 2 and set(first.members) == {"a", "b"}
    assert entries[1].best.label == "cu" and entries[1].group_size == 1


def test_exploded_results_stay_out_of_ranking():
    bad = RelaxResult(label="boom", status="exploded", potential="emt", reason="atoms 0.1 Å apart")
    assert deduplicate([bad, result("ok", cu3au_l12(), -0.01)])[0].members == ["ok"]


def test_mixed_potentials_are_refused():
    with pytest.raises(InputError, match="different potentials"):
        rank_results([result("a", cu3au_l12(), -0.01, "emt"), result("b", cu3au_l12(), -3.0, "sevennet-0")])


def test_energy_above_hull_against_references():
    references = relax_many([("Cu", bulk("Cu", "fcc", a=3.6, cubic=True)),
                             ("Au", bulk("Au", "fcc", a=4.1, cubic=True))],
                            "emt", RelaxSettings(), workers=1, progress=False)
    candidates = relax_many([("l12", cu3au_l12())], "emt", RelaxSettings(), workers=1, progress=False)
    entries = rank_results(candidates, references)
    by_label = {r.label: r.energy_per_atom for r in references}
    expected = candidates[0].energy_per_atom - (0.75 * by_label["Cu"] + 0.25 * by_label["Au"])
    assert entries[0].e_above_hull == pytest.approx(expected, abs=1e-9)
    assert entries[0].e_above_hull < 0  # EMT binds Cu3Au below the Cu + Au tie line


def test_references_missing_an_element_are_a_clear_error():
    references = relax_many([("Cu", bulk("Cu", "fcc", a=3.6, cubic=True))], "emt", workers=1, progress=False)
    with pytest.raises(InputError, match="Au"):
        rank_results([result("l12", cu3au_l12(), -0.01)], references)
