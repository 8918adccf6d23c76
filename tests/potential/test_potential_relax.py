"""Relaxation with EMT (exact and fast): returns to EMT's minimum, flags explosions, keeps going."""

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT

from diffcrystal.errors import InputError
from diffcrystal.potential import RelaxSettings, load_calculator, potential_label, relax_atoms, relax_many
from diffcrystal.potential.results import explosion_reason
from tests.potential.emt_reference import cu3au_l12, emt_lattice_constant

LATTICE_TOLERANCE = 0.005
"""Relative tolerance on the relaxed lattice constant (the issue's 0.5 %)."""


def cu_fcc(a=3.6):
    return bulk("Cu", "fcc", a=a, cubic=True)


def perturbed(atoms, seed, strain=0.03, rattle=0.05):
    rng = np.random.default_rng(seed)
    epsilon = rng.uniform(-strain, strain, (3, 3))
    epsilon = (epsilon + epsilon.T) / 2
    out = atoms.copy()
    out.set_cell(out.cell.array @ (np.eye(3) + epsilon), scale_atoms=True)
    out.positions += rng.normal(0.0, rattle, out.positions.shape)
    return out


@pytest.mark.parametrize("build, symbol", [(cu_fcc, "Fm-3m"), (cu3au_l12, "Pm-3m")])
def test_relax_returns_to_emt_minimum(build, symbol):
    reference = emt_lattice_constant(build())
    result = relax_atoms(perturbed(build(), seed=3), EMT(), RelaxSettings(), "x", "emt")
    assert result.status == "converged" and result.converged
    assert result.max_force < RelaxSettings().fmax
    lengths = result.atoms.cell.cellpar()[:3]
    np.testing.assert_allclose(lengths, reference, rtol=LATTICE_TOLERANCE)
    np.testing.assert_allclose(result.atoms.cell.cellpar()[3:], 90.0, atol=0.5)
    assert result.space_group == symbol
    # the cell part of fmax is the virial per atom: |stress| * V / N < fmax
    volume_per_atom = result.atoms.get_volume() / len(result.atoms)
    assert np.all(np.abs(result.stress) * volume_per_atom < RelaxSettings().fmax)
    assert result.energy_per_atom == pytest.approx(result.energy / len(result.atoms))


def test_batch_flags_explosions_and_completes():
    overlapping = cu_fcc()
    overlapping.positions[1] = overlapping.positions[0] + [0.1, 0.0, 0.0]
    not_a_number = cu_fcc()
    not_a_number.positions[0, 0] = np.nan
    batch = [("good-cu", perturbed(cu_fcc(), 1)), ("overlap", overlapping),
             ("nan", not_a_number), ("good-l12", perturbed(cu3au_l12(), 2))]
    results = relax_many(batch, "emt", RelaxSettings(max_steps=300), workers=2, progress=False)
    by_label = {r.label: r for r in results}
    assert [r.label for r in results] == [name for name, _ in batch]
    assert by_label["overlap"].status == "exploded" and "0.100 Å apart" in by_label["overlap"].reason
    assert by_label["nan"].status == "exploded" and "non-finite" in by_label["nan"].reason
    assert not by_label["overlap"].rankable and not by_label["nan"].rankable
    assert by_label["good-cu"].status == "converged" and by_label["good-l12"].status == "converged"
    assert all(r.potential == "emt" for r in results)


class NaNAfterTwoCalls(Calculator):
    """EMT whose third evaluation returns NaN, as a diverging ML potential might."""

    implemented_properties = ["energy", "forces", "stress"]

    def __init__(self):
        super().__init__()
        self.emt, self.calls = EMT(), 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.calls += 1
        self.emt.calculate(atoms, ["energy", "forces", "stress"], all_changes)
        self.results = dict(self.emt.results)
        if self.calls > 2:
            self.results["energy"] = float("nan")


def test_nan_during_relaxation_is_flagged_not_raised():
    result = relax_atoms(perturbed(cu_fcc(), 4), NaNAfterTwoCalls(), RelaxSettings(), "diverging", "test")
    assert result.status == "exploded" and "non-finite energy" in result.reason
    assert result.steps >= 1 and result.atoms is None


def test_step_cap_gives_not_converged_and_not_rankable():
    result = relax_atoms(perturbed(cu3au_l12(), 5), EMT(), RelaxSettings(max_steps=2), "capped", "emt")
    assert result.status == "not_converged" and not result.converged and result.steps == 2
    assert result.max_force > RelaxSettings().fmax and "not reached in 2 steps" in result.reason
    assert "energy fell" in result.reason and "over the last 2 steps" in result.reason  # still descending
    assert not result.rankable and result.unconverged  # ranked apart from the converged ones


def test_explosion_reason_volume():
    exploded = cu_fcc()
    exploded.set_cell(exploded.cell.array * 6, scale_atoms=True)  # 2.6 Å^3 * 216 per atom
    assert "volume per atom" in explosion_reason(exploded)
    assert explosion_reason(cu_fcc()) == ""


def test_unknown_potential_lists_valid_names():
    with pytest.raises(InputError) as error:
        load_calculator("mace-mp-0")
    message = str(error.value)
    assert "\n" not in message and "sevennet-0" in message and "emt" in message and "chgnet" in message
    assert potential_label("EMT") == "emt"


def test_chgnet_absent_is_a_clear_error():
    import importlib.util

    if importlib.util.find_spec("chgnet") is not None:
        pytest.skip("chgnet is installed")
    with pytest.raises(InputError, match="pip install chgnet"):
        load_calculator("chgnet")


def test_bad_settings_are_rejected():
    with pytest.raises(InputError, match="fmax"):
        RelaxSettings(fmax=0.0)
    with pytest.raises(InputError, match="optimizer"):
        RelaxSettings(optimizer="LBFGS")


def test_a_pair_collapsed_below_half_its_covalent_bond_is_exploded():
    """As and Nb 0.9 Å apart (covalent radii 1.19 + 1.64 = 2.83 Å, ratio 0.32): beyond every
    real bond, though above the 0.5 Å floor; 1.6 Å (ratio 0.57) is left alone."""
    from ase import Atoms

    def pair(distance):
        return Atoms("AsNb", positions=[[0, 0, 0], [distance, 0, 0]], cell=np.eye(3) * 6.0, pbc=True)

    reason = explosion_reason(pair(0.9))
    assert reason.startswith("As-Nb 0.900 Å apart") and "2.83 Å" in reason
    assert explosion_reason(pair(1.6)) == ""
    assert explosion_reason(pair(0.3)).startswith("atoms 0.300 Å apart")  # the absolute floor first
    # every MP-20-like bond survives: N2's triple bond is 0.78 of its radii sum
    assert explosion_reason(Atoms("N2", positions=[[0, 0, 0], [1.10, 0, 0]], cell=np.eye(3) * 6.0, pbc=True)) == ""
