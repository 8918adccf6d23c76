"""Space-group-constrained sampling with the bundled CSP checkpoint and through the CLI."""

import csv

import pytest
from pymatgen.io.cif import CifParser

from diffcrystal.cli.main import main
from diffcrystal.data.crystal import Crystal
from diffcrystal.symmetry import SYMPREC_TIGHT, space_group
from tests.spacegroup.test_spacegroup_projection import CASES, invariant_under_group

STEPS = 4


@pytest.fixture(scope="module")
def bundled():
    import diffcrystal

    return diffcrystal.load_generator(device="cpu")


@pytest.mark.parametrize("formula, number, z", CASES)
def test_every_sample_has_the_requested_group(bundled, formula, number, z):
    """Kept on the group at every step: invariant under all of its operations as sampled, and
    spglib (0.01 Å) finds exactly the group once extra symmetry is broken."""
    from diffcrystal.sampling import generate_batches, plan_spacegroup_requests
    from diffcrystal.spacegroup import break_extra_symmetry

    assignments = plan_spacegroup_requests(bundled.generator, 2, _parse(formula),
                                           number, formula_units=[z])
    plans = [(a.num_atoms, a.atomic_numbers()) for a in assignments]
    (_, crystals), = generate_batches(bundled.generator, plans, num_steps=STEPS, batch_size=2, seed=0,
                                      progress=False, assignments=assignments)
    for crystal, assignment in zip(crystals, assignments):
        assert isinstance(crystal, Crystal)
        assert invariant_under_group(crystal, number, tol=1e-3)
        final, _ = break_extra_symmetry(crystal, assignment, seed=0)
        assert space_group(final, SYMPREC_TIGHT).number == number


def _parse(formula):
    from diffcrystal.data.composition import parse_composition

    return parse_composition(formula)


def test_cli_writes_the_group_and_its_symmetrised_cif(tmp_path, capsys):
    out = tmp_path / "bto"
    assert main(["sample", "--composition", "BaTiO3", "--spacegroup", "99", "--wyckoff", "Ba:1a,Ti:1b,O:1b,O:2c",
                 "--n", "2", "--steps", str(STEPS), "--out", str(out), "--quiet"]) == 0
    assert "requested space group P4mm (99): spglib finds it at 0.01 Å in 2/2" in capsys.readouterr().out
    with open(out / "summary.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    for row in rows:
        assert (row["requested_spacegroup"], row["spacegroup_number_tight"]) == ("99", "99")
        assert row["wyckoff"] == "Ba:1a,Ti:1b,O:1b,O:2c"  # as typed: pastes back into --wyckoff
        structure = CifParser(out / row["symmetrized_cif"]).parse_structures(primitive=False)[0]
        assert structure.get_space_group_info(symprec=SYMPREC_TIGHT)[1] == 99


@pytest.mark.parametrize("arguments, message", [
    (["--spacegroup", "0"], "--spacegroup must be a space-group number in 1..230, got 0"),
    (["--spacegroup", "231"], "got 231"),
    (["--spacegroup", "225", "--formula-units", "1,2,3"], "space group 225 (Fm-3m) cannot host NaCl with Z = 1..3"),
    (["--spacegroup", "225", "--wyckoff", "Na:4a,Cl:4a"], "site 4a of space group 225 (Fm-3m) has no free parameter"),
    (["--wyckoff", "Na:4a,Cl:4b"], "--wyckoff needs --spacegroup"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, arguments, message):
    out = tmp_path / "never"
    assert main(["sample", "--composition", "NaCl", "--n", "2", "--steps", "2", "--out", str(out), "--quiet",
                 *arguments]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()
