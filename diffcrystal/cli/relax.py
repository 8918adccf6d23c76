"""``diffcrystal relax INPUT... --potential NAME``: relax candidates, write CIFs and a summary.

INPUT is a sample folder (``summary.csv`` with an ``id`` column + ``<id>.cif``), a folder of
CIFs, CIF files or an extxyz file. Output (``--out``, default ``<first INPUT>-relaxed``, or
``-relaxed-2``... when an earlier relaxation is there) is itself a sample folder: ``<id>.cif``
per relaxed structure and ``summary.csv`` with the relaxed structure in the sample summary's
columns (formula, atoms, space groups, lattice, volume, density, shortest distance), status
(``converged``, ``not_converged`` at the step cap, ``exploded``, ``failed``), the reason,
energy per atom, max force, stress and the potential used, then the input summary's other
columns; ``--trajectory`` adds ``trajectories/<id>.traj``. Inputs and earlier outputs are never
overwritten; the output folder, the potential and the elements it covers are checked before
any relaxation starts; a CIF that cannot be read is a ``failed`` row.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from diffcrystal.devices import DEVICES
from diffcrystal.errors import InputError
from diffcrystal.plural import counted
from diffcrystal.potential.calculators import DEFAULT_POTENTIAL, POTENTIAL_NAMES
from diffcrystal.potential.relax import DEFAULT_WORKERS
from diffcrystal.potential.results import (
    DEFAULT_ENGINE,
    DEFAULT_FMAX_EV_A,
    DEFAULT_MAX_STEPS,
    ENGINES,
    OPTIMIZERS,
    RelaxSettings,
)


def add_relax_arguments(parser: argparse.ArgumentParser, suffix: str) -> None:
    """Arguments shared by ``relax`` and ``rank`` (``suffix``: of the default output folder)."""
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="sample folder, CIF folder, .cif or extxyz file(s)")
    parser.add_argument("--potential", default=DEFAULT_POTENTIAL,
                        help=f"{', '.join(POTENTIAL_NAMES)} or a fitted model path (default: %(default)s)")
    parser.add_argument("--fmax", type=float, default=DEFAULT_FMAX_EV_A,
                        help="force threshold in eV/Å (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=DEFAULT_MAX_STEPS,
                        help="step cap per structure (default: %(default)s)")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="FIRE",
                        help="FIRE (default) or BFGS, ASE's, in either engine")
    parser.add_argument("--engine", choices=ENGINES, default=None,
                        help="batched: all structures at once, one batched potential call per "
                             "optimizer step; ase: one ASE optimizer per structure over worker "
                             f"processes (default: {DEFAULT_ENGINE})")
    parser.add_argument("--prerelax", default=None, metavar="POTENTIAL",
                        help="relax first with this potential (a fitted student folder or model), "
                             "then finish with --potential")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                        help="worker processes (default: %(default)s)")
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="where the potential runs: auto (CUDA when available), cpu or cuda; "
                             "on a GPU all structures share one process (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"output folder; refused when it holds an earlier run (default: "
                             f"<first INPUT>-{suffix} next to it, or -{suffix}-2, -{suffix}-3... "
                             "when taken)")
    parser.add_argument("--trajectory", action="store_true",
                        help="also write each relaxation's steps as an ASE trajectory, "
                             "<out>/trajectories/<id>.traj")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--no-progress", dest="quiet", action="store_true", help=argparse.SUPPRESS)


def device_from(args: argparse.Namespace) -> str:
    """The torch device name ``--device`` resolves to (one-line error for cuda without one)."""
    from diffcrystal.api import resolve_device

    return str(resolve_device(args.device))


def settings_from(args: argparse.Namespace) -> RelaxSettings:
    """The relaxation settings of the command line; bad values name their option."""
    if not (args.fmax > 0 and math.isfinite(args.fmax)):
        raise InputError(f"--fmax must be a positive number of eV/Å, got {args.fmax}")
    if args.steps < 0:
        raise InputError(f"--steps must be >= 0, got {args.steps}")
    if args.workers < 1:
        raise InputError(f"--workers must be >= 1, got {args.workers}")
    return RelaxSettings(fmax=args.fmax, max_steps=args.steps, optimizer=args.optimizer,
                         engine=args.engine, prerelax=args.prerelax)


def default_out(args: argparse.Namespace, suffix: str, outputs: tuple[str, ...]) -> Path:
    """``--out``, else ``<first INPUT>-<suffix>`` beside it, or the first ``-<suffix>-2``,
    ``-<suffix>-3``... that holds none of an earlier run's ``outputs``."""
    from diffcrystal.output_folder import fresh_folder

    if args.out is not None:
        return args.out
    first = Path(args.inputs[0])
    return fresh_folder(first.parent / f"{first.stem if first.is_file() else first.name}-{suffix}", outputs)


def configure(parser: argparse.ArgumentParser) -> None:
    add_relax_arguments(parser, "relaxed")


def status_line(results) -> str:
    """``'10 structures: 2 converged, 5 not converged (max force up to 28.6 eV/Å), 3 exploded'``."""
    counts: dict[str, int] = {}
    for result in results:
        counts[result.status] = counts.get(result.status, 0) + 1
    parts = []
    for status in ("converged", "not_converged", "pruned", "duplicate", "exploded", "failed"):
        if counts.get(status):
            part = f"{counts[status]} {status.replace('_', ' ')}"
            if status == "not_converged":
                worst = max(r.max_force for r in results if r.status == status)
                part += f" (max force up to {worst:.3g} eV/Å)"
            parts.append(part)
    return f"{counted(len(results), 'structure')}: {', '.join(parts) or 'none'}"


HULL_HINT = ("energy above the hull: `diffcrystal rank` with --hull DATA (a dataset of known phases, "
             "e.g. mp_20/train.csv) or --reference DIR (known phases as CIFs)")
"""How to get what a relaxation alone does not give (printed after ``relax``)."""


def run(args: argparse.Namespace) -> int:
    from diffcrystal.potential.rank import RELAX_OUTPUTS, relax_paths

    settings = settings_from(args)
    out = default_out(args, "relaxed", RELAX_OUTPUTS)
    results = relax_paths(args.inputs, out, args.potential, settings,
                          workers=args.workers, progress=not args.quiet,
                          device=device_from(args), trajectories=args.trajectory)
    print(f"relaxed {status_line(results)}; wrote {out}")
    print(HULL_HINT)
    return 0
