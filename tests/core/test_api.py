"""The Python API: ``diffcrystal.load_generator``, ``StructureGenerator.sample``, ``diffcrystal.relax``."""

import subprocess
import sys

import numpy as np
import pytest
from ase import Atoms
from ase.io import read
from pymatgen.core import Lattice, Structure

import diffcrystal
from diffcrystal.checkpoint import bundled_checkpoint
from diffcrystal.cli.main import main
from diffcrystal.errors import InputError

STEPS = 6


@pytest.fixture(scope="module")
def csp(tiny_generators):
    return diffcrystal.load_generator(tiny_generators["csp"], device="cpu")


def test_import_is_cheap_and_names_resolve_lazily():
    code = ("import sys, diffcrystal; assert 'torch' not in sys.modules, 'torch imported'; "
            "diffcrystal.load_generator; assert 'torch' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
    from diffcrystal import api

    assert diffcrystal.load_generator is api.load_generator and diffcrystal.relax is api.relax
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        diffcrystal.nope


def test_sample_returns_structures_of_the_composition(csp):
    structures = csp.sample("SrTiO3", n=3, seed=0, formula_units=[1, 2], steps=STEPS)
    assert len(structures) == 3
    assert all(isinstance(s, Structure) for s in structures)
    assert [len(s) for s in structures] == [5, 10, 5]
    assert {s.composition.reduced_formula for s in structures} == {"SrTiO3"}


def test_same_seed_same_structures_and_equal_to_the_cli(csp, tmp_path):
    first = csp.sample("NaCl", n=3, seed=7, steps=STEPS, batch_size=2, format="ase")
    again = csp.sample("NaCl", n=3, seed=7, steps=STEPS, batch_size=2, format="ase")
    other = csp.sample("NaCl", n=3, seed=8, steps=STEPS, batch_size=2, format="ase")
    assert all(isinstance(a, Atoms) for a in first)
    assert all(a.get_chemical_formula() == "ClNa" for a in first)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.cell.array, b.cell.array)
        np.testing.assert_array_equal(a.get_scaled_positions(), b.get_scaled_positions())
    assert not np.allclose(first[0].cell.array, other[0].cell.array)

    assert main(["sample", "--checkpoint", str(csp.checkpoint), "--composition", "NaCl", "--n", "3",
                 "--seed", "7", "--steps", str(STEPS), "--batch-size", "2", "--out", str(tmp_path / "cli"),
                 "--quiet"]) == 0
    frames = read(tmp_path / "cli" / "samples.extxyz", ":")
    assert len(frames) == 3
    for api_atoms, cli_atoms in zip(first, frames):  # the file holds the cell in the standard orientation
        np.testing.assert_allclose(api_atoms.cell.cellpar(), cli_atoms.cell.cellpar(), atol=1e-5)
        np.testing.assert_allclose(api_atoms.get_scaled_positions(), cli_atoms.get_scaled_positions(), atol=1e-6)
        assert list(api_atoms.numbers) == list(cli_atoms.numbers)


def test_crystal_format_and_bad_requests(csp, tiny_generators):
    (crystal,) = csp.sample("CsCl", n=1, steps=STEPS, format="crystal")
    assert sorted(crystal.atomic_numbers.tolist()) == [17, 55]
    with pytest.raises(InputError, match="unknown format 'cif'"):
        csp.sample("CsCl", n=1, steps=STEPS, format="cif")
    with pytest.raises(InputError, match="pass --composition"):
        csp.sample(None, n=1, steps=STEPS)
    with pytest.raises(InputError, match="--n must be at least 1"):
        csp.sample("CsCl", n=0)
    with pytest.raises(InputError, match="--steps must be in 1..100, got 0"):
        csp.sample("CsCl", n=1, steps=0)
    with pytest.raises(InputError, match="formula units must be integers >= 1"):
        csp.sample("CsCl", n=1, formula_units=0)
    with pytest.raises(InputError, match="unknown device 'tpu'"):
        diffcrystal.load_generator(tiny_generators["csp"], device="tpu")
    denovo = diffcrystal.load_generator(tiny_generators["denovo"], device="cpu")
    assert denovo.mode == "denovo"
    assert len(denovo.sample(n=2, steps=STEPS)) == 2
    with pytest.raises(InputError, match="generates de novo"):
        denovo.sample("CsCl", n=1, steps=STEPS)


def test_default_generator_is_the_bundled_csp_model():
    gen = diffcrystal.load_generator(device="cpu")
    assert gen.mode == "csp" and gen.checkpoint == bundled_checkpoint("csp")
    by_name = diffcrystal.load_generator("carbon24_csp", device="cpu")
    assert by_name.checkpoint.name == "carbon24_csp.safetensors"
    (structure,) = gen.sample("SrTiO3", n=1, steps=2)
    assert structure is None or structure.composition.reduced_formula == "SrTiO3"
    with pytest.raises(InputError, match="not found: neither a file nor a bundled model"):
        diffcrystal.load_generator("no_such_model")


def test_relax_with_emt_on_a_tiny_set():
    from ase.build import bulk
    from ase.calculators.emt import EMT

    strained = Structure(Lattice.cubic(3.75), ["Cu"] * 4,
                         [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    atoms = bulk("Al", "fcc", a=4.2, cubic=True)
    results = diffcrystal.relax([strained, None, atoms], potential="emt", workers=1)
    assert [r.label for r in results] == ["0", "1", "2"]
    copper, missing, aluminium = results
    assert copper.converged and copper.status == "converged" and copper.potential == "emt"
    relaxed = copper.structure
    assert isinstance(relaxed, Structure) and relaxed.composition.reduced_formula == "Cu"
    assert 3.55 < relaxed.lattice.a < 3.65  # EMT's fcc Cu minimum is near 3.59 Å
    check = relaxed.to_ase_atoms()
    check.calc = EMT()
    assert copper.energy_per_atom == pytest.approx(check.get_potential_energy() / len(check), abs=1e-6)
    initial = strained.to_ase_atoms()
    initial.calc = EMT()
    assert copper.energy_per_atom < initial.get_potential_energy() / len(initial)
    assert missing.status == "failed" and "no structure" in missing.reason and not missing.rankable
    assert aluminium.converged and aluminium.formula == "Al"
    with pytest.raises(InputError, match="expected a pymatgen Structure, ASE Atoms or Crystal, got str"):
        diffcrystal.relax(["Cu"], potential="emt", workers=1)
