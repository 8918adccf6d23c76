"""``diffcrystal rank INPUT... --potential NAME [--reference DIR]``: relax, deduplicate, rank.

Writes ``<out>/relaxed/`` (CIFs + summary of every structure), ``<out>/ranked.csv`` (one row per
distinct *converged* crystal, lowest energy per atom first, with group size, space group and the
potential), ``<out>/ranked_unconverged.csv`` (the same for structures still above ``--fmax`` at
the step cap, ranked separately), ``<out>/ranking.png`` and ``<out>/overview.png``
(:mod:`diffcrystal.overview`, with the relaxed energies). With ``--reference`` (a folder of
known phases as CIFs) or ``--hull DATA`` (a dataset, e.g. ``mp_20/train.csv``: its entries in
the candidates' chemical systems, with ASE's reference state for a missing element) they are
relaxed with the same potential (dataset phases once, then from the cache) and each candidate's
energy above their convex hull and the known phase it matches (or ``novel``) are reported.
The default ``--out`` is ``<first INPUT>-ranked`` (``-ranked-2``... when taken); an ``--out``
holding an earlier ranking is refused. Candidates go through the relaxation funnel
(:mod:`diffcrystal.potential.funnel`) unless ``--no-funnel`` (or ``--trajectory``) is given.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from diffcrystal.cli.funnel_options import add_funnel_arguments, funnel_from
from diffcrystal.cli.relax import add_relax_arguments, default_out, device_from, settings_from, status_line


def configure(parser: argparse.ArgumentParser) -> None:
    add_relax_arguments(parser, "ranked")
    parser.add_argument("--reference", type=Path, default=None,
                        help="folder of known phases (CIFs) for the energy above hull")
    parser.add_argument("--hull", type=Path, default=None, metavar="DATA",
                        help="dataset of known phases (CSV, CIF folder, extxyz, ASE db) for the "
                             "energy above hull; relaxations are cached")
    parser.add_argument("--hull-max-e-above-hull", type=float, default=None, metavar="EV",
                        help="leave out --hull entries whose own e_above_hull column exceeds EV "
                             "eV/atom (they are counted in the output; default: keep all)")
    parser.add_argument("--keep-duplicates", action="store_true",
                        help="relax every input, even those StructureMatcher calls the same crystal as an earlier "
                             "one (default: relax such a crystal once; the others are listed as duplicate)")
    add_funnel_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from diffcrystal.overview import write_rank_overview
    from diffcrystal.potential.io import SUMMARY_NAME
    from diffcrystal.potential.rank import RANK_OUTPUTS, RELAXED_FOLDER, relax_and_rank

    settings = settings_from(args)
    funnel = None if args.trajectory else funnel_from(args)  # trajectories record whole relaxations
    out = default_out(args, "ranked", RANK_OUTPUTS)
    report = relax_and_rank(args.inputs, out, args.potential, settings,
                            workers=args.workers, reference=args.reference,
                            progress=not args.quiet, hull=args.hull,
                            hull_max_e_above_hull=args.hull_max_e_above_hull,
                            device=device_from(args), trajectories=args.trajectory, funnel=funnel,
                            merge_duplicates=not args.keep_duplicates)
    print(f"relaxed {status_line(report.results)} (potential {report.potential})")
    if report.references is not None:
        print(f"known phases: {status_line(report.references)}"
              + (f", {report.references_cached} from the relaxation cache" if args.hull else ""))
    if report.references_left_out:
        print(f"left out {len(report.references_left_out)} --hull entries above "
              f"{args.hull_max_e_above_hull} eV/atom e_above_hull: {' '.join(report.references_left_out)}")
    print(f"ranked {len(report.entries)} distinct converged crystals: {report.ranked_csv}")
    if report.unconverged:
        print(f"{len(report.unconverged)} distinct crystals not converged in {args.steps} steps, "
              f"ranked separately (their energies are not minima): {report.unconverged_csv}")
    if report.references is None:
        print("no energy above the hull: add --hull DATA (a dataset of known phases, e.g. "
              "mp_20/train.csv) or --reference DIR (known phases as CIFs)")
    overview = write_rank_overview(report, args.inputs, out)
    print(f"plots: {report.plot}, {overview}; every structure: {out / RELAXED_FOLDER / SUMMARY_NAME}")
    return 0
