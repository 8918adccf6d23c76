"""Relaxation trajectories as ASE ``.traj`` files (``diffcrystal relax --trajectory``).

A :class:`TrajectoryRecorder` keeps every evaluated state of one relaxation (the structure
with its energy in eV, forces (N, 3) in eV/Å and Voigt stress (6,) in eV/Å³, step 0 first)
and writes them at the end as one file, atomically (no half-written file when a run is
interrupted). Read one back with ``ase.io.read(path, ":")``, or a stride of a folder's
trajectories as labelled training frames with :func:`trajectory_frames`.
"""

from __future__ import annotations

from pathlib import Path

TRAJECTORY_SUFFIX = ".traj"
"""File ending of a trajectory; ``<folder>/<structure id>.traj``."""


def trajectory_path(folder: str | Path, label: str) -> Path:
    """Where the trajectory of structure ``label`` is written in ``folder``."""
    return Path(folder) / f"{label}{TRAJECTORY_SUFFIX}"


def read_states(folder: str | Path, label: str, every: int = 1, keep_last: bool = False) -> list:
    """Every ``every``-th state of structure ``label``'s trajectory in ``folder`` (step 0 first),
    with the last state added when ``keep_last`` and the stride misses it; each keeps its teacher
    labels and is tagged ``info["candidate"] = label``."""
    from ase.io import read

    states = read(str(trajectory_path(folder, label)), index=":")
    picked = states[::every] + ([states[-1]] if keep_last and (len(states) - 1) % every else [])
    for state in picked:
        state.info["candidate"] = label
    return picked


def trajectory_frames(folder: str | Path, exclude: set[str], every: int) -> tuple[list, list[str]]:
    """Every ``every``-th state and the last state of each trajectory in ``folder`` whose
    structure is not in ``exclude``; returns (frames, structure ids used, sorted)."""
    from diffcrystal.errors import InputError

    used = sorted(path.stem for path in Path(folder).glob(f"*{TRAJECTORY_SUFFIX}") if path.stem not in exclude)
    frames = [state for label in used for state in read_states(folder, label, every, keep_last=True)]
    if not frames:
        raise InputError(f"{folder}: no trajectories left after excluding {len(exclude)} candidates")
    return frames, used


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
