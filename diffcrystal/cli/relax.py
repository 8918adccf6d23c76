"""``diffcrystal relax INPUT... --potential NAME``: relax candidates, write CIFs and a summary.

INPUT is a sample folder (``summary.csv`` with an ``id`` column + ``<id>.cif``), a folder of
CIFs, CIF files or an extxyz file. Output (``--out``, default ``<first INPUT>-relaxed``) is
itself a sample folder: ``<id>.cif`` per relaxed structure and ``summary.csv`` extending the
input summary with energy per atom, convergence, steps, max force, stress, space group after
relaxation, status (``converged``, ``not_converged`` at the step cap, ``exploded``, ``failed``),
the reason and the potential used. Inputs are never overwritten; the output folder and the
potential are checked before any relaxation starts.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from diffcrystal.api import DEVICES, resolve_device
from diffcrystal.potential.calculators import DEFAULT_POTENTIAL, POTENTIAL_NAMES
from diffcrystal.potential.relax import (
    DEFAULT_FMAX_EV_A,
    DEFAULT_MAX_STEPS,
    DEFAULT_ENGINE,
    DEFAULT_WORKERS,
    ENGINES,
    OPTIMIZERS,
    RelaxSettings,
)


def add_relax_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments shared by ``relax`` and ``rank``."""
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="sample folder, CIF folder, .cif or extxyz file(s)")
    parser.add_argument("--potential", default=DEFAULT_POTENTIAL,
                        help=f"{', '.join(POTENTIAL_NAMES)} or a fitted model path (default: %(default)s)")
    parser.add_argument("--fmax", type=float, default=DEFAULT_FMAX_EV_A,
                        help="force threshold in eV/Å (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=DEFAULT_MAX_STEPS,
                        help="step cap per structure (default: %(default)s)")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="FIRE",
                        help="FIRE (default) or BFGS (ase engine only)")
    parser.add_argument("--engine", choices=ENGINES, default=None,
                        help="batched: all structures at once, one batched potential call per "
                             "FIRE step; ase: one ASE optimizer per structure over worker "
                             f"processes (default: {DEFAULT_ENGINE} for FIRE, ase for BFGS)")
    parser.add_argument("--prerelax", default=None, metavar="POTENTIAL",
                        help="relax first with this potential (a fitted student folder or model), "
                             "then finish with --potential")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                        help="worker processes (default: %(default)s)")
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="where the potential runs: auto (CUDA when available), cpu or cuda; "
                             "on a GPU all structures share one process (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=None, help="output folder")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def device_from(args: argparse.Namespace) -> str:
    """The torch device name ``--device`` resolves to (one-line error for cuda without one)."""
    return str(resolve_device(args.device))


def settings_from(args: argparse.Namespace) -> RelaxSettings:
    return RelaxSettings(fmax=args.fmax, max_steps=args.steps, optimizer=args.optimizer,
                         engine=args.engine, prerelax=args.prerelax)


def default_out(args: argparse.Namespace, suffix: str) -> Path:
    if args.out is not None:
        return args.out
    first = Path(args.inputs[0])
    return first.parent / f"{first.stem if first.is_file() else first.name}-{suffix}"


def configure(parser: argparse.ArgumentParser) -> None:
    add_relax_arguments(parser)


def status_line(results) -> str:
    """``'10 structures: 2 converged, 5 not converged (max force up to 28.6 eV/Å), 3 exploded'``."""
    counts: dict[str, int] = {}
    for result in results:
        counts[result.status] = counts.get(result.status, 0) + 1
    parts = []
    for status in ("converged", "not_converged", "exploded", "failed"):
        if counts.get(status):
            part = f"{counts[status]} {status.replace('_', ' ')}"
            if status == "not_converged":
                worst = max(r.max_force for r in results if r.status == status)
                part += f" (max force up to {worst:.3g} eV/Å)"
            parts.append(part)
    return f"{len(results)} structures: {', '.join(parts) or 'none'}"


def run(args: argparse.Namespace) -> int:
    from diffcrystal.potential.rank import relax_paths

    out = default_out(args, "relaxed")
    results = relax_paths(args.inputs, out, args.potential, settings_from(args),
                          workers=args.workers, progress=not args.no_progress,
                          device=device_from(args))
    print(f"relaxed {status_line(results)}; wrote {out}")
    return 0
