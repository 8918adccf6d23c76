"""The Python API (for notebooks and scripts); ``diffcrystal sample`` and ``relax`` run on it.

Three calls::

    import diffcrystal

    gen = diffcrystal.load_generator()                  # the bundled default CSP model
    structures = gen.sample("SrTiO3", n=10, seed=0)     # list of pymatgen Structures
    results = diffcrystal.relax(structures, potential="sevennet-0")
    results[0].energy_per_atom, results[0].converged, results[0].structure

The same seed gives the same structures as ``diffcrystal sample --seed`` with the same
checkpoint, steps and batch size: both sample through
:func:`~diffcrystal.sampling.generate_batches`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal, Sequence

import torch

from diffcrystal.analogues import DEFAULT_MAX_ANALOGUE_DISTANCE
from diffcrystal.checkpoint import resolve_checkpoint
from diffcrystal.data.composition import parse_composition
from diffcrystal.data.crystal import Crystal
from diffcrystal.devices import DEVICES
from diffcrystal.errors import InputError
from diffcrystal.generator import Generator
from diffcrystal.potential.calculators import DEFAULT_POTENTIAL, Potential, resolve_potential
from diffcrystal.potential.relax import relax_many
from diffcrystal.potential.results import DEFAULT_FMAX_EV_A, DEFAULT_MAX_STEPS, RelaxResult, RelaxSettings
from diffcrystal.sampling import (
    SampleRun,
    check_options,
    generate_batches,
    plan_requests,
    plan_spacegroup_requests,
    sample_to_folder,
)

log = logging.getLogger(__name__)

OutputFormat = Literal["pymatgen", "ase", "crystal"]
"""What :meth:`StructureGenerator.sample` returns per structure: a pymatgen ``Structure``,
an ASE ``Atoms`` or a :class:`~diffcrystal.data.crystal.Crystal`."""

OUTPUT_FORMATS = ("pymatgen", "ase", "crystal")



def resolve_device(choice: str | torch.device) -> torch.device:
    """``'auto'`` (CUDA when available, else CPU), ``'cpu'``, ``'cuda'`` or a torch device."""
    if isinstance(choice, torch.device):
        return choice
    if choice not in DEVICES:
        raise InputError(f"unknown device {choice!r}; valid: {', '.join(DEVICES)}")
    if choice == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda requested but no CUDA device is available")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def _formula_units(value: int | Sequence[int] | None) -> list[int] | None:
    if value is None:
        return None
    units = [value] if isinstance(value, int) else list(value)
    if not units or not all(isinstance(z, int) and z >= 1 for z in units):
        raise InputError(f"formula units must be integers >= 1, got {value!r}")
    return units


class StructureGenerator:
    """A loaded generator checkpoint, ready to sample (made by :func:`load_generator`).

    Attributes
    ----------
    generator : the :class:`~diffcrystal.generator.Generator` (denoiser + diffusion).
    checkpoint : the checkpoint file it was loaded from.
    """

    def __init__(self, generator: Generator, checkpoint: Path):
        self.generator = generator
        self.checkpoint = Path(checkpoint)

    @property
    def mode(self) -> str:
        """``'csp'`` (structures for a given composition) or ``'denovo'``."""
        return self.generator.mode

    @property
    def default_steps(self) -> int:
        """Sampler steps used when none are given (the checkpoint's recommendation)."""
        return self.generator.experiment.sampling.num_steps

    def __repr__(self) -> str:
        return f"StructureGenerator(mode={self.mode!r}, checkpoint={str(self.checkpoint)!r})"

    def sample(
        self,
        composition: str | None = None,
        n: int = 10,
        *,
        seed: int = 0,
        formula_units: int | Sequence[int] | None = None,
        steps: int | None = None,
        batch_size: int = 100,
        format: OutputFormat = "pymatgen",
        progress: bool = False,
        spacegroup: int | None = None,
        wyckoff: str = "auto",
    ) -> list:
        """Sample ``n`` structures, in memory.

        Parameters
        ----------
        composition : formula such as ``'SrTiO3'`` (CSP checkpoints; ``None`` de novo).
        n : number of structures.
        seed : random seed; equal seeds (with equal ``steps`` and ``batch_size``) give equal
            structures, the same as ``diffcrystal sample --seed``.
        formula_units : formula units per cell, or a list cycled through (like ``--formula-units 1,2``);
            default 1, or with ``spacegroup`` every Z that fits.
        steps : sampler steps (default :attr:`default_steps`).
        batch_size : structures sampled together.
        format : ``'pymatgen'`` (``Structure``), ``'ase'`` (``Atoms``) or ``'crystal'``.
        spacegroup : sample on this space group (1..230; CSP), in its conventional cell, with
            ``wyckoff`` ``'auto'`` or an assignment such as ``'Na:4a,Cl:4b'``, as
            ``diffcrystal sample --spacegroup``; extra symmetry is broken as there.

        Returns
        -------
        list
            ``n`` entries in request order; ``None`` where a sample is no crystal (e.g. a
            collapsed lattice; a warning counts them). Lattice rows in Å, as sampled (not
            symmetrised, not relaxed).
        """
        if format not in OUTPUT_FORMATS:
            raise InputError(f"unknown format {format!r}; valid: {', '.join(OUTPUT_FORMATS)}")
        parsed = parse_composition(composition) if composition is not None else None
        num_steps = self.default_steps if steps is None else steps
        check_options(self.generator, n, num_steps, batch_size)
        assignments = None
        if spacegroup is not None:
            if parsed is None:
                raise InputError("spacegroup needs a composition (crystal-structure prediction)")
            assignments = plan_spacegroup_requests(self.generator, n, parsed, spacegroup, wyckoff,
                                                   _formula_units(formula_units))
            plans = [(a.num_atoms, a.atomic_numbers()) for a in assignments]
        else:
            plans = plan_requests(self.generator, n, parsed, _formula_units(formula_units) or [1], seed)
        crystals = []
        for _start, batch in generate_batches(self.generator, plans, num_steps=num_steps, batch_size=batch_size,
                                              seed=seed, progress=progress, assignments=assignments):
            crystals.extend(batch)
        if assignments is not None:
            from diffcrystal.spacegroup import break_extra_symmetry

            crystals = [break_extra_symmetry(c, a, seed=i)[0] if isinstance(c, Crystal) else c
                        for i, (c, a) in enumerate(zip(crystals, assignments))]
        failed = [str(c) for c in crystals if not isinstance(c, Crystal)]
        if failed:
            log.warning("%d of %d samples are no crystal (first: %s); returned as None",
                        len(failed), n, failed[0])
        convert = {"pymatgen": Crystal.to_structure, "ase": Crystal.to_atoms, "crystal": lambda c: c}[format]
        return [convert(c) if isinstance(c, Crystal) else None for c in crystals]

    def sample_to_folder(
        self,
        out_dir: str | Path,
        composition: str | None = None,
        n: int = 100,
        *,
        seed: int = 0,
        formula_units: int | Sequence[int] | None = None,
        steps: int | None = None,
        batch_size: int = 100,
        resume: bool = False,
        progress: bool = True,
        spacegroup: int | None = None,
        wyckoff: str = "auto",
        analogue_table: str | Path | None = None,
        max_analogue_distance: float | None = DEFAULT_MAX_ANALOGUE_DISTANCE,
    ) -> SampleRun:
        """Sample ``n`` structures into ``out_dir`` as ``diffcrystal sample`` does (CIFs,
        ``samples.extxyz``, ``summary.csv``, ``run.json``, ``overview.png``); ``spacegroup``
        and ``wyckoff`` as in :meth:`sample`; ``analogue_table``: sample on the groups of the
        composition's nearest chemical analogues in that table (:mod:`diffcrystal.analogues`),
        those within ``max_analogue_distance`` Mendeleev units (None: any)."""
        return sample_to_folder(
            self.generator,
            n=n,
            out_dir=out_dir,
            composition=composition,  # the formula as typed, for run.json
            formula_units=_formula_units(formula_units),
            num_steps=self.default_steps if steps is None else steps,
            batch_size=batch_size,
            seed=seed,
            resume=resume,
            checkpoint_path=self.checkpoint,
            progress=progress,
            spacegroup=spacegroup,
            wyckoff=wyckoff,
            analogue_table=analogue_table,
            max_analogue_distance=max_analogue_distance,
        )


def load_generator(
    checkpoint: str | Path | None = None,
    *,
    mode: Literal["csp", "denovo"] = "csp",
    device: str | torch.device = "auto",
) -> StructureGenerator:
    """Load a generator: a checkpoint file, a bundled model's name (``'carbon24_csp'``), or
    ``None`` for the bundled default of ``mode``. ``device``: ``'auto'``, ``'cpu'`` or ``'cuda'``."""
    if mode not in ("csp", "denovo"):
        raise InputError(f"unknown mode {mode!r}; valid: csp, denovo")
    path = resolve_checkpoint(checkpoint, mode)
    return StructureGenerator(Generator.from_checkpoint(path, device=resolve_device(device)), path)


def _as_relaxable(item, label: str):
    """A :class:`Crystal` or ASE ``Atoms`` for :func:`relax_many` from ``item`` (pymatgen
    ``Structure``, ASE ``Atoms`` or ``Crystal``)."""
    from pymatgen.core import Structure

    if isinstance(item, Structure):
        return Crystal.from_structure(item, label=label)
    if isinstance(item, Crystal) or hasattr(item, "get_positions"):
        return item
    raise InputError(f"structure {label}: expected a pymatgen Structure, ASE Atoms or Crystal, "
                     f"got {type(item).__name__}")


def relax(
    structures: Sequence,
    potential: str | Potential = DEFAULT_POTENTIAL,
    *,
    fmax: float = DEFAULT_FMAX_EV_A,
    max_steps: int = DEFAULT_MAX_STEPS,
    optimizer: Literal["FIRE", "BFGS"] = "FIRE",
    workers: int = 1,
    device: str = "cpu",
    progress: bool = False,
) -> list[RelaxResult]:
    """Relax positions and cell of each structure with one potential (as ``diffcrystal relax``).

    Parameters
    ----------
    structures : pymatgen ``Structure``, ASE ``Atoms`` or ``Crystal`` objects; ``None``
        entries (failed samples) give a ``'failed'`` result.
    potential : ``'sevennet-0'``, ``'emt'``, ``'chgnet'``, a fitted model path, or a
        :class:`~diffcrystal.potential.calculators.Potential` already resolved.
    fmax : force threshold in eV/Å; max_steps : step cap; optimizer : ``'FIRE'`` or ``'BFGS'``.
    workers : processes; 1 (default) relaxes in this process. More start worker processes
        that re-import the calling script, so a script must then run its work under
        ``if __name__ == "__main__":``; when every worker dies,
        :class:`~diffcrystal.potential.relax.WorkersDied` is raised.

    Returns
    -------
    list[RelaxResult]
        One per structure, in order: ``ok`` (whether there is a relaxed structure),
        ``structure`` (relaxed pymatgen ``Structure``, ``None`` when not ``ok``), ``atoms``
        (ASE), ``energy_per_atom`` (eV/atom), ``converged``, ``status``, ``reason``,
        ``steps``, ``max_force`` (eV/Å, the generalised force tested against ``fmax``),
        ``stress`` (eV/Å³), ``space_group``.

    Raises :class:`InputError` before relaxing anything for an unknown potential or elements
    it has no parameters for.
    """
    settings = RelaxSettings(fmax=fmax, max_steps=max_steps, optimizer=optimizer)
    resolved = resolve_potential(potential, device)
    labels = [str(i) for i in range(len(structures))]
    present = [(label, _as_relaxable(item, label)) for label, item in zip(labels, structures) if item is not None]
    done = {r.label: r for r in relax_many(present, resolved, settings, workers=workers,
                                           progress=progress)} if present else {}
    return [done.get(label) or RelaxResult(label, "failed", resolved.label, reason="no structure (None)")
            for label in labels]
