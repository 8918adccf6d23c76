"""``diffcrystal rank INPUT... --potential NAME [--reference DIR]``: relax, deduplicate, rank.

Writes ``<out>/relaxed/`` (CIFs + summary), ``<out>/ranked.csv`` (one row per distinct crystal,
lowest energy per atom first, with group size, space group and the potential) and
``<out>/ranking.png``. With ``--reference`` (a folder of known phases as CIFs) they are relaxed
with the same potential and each candidate's energy above their convex hull is reported.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from diffcrystal.cli.relax import add_relax_arguments, default_out, settings_from


def configure(parser: argparse.ArgumentParser) -> None:
    add_relax_arguments(parser)
    parser.add_argument("--reference", type=Path, default=None,
                        help="folder of known phases (CIFs) for the energy above hull")


def run(args: argparse.Namespace) -> int:
    from diffcrystal.potential.rank import relax_and_rank

    out = default_out(args, "ranked")
    report = relax_and_rank(args.inputs, out, args.potential, settings_from(args),
                            workers=args.workers, reference=args.reference,
                            progress=not args.no_progress)
    rankable = sum(r.rankable for r in report.results)
    print(f"{len(report.results)} relaxed, {rankable} rankable, {len(report.entries)} distinct; "
          f"wrote {report.ranked_csv} and {report.plot} (potential {report.potential})")
    return 0
