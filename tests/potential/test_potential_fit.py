"""Own NequIP/Allegro students: config generation (fast) and a real fit on EMT labels (slow)."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT

from diffcrystal.errors import InputError
from diffcrystal.potential.nequip_state import preserved_torch_state
from diffcrystal.potential.fit import (
    FitSettings,
    composition_energy_shifts,
    fit_potential,
    force_mae,
    label_frames,
    make_frames,
    training_config,
    write_frames,
)
from tests.potential.emt_reference import cu3au_l12, emt_lattice_constant

STUDENT_LATTICE_TOLERANCE = 0.01
"""The issue's bar: the student's relaxed lattice constant within 1 % of EMT's."""


def cu_au_structures():
    bases = [bulk("Cu", "fcc", a=3.6, cubic=True), bulk("Au", "fcc", a=4.08, cubic=True), cu3au_l12()]
    return bases + [b.repeat(2) for b in bases]


def test_preserved_torch_state_restores_dtype_and_rng():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    with preserved_torch_state():
        torch.set_default_dtype(torch.float64)
        torch.manual_seed(123)
        torch.rand(5)
    assert torch.get_default_dtype() == torch.float32
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("arch, target", [("nequip", "nequip.model.NequIPGNNModel"),
                                          ("allegro", "allegro.model.AllegroModel")])
def test_training_config_is_a_complete_nequip_config(tmp_path, arch, target):
    config = training_config(tmp_path / "frames.extxyz", ["Au", "Cu"], 50, FitSettings(arch=arch, epochs=3))
    reloaded = yaml.safe_load(yaml.safe_dump(config))
    assert reloaded["training_module"]["model"]["_target_"] == target
    split = reloaded["data"]["split_dataset"]
    assert split["train"] + split["val"] + split["test"] == 50
    assert reloaded["trainer"]["max_epochs"] == 3
    assert reloaded["model_type_names"] == ["Au", "Cu"]


def test_fit_settings_and_frames_are_checked(tmp_path):
    with pytest.raises(InputError, match="architecture"):
        FitSettings(arch="mace")
    unlabelled = tmp_path / "frames.extxyz"
    write_frames(make_frames([bulk("Cu", "fcc", a=3.6, cubic=True)], copies=4), unlabelled)
    with pytest.raises(InputError, match="no energy/forces labels"):
        fit_potential(unlabelled, tmp_path / "fit")


def test_energy_shifts_recover_per_species_energies():
    from ase.calculators.singlepoint import SinglePointCalculator

    mu = {"Cu": -3.5, "O": -4.25}
    frames = []
    for formula in ("Cu2O", "CuO", "Cu4O2", "CuO2"):
        atoms = Atoms(formula, positions=np.zeros((len(Atoms(formula)), 3)))
        energy = sum(mu[s] for s in atoms.get_chemical_symbols())
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=np.zeros((len(atoms), 3)))
        frames.append(atoms)
    shifts = composition_energy_shifts(frames, ["Cu", "O", "Y"])
    assert [shifts["Cu"], shifts["O"]] == pytest.approx([-3.5, -4.25])
    assert shifts["Y"] == pytest.approx(sum(f.calc.results["energy"] for f in frames) / sum(map(len, frames)))
    config = training_config(Path("f.extxyz"), ["Cu", "O", "Y"], 20, FitSettings(), shifts)
    assert config["training_module"]["model"]["per_type_energy_shifts"] == shifts


def test_make_frames_rattles_and_strains():
    base = bulk("Cu", "fcc", a=3.6, cubic=True)
    frames = make_frames([base], copies=5, seed=1)
    assert len(frames) == 5
    assert all(not np.allclose(f.cell.array, base.cell.array) for f in frames)
    labelled, skipped = label_frames(frames, "emt")
    assert skipped == 0 and all(f.calc.results["forces"].shape == (4, 3) for f in labelled)


@pytest.fixture(scope="module")
def emt_student(tmp_path_factory):
    """A NequIP student fitted on EMT-labelled Cu/Au frames (~2-3 min: ~40 s training,
    ~70 s AOTInductor compilation on 2 cores)."""
    folder = tmp_path_factory.mktemp("student")
    frames, skipped = label_frames(make_frames(cu_au_structures(), copies=15, seed=0), "emt")
    assert skipped == 0
    write_frames(frames, folder / "frames.extxyz")
    result = fit_potential(folder / "frames.extxyz", folder / "fit", FitSettings(arch="nequip", epochs=60))
    return result


@pytest.mark.slow
def test_nequip_student_matches_emt(emt_student):
    from diffcrystal.potential import RelaxSettings, load_calculator, relax_many

    assert torch.get_default_dtype() == torch.float32
    calculator = load_calculator(emt_student.model_path.parent)
    assert torch.get_default_dtype() == torch.float32  # nequip's float64 did not leak
    held_out, _ = label_frames(make_frames(cu_au_structures(), copies=3, seed=99), "emt")
    errors = force_mae(calculator, held_out)
    print(f"student errors on held-out EMT frames: {errors}")
    assert errors["forces_mae_eV_A"] < 0.1
    assert torch.get_default_dtype() == torch.float32
    starts = [("cu", bulk("Cu", "fcc", a=3.65, cubic=True)), ("l12", cu3au_l12(3.66))]
    for _, atoms in starts:
        atoms.rattle(0.03, seed=1)
    results = relax_many(starts, str(emt_student.model_path), RelaxSettings(), workers=1,
                         progress=False, calculator=calculator)
    references = {"cu": emt_lattice_constant(bulk("Cu", "fcc", a=3.6, cubic=True)),
                  "l12": emt_lattice_constant(cu3au_l12())}
    for result in results:
        assert result.status == "converged", result.reason
        assert result.potential.startswith("nequip:")
        lengths = result.atoms.cell.cellpar()[:3]
        print(f"{result.label}: student a = {lengths}, EMT a = {references[result.label]:.4f}")
        np.testing.assert_allclose(lengths, references[result.label], rtol=STUDENT_LATTICE_TOLERANCE)


def test_make_frames_adds_relaxation_snapshots():
    base = bulk("Cu", "fcc", a=3.5, cubic=True)
    base.rattle(0.05, seed=2)
    frames = make_frames([("cu", base)], copies=2, calculator=EMT(), snapshots=3, snapshot_every=2)
    assert len(frames) == 5
    assert all(frame.calc is None for frame in frames)
