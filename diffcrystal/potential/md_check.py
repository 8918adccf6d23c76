"""Deployment check of a potential: a short molecular dynamics run, its energy conservation and
its speed.

A potential that relaxes candidates well can still be unfit for dynamics (rough energy
surface, forces that are not the energy's gradient). The check thermalises a crystal with a
Bussi (stochastic velocity rescaling) NVT run at ``temperature_K``, then integrates it in NVE
(velocity Verlet) and reports:

- **drift**: the slope of a least-squares line through the total energy per atom of the NVE
  run, in meV/atom/ps (a conservative integrator with a smooth potential gives near zero);
- **fluctuation**: the standard deviation of the NVE total energy per atom about that line,
  meV/atom (the integrator's short-time error, which grows as dt²);
- **speed**: simulated ns per day of wall time, from the NVE part (the force calls dominate).

Units are ASE's (eV, Å, fs through ``ase.units.fs``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from diffcrystal.errors import InputError

__all__ = ["MDCheck", "energy_drift", "run_md_check"]

SECONDS_PER_DAY = 86400.0


@dataclass(frozen=True)
class MDCheck:
    """Outcome of :func:`run_md_check`: ``drift_meV_atom_ps``, ``fluctuation_meV_atom``,
    ``ns_per_day``, the NVE ``mean_temperature_K``, the atoms simulated and the settings."""

    atoms: int
    temperature_K: float
    timestep_fs: float
    nvt_steps: int
    nve_steps: int
    drift_meV_atom_ps: float
    fluctuation_meV_atom: float
    mean_temperature_K: float
    ns_per_day: float


def energy_drift(times_fs: np.ndarray, energies_eV_atom: np.ndarray) -> tuple[float, float]:
    """``(drift, fluctuation)`` of a total-energy series: the least-squares slope in
    meV/atom/ps and the standard deviation of the residuals in meV/atom."""
    times_fs, energies = np.asarray(times_fs, dtype=np.float64), np.asarray(energies_eV_atom, dtype=np.float64)
    if len(times_fs) < 3 or len(times_fs) != len(energies) or not np.all(np.isfinite(energies)):
        raise InputError("energy drift needs at least 3 finite energies, one per time")
    design = np.column_stack([times_fs, np.ones_like(times_fs)])
    (slope, intercept), *_ = np.linalg.lstsq(design, energies, rcond=None)
    residuals = energies - (slope * times_fs + intercept)
    return float(slope * 1e3 * 1e3), float(residuals.std() * 1e3)  # eV/fs → meV/ps; eV → meV


def run_md_check(atoms, calculator, temperature_K: float = 300.0, timestep_fs: float = 1.0,
                 nvt_steps: int = 200, nve_steps: int = 500, seed: int = 0) -> MDCheck:
    """The module docstring's check on a copy of ``atoms`` (ASE ``Atoms``, periodic) with
    ``calculator``; Maxwell-Boltzmann velocities at ``temperature_K`` from ``seed``, Bussi
    thermostat with a 100 fs time constant."""
    from ase import units
    from ase.md.bussi import Bussi
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
    from ase.md.verlet import VelocityVerlet

    if not (temperature_K > 0 and timestep_fs > 0 and nvt_steps >= 0 and nve_steps >= 3):
        raise InputError("MD check needs temperature > 0 K, timestep > 0 fs, nvt steps >= 0 and nve steps >= 3, "
                         f"got {temperature_K} K, {timestep_fs} fs, {nvt_steps}, {nve_steps}")
    system = atoms.copy()
    system.calc = calculator
    rng = np.random.default_rng(seed)
    MaxwellBoltzmannDistribution(system, temperature_K=temperature_K, rng=rng)
    Stationary(system)
    if nvt_steps:
        Bussi(system, timestep_fs * units.fs, temperature_K=temperature_K, taut=100 * units.fs,
              rng=rng).run(nvt_steps)
    times, energies, temperatures = [], [], []
    dynamics = VelocityVerlet(system, timestep_fs * units.fs)

    def record() -> None:
        times.append(dynamics.nsteps * timestep_fs)
        energies.append(system.get_total_energy() / len(system))
        temperatures.append(system.get_temperature())

    dynamics.attach(record, interval=1)
    started = time.perf_counter()
    dynamics.run(nve_steps)
    seconds = time.perf_counter() - started
    if not np.all(np.isfinite(energies)):
        raise InputError("the MD run gave a non-finite energy (the potential blew up)")
    drift, fluctuation = energy_drift(np.array(times), np.array(energies))
    return MDCheck(len(system), temperature_K, timestep_fs, nvt_steps, nve_steps, drift, fluctuation,
                   float(np.mean(temperatures)), nve_steps * timestep_fs * 1e-6 / seconds * SECONDS_PER_DAY)
