"""SevenNet-0 through the batched engine: one batched model call equals per-structure calculator
calls, and on 20 YBa2Cu3O7 candidates the batched relaxation agrees with the ASE path."""

import numpy as np
import pytest
from ase.build import bulk

from tests.potential.test_batched_relax import ENERGY_TOLERANCE_EV_ATOM, LATTICE_TOLERANCE

AGREEMENT_STRUCTURES = 20
"""Structures relaxed by both engines in the agreement test (the issue's 20)."""


@pytest.fixture(scope="module")
def sevennet():
    from diffcrystal.potential import load_calculator

    return load_calculator("sevennet-0")


def ybco_candidates(n, seed=0):
    from scripts.benchmark_relax import candidates

    return [(f"ybco-{i:02d}", atoms) for i, atoms in enumerate(candidates(n, 0.1, 0.04, seed))]


def test_batched_call_equals_calculator(sevennet):
    """Mixed sizes (2, 8 and 13 atoms) split into chunks of at most 16 atoms, plus an element
    SevenNet-0 does not know, which fails alone."""
    from ase import Atoms

    from diffcrystal.potential.evaluators import SevenNetBatchEvaluator

    nacl = bulk("NaCl", "rocksalt", a=5.6, cubic=True)
    nacl.rattle(0.05, seed=1)
    silicon = bulk("Si", "diamond", a=5.5)
    silicon.rattle(0.05, seed=2)
    unknown = Atoms("Fm", cell=np.eye(3) * 4, pbc=True)
    structures = [nacl, ybco_candidates(1)[0][1], unknown, silicon]
    outputs = SevenNetBatchEvaluator(sevennet, max_atoms_per_call=16)(structures)
    assert isinstance(outputs[2], Exception) and "100" in str(outputs[2])
    for atoms, output in zip(structures, outputs):
        if atoms is unknown:
            continue
        energy, forces, stress = output
        reference = atoms.copy()
        reference.calc = sevennet
        assert energy == pytest.approx(reference.get_potential_energy(), abs=1e-4)
        np.testing.assert_allclose(forces, reference.get_forces(), atol=1e-4)
        np.testing.assert_allclose(stress, reference.get_stress(), atol=1e-6)


# ~10 min of CPU per engine on a free core (20 x ~70 steps x ~0.13 s)
@pytest.mark.slow
def test_batched_agrees_with_ase_on_20_ybco(sevennet):
    from diffcrystal.potential import RelaxSettings, relax_many

    items = ybco_candidates(AGREEMENT_STRUCTURES)
    reference = relax_many(items, "sevennet-0", RelaxSettings(engine="ase"), workers=1,
                           progress=False, calculator=sevennet)
    batched = relax_many(items, "sevennet-0", RelaxSettings(engine="batched"), workers=1,
                         progress=False, calculator=sevennet)
    for ref, new in zip(reference, batched):
        assert new.status == ref.status, ref.label
        if ref.atoms is None:
            continue
        assert abs(new.energy_per_atom - ref.energy_per_atom) < ENERGY_TOLERANCE_EV_ATOM, ref.label
        np.testing.assert_allclose(new.atoms.cell.cellpar()[:3], ref.atoms.cell.cellpar()[:3],
                                   rtol=LATTICE_TOLERANCE)
    assert sum(r.status == "converged" for r in batched) >= AGREEMENT_STRUCTURES // 2


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_batched_relaxation_on_cuda_matches_cpu(sevennet):
    """The batched engine with SevenNet-0 on a GPU follows the CPU run: same verdicts, energies
    within the engines' agreement tolerance."""
    from diffcrystal.potential import RelaxSettings, load_calculator, relax_many

    items = ybco_candidates(4)
    settings = RelaxSettings(engine="batched", max_steps=30)
    on_cpu = relax_many(items, "sevennet-0", settings, workers=1, progress=False, calculator=sevennet)
    on_cuda = relax_many(items, "sevennet-0", settings, workers=1, device="cuda", progress=False,
                         calculator=load_calculator("sevennet-0", device="cuda"))
    for cpu, cuda in zip(on_cpu, on_cuda):
        assert cuda.status == cpu.status, cpu.label
        assert abs(cuda.energy_per_atom - cpu.energy_per_atom) < ENERGY_TOLERANCE_EV_ATOM, cpu.label
