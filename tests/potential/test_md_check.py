"""The MD deployment check (diffcrystal.potential.md_check) against independent computations:
a least-squares fit by numpy.polyfit, the dt² growth of Verlet's energy error, and a
calculator whose forces are not its energy's gradient."""

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT

from diffcrystal.errors import InputError
from diffcrystal.potential.md_check import energy_drift, run_md_check


def copper():
    return bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2)


class ScaledForces(Calculator):
    """EMT with forces scaled by ``factor``: not the gradient of its energy (non-conservative)."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, factor):
        super().__init__()
        self.factor, self.emt = factor, EMT()

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.results = {"energy": self.emt.get_potential_energy(atoms),
                        "forces": self.factor * self.emt.get_forces(atoms)}


def test_drift_is_the_least_squares_slope_in_meV_per_atom_per_ps():
    rng = np.random.default_rng(0)
    times = np.arange(0.0, 500.0, 2.0)  # fs
    energies = -3.5 + 2e-6 * times + rng.normal(0, 1e-5, len(times))  # eV/atom
    drift, fluctuation = energy_drift(times, energies)
    slope, intercept = np.polyfit(times, energies, 1)
    assert drift == pytest.approx(slope * 1e6)  # eV/fs → meV/ps
    assert drift == pytest.approx(2.0, rel=0.05)
    assert fluctuation == pytest.approx(1e3 * np.std(energies - (slope * times + intercept)))


def test_verlet_energy_error_grows_with_the_timestep_squared():
    small = run_md_check(copper(), EMT(), timestep_fs=1.0, nvt_steps=50, nve_steps=150)
    large = run_md_check(copper(), EMT(), timestep_fs=4.0, nvt_steps=50, nve_steps=150)
    assert small.atoms == 32 and small.ns_per_day > 0
    assert abs(small.drift_meV_atom_ps) < 0.1
    assert large.fluctuation_meV_atom > 5 * small.fluctuation_meV_atom  # (4/1)² = 16 for a harmonic system


def test_forces_that_are_not_the_energy_gradient_break_conservation():
    good = run_md_check(copper(), EMT(), timestep_fs=2.0, nvt_steps=50, nve_steps=150)
    bad = run_md_check(copper(), ScaledForces(1.5), timestep_fs=2.0, nvt_steps=50, nve_steps=150)
    assert bad.fluctuation_meV_atom > 20 * good.fluctuation_meV_atom


@pytest.mark.parametrize("kwargs", [{"temperature_K": 0}, {"timestep_fs": -1}, {"nve_steps": 2}])
def test_bad_settings_are_one_line_errors(kwargs):
    with pytest.raises(InputError, match="MD check needs"):
        run_md_check(copper(), EMT(), **kwargs)


def test_too_few_energies_for_a_drift_is_an_error():
    with pytest.raises(InputError, match="at least 3 finite energies"):
        energy_drift(np.array([0.0, 1.0]), np.array([1.0, np.nan]))


def test_the_script_writes_its_report_and_refuses_bad_input(tmp_path, capsys):
    import json

    from ase.io import write

    from tests.script_loading import load_script

    script = load_script("check_md")
    cif = tmp_path / "cu.cif"
    write(cif, bulk("Cu", "fcc", a=3.6, cubic=True))
    out = tmp_path / "md.json"
    assert script.main([str(cif), "--potential", "emt", "--supercell", "2", "1", "1", "--nvt", "10",
                        "--nve", "20", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["atoms"] == 8 and report["nve_steps"] == 20 and report["potential"] == "emt"
    assert "meV/atom/ps" in capsys.readouterr().out
    assert script.main([str(cif), "--potential", "emt", "--supercell", "0", "1", "1"]) == 1
    assert script.main([str(tmp_path / "missing.cif"), "--potential", "emt"]) == 1
    xenon = tmp_path / "xe.cif"
    write(xenon, bulk("Xe", "fcc", a=6.2))
    assert script.main([str(xenon), "--potential", "emt"]) == 1  # EMT has no Xe
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 3 and all(line.startswith("check_md: error:") for line in errors)
