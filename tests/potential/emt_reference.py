"""Reference structures and EMT's own minimum, shared by the potential tests."""

import numpy as np
from ase import Atoms
from ase.calculators.emt import EMT
from ase.eos import EquationOfState


def cu3au_l12(a=3.75):
    """Cu3Au in the L1_2 structure (Au on the cube corner, Cu on the face centres), Pm-3m."""
    return Atoms("AuCu3", scaled_positions=[[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
                 cell=np.eye(3) * a, pbc=True)


def emt_lattice_constant(atoms):
    """EMT's equilibrium cubic lattice constant from an E(V) scan and an equation-of-state fit,
    independent of the optimizer under test."""
    volumes, energies = [], []
    for scale in np.linspace(0.97, 1.03, 9):
        scaled = atoms.copy()
        scaled.set_cell(atoms.cell.array * scale, scale_atoms=True)
        scaled.calc = EMT()
        volumes.append(scaled.get_volume())
        energies.append(scaled.get_potential_energy())
    v0, _, _ = EquationOfState(volumes, energies, eos="birchmurnaghan").fit()
    return v0 ** (1 / 3)
