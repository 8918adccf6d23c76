"""Relaxation trajectories as ASE ``.traj`` files (``diffcrystal relax --trajectory``).

A :class:`TrajectoryRecorder` keeps every evaluated state of one relaxation (the structure
with its energy in eV, forces (N, 3) in eV/Å and Voigt stress (6,) in eV/Å³, step 0 first)
and writes them at the end as one file, atomically (no half-written file when a run is
interrupted). Read one back with ``ase.io.read(path, ":")``.
"""

from __future__ import annotations

from pathlib import Path

TRAJECTORY_SUFFIX = ".traj"
"""File ending of a trajectory; ``<folder>/<structure id>.traj``."""


def trajectory_path(folder: str | Path, label: str) -> Path:
    """Where the trajectory of structure ``label`` is written in ``folder``."""
    return Path(folder) / f"{label}{TRAJECTORY_SUFFIX}"


class TrajectoryRecorder:
    """The states of one relaxation, written with :meth:`write`."""

    def __init__(self):
        self.frames: list = []

    def record(self, atoms, energy: float, forces, stress) -> None:
        """Keep a copy of ``atoms`` with its ``energy`` (eV), ``forces`` (N, 3) eV/Å and Voigt
        ``stress`` (6,) eV/Å³."""
        import numpy as np
        from ase.calculators.singlepoint import SinglePointCalculator

        frame = atoms.copy()
        frame.calc = SinglePointCalculator(frame, energy=float(energy), forces=np.array(forces, float),
                                           stress=np.array(stress, float))
        self.frames.append(frame)

    def write(self, path: str | Path) -> None:
        """Write the recorded states to ``path`` (ASE trajectory), atomically."""
        import io

        from ase.io import write

        from diffcrystal.atomic_write import atomic_write_bytes

        buffer = io.BytesIO()
        write(buffer, self.frames, format="traj")
        atomic_write_bytes(path, buffer.getvalue())
