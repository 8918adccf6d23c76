"""scripts/match_known_structure.py: the built-in YBa2Cu3O7 and the sample count."""

import json

from ase.io import write

from tests.metrics import _structures as S
from tests.script_loading import load_script


def test_builtin_ybco_is_the_pmmm_13_atom_cell():
    from diffcrystal.symmetry import space_group

    ybco = load_script("match_known_structure").reference_crystal("YBa2Cu3O7")
    assert ybco.num_atoms == 13
    assert sorted(ybco.atomic_numbers.tolist()) == sorted([39] + [56] * 2 + [29] * 3 + [8] * 7)
    assert space_group(ybco, symprec=0.01).number == 47  # Pmmm


def test_counts_the_samples_that_match_the_reference(tmp_path):
    script = load_script("match_known_structure")
    ybco = script.reference_crystal("YBa2Cu3O7")
    moved = S.rotated_permuted_shifted(ybco, seed=3)  # the same crystal
    write(tmp_path / "samples.extxyz", [moved.to_atoms(), S.overlapping(ybco).to_atoms(), S.rocksalt().to_atoms()])
    script.main([str(tmp_path), "--reference", "YBa2Cu3O7", "--workers", "1", "--out", str(tmp_path / "m.json")])
    result = json.loads((tmp_path / "m.json").read_text())
    assert result["n_samples"] == 3 and result["n_matched"] == 1 and result["n_invalid"] == 1
    assert result["best_rms"] < 1e-6


PRIMITIVE_ATOMS = {"YBa2Cu3O7": 13, "LiCoO2": 4, "TiO2": 6, "GaAs": 2, "ZnO": 4, "NaCl": 2, "Si": 2, "CaF2": 3}
"""Atoms in the primitive cell of each experimental structure (textbook values)."""


def test_builtin_experimental_structures_have_their_space_group_and_cell():
    from pymatgen.core import Composition

    from diffcrystal.symmetry import space_group

    script = load_script("match_known_structure")
    assert set(script.KNOWN_STRUCTURES) == set(PRIMITIVE_ATOMS) == set(script.EXPECTED_SPACE_GROUPS)
    for name, expected in script.EXPECTED_SPACE_GROUPS.items():
        crystal = script.reference_crystal(name)
        assert crystal.num_atoms == PRIMITIVE_ATOMS[name], name
        assert space_group(crystal, symprec=0.01).number == expected, name
        assert crystal.to_structure().composition.reduced_composition == Composition(name).reduced_composition
    # nearest-neighbour distances against the textbook bond lengths (independent of the CIF data)
    nacl = script.reference_crystal("NaCl").to_structure()
    assert abs(min(nacl.distance_matrix[0][1:]) - 5.6402 / 2) < 1e-6
    si = script.reference_crystal("Si").to_structure()
    assert abs(si.get_distance(0, 1) - 5.4310 * 3**0.5 / 4) < 1e-6
