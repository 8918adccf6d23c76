"""``diffcrystal screen COMPOSITIONS``: ``predict`` for many compositions on a Dask cluster.

COMPOSITIONS is a text file (one formula per line, ``#`` comments) or a CSV with a
``composition`` column. Writes ``<out>/<formula>/`` (the folder ``predict`` writes) for each
and ``<out>/screen.csv`` (:mod:`diffcrystal.screening`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from diffcrystal.cli.predict import add_predict_arguments, settings_from
from diffcrystal.errors import InputError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("compositions", type=Path, metavar="COMPOSITIONS",
                        help="text file with one composition per line, or a CSV with a 'composition' column")
    parser.add_argument("--out", type=Path, default=Path("screen"),
                        help="screen folder: one folder per composition and screen.csv (default screen/)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the compositions finished in --out and run the others (same options)")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes of the embedded local Dask cluster (default: one per core)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="run on an existing Dask cluster, e.g. tcp://10.0.0.5:8786 (dask-jobqueue, dask-ssh)")
    add_predict_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from diffcrystal.screening import SCREEN_NAME, read_compositions

    compositions = read_compositions(args.compositions)
    settings = settings_from(args)  # every option checked before torch loads
    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers must be >= 1, got {args.workers}")
    if args.workers is not None and args.scheduler is not None:
        raise InputError("--workers sizes the local cluster; with --scheduler the cluster has its own workers")
    from diffcrystal.screening import screen

    table = screen(compositions, out=args.out, resume=args.resume, workers=args.workers, scheduler=args.scheduler,
                   checkpoint=args.checkpoint, templates=args.templates, potential=args.potential,
                   settings=settings, hull=args.hull, device=args.device, progress=not args.quiet)
    counts = table["status"].value_counts()
    print(f"{len(table)} compositions: " + ", ".join(f"{n} {status}" for status, n in counts.items()))
    for row in table.itertuples():
        best = (f"{row.source} {row.energy_per_atom_eV:.4f} eV/atom {row.space_group}"
                if row.status in ("done", "resumed") else row.reason)
        print(f"  {row.composition:<16} {row.status:<12} {best}")
    print(f"table: {args.out / SCREEN_NAME} (each composition's folder under {args.out}/)")
    return 0
