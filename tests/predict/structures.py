"""Hand-made AB crystals for the predict tests (EMT covers Cu, Au, Ni, Al, Ag, Pd, Pt)."""

import numpy as np

from diffcrystal.analogues import AnalogueLibrary
from diffcrystal.data.crystal import Crystal

CU, AU, NI, AL, AG, PD = 29, 79, 28, 13, 47, 46


def l10(a: float = 3.95, c: float = 3.75, species=(CU, AU), label: str = "L10-CuAu") -> Crystal:
    """The tetragonal L1_0 cell (fcc-based, alternating layers), primitive setting: 2 atoms."""
    lattice = np.array([[a / np.sqrt(2), 0, 0], [0, a / np.sqrt(2), 0], [0, 0, c]])
    return Crystal(lattice, [[0, 0, 0], [0.5, 0.5, 0.5]], list(species), label=label,
                   properties={"e_above_hull": 0.0})


def b2(a: float = 2.9, species=(NI, AL), label: str = "B2-NiAl") -> Crystal:
    """The CsCl-type B2 cell: 2 atoms."""
    return Crystal(np.eye(3) * a, [[0, 0, 0], [0.5, 0.5, 0.5]], list(species), label=label,
                   properties={"e_above_hull": 0.0})


def rock_salt(a: float = 5.4, species=(AG, PD), label: str = "B1-AgPd") -> Crystal:
    """The rock-salt B1 cell, primitive fcc setting: 2 atoms."""
    lattice = a / 2 * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]])
    return Crystal(lattice, [[0, 0, 0], [0.5, 0.5, 0.5]], list(species), label=label,
                   properties={"e_above_hull": 0.05})


def ab_library() -> AnalogueLibrary:
    """Three AB structure types, the CuAu one among them."""
    return AnalogueLibrary.from_crystals([b2(), l10(), rock_salt()])
