"""``diffcrystal predict --composition F``: the ranked answer for a composition.

Candidates from the nearest known analogues (templates; free diffusion where none is within
reach), and on request diffusion on their space groups and free diffusion beside them,
deduplicated, relaxed through the funnel with one potential and ranked
(:mod:`diffcrystal.prediction`). Writes ``predictions/<formula>/`` (or ``--out``): ``ranked.csv``,
``candidates.csv``, ``cif/``, ``overview.png`` and ``run.json``
(:mod:`diffcrystal.prediction_folder`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from diffcrystal.cli.funnel_options import add_funnel_arguments, funnel_from
from diffcrystal.errors import InputError
from diffcrystal.potential.results import OPTIMIZERS

SOURCE_OPTIONS = {"template": "--templates-n", "analogue_diffusion": "--analogue-samples",
                  "free_diffusion": "--free-samples"}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--composition", required=True, help="formula, e.g. YBa2Cu3O7")
    parser.add_argument("--atoms", type=int, default=None, metavar="N",
                        help="atoms in the unit cell, when known (e.g. from the measured cell volume and density): "
                             "templates of that size come first and the ranking prefers cells of N atoms")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: predictions/<formula>, or <formula>-2, ... when taken)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run in --out (same options; finished relaxations are reused)")
    add_predict_arguments(parser)
    parser.add_argument("--workers", type=int, default=1, help="relaxation processes (default 1)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of one composition's prediction (candidates, relaxation, ranking, hull,
    device), shared by ``predict`` and ``screen``; read back with :func:`settings_from`."""
    from diffcrystal.analogues import DEFAULT_MAX_ANALOGUE_DISTANCE
    from diffcrystal.candidates import SOURCE_COUNTS
    from diffcrystal.prediction import (FAR_DISTANCE, FAR_FREE_SAMPLES, PREDICT_FMAX_EV_A, PREDICT_MAX_STEPS,
                                        PREDICT_OPTIMIZER)
    from diffcrystal.ranking import DEFAULT_DISTANCE_WEIGHT_EV

    parser.add_argument("--checkpoint", default=None, help="CSP generator: a file or bundled name (default mp20_csp)")
    parser.add_argument("--templates", default=None, metavar="TABLE",
                        help="template table with geometry (default: the one shipped with the checkpoint; "
                             "build your own with scripts/build_analogue_table.py)")
    parser.add_argument("--sources", default=None, metavar="LIST",
                        help="candidate sources, comma-separated, from template, analogue_diffusion, free_diffusion "
                             "(default: template, with free samples where no template is within reach, plus any "
                             "source whose count is given below)")
    parser.add_argument("--templates-n", type=int, default=None, metavar="N",
                        help=f"nearest distinct analogue templates (default {SOURCE_COUNTS['template']})")
    parser.add_argument("--analogue-samples", type=int, default=None, metavar="N",
                        help="diffusion samples on the analogues' space groups beside the templates "
                             f"(default {SOURCE_COUNTS['analogue_diffusion']} when the source is drawn)")
    parser.add_argument("--free-samples", type=int, default=None, metavar="N",
                        help="unconstrained diffusion samples beside the templates "
                             f"(default {SOURCE_COUNTS['free_diffusion']} when the source is drawn)")
    parser.add_argument("--far-samples", type=int, default=FAR_FREE_SAMPLES, metavar="N",
                        help="at least N free diffusion samples where the nearest analogue is --far-distance or "
                             f"farther, or none is within reach (default {FAR_FREE_SAMPLES}; 0: the templates' "
                             "budget where none is, nothing where they are far)")
    parser.add_argument("--far-distance", type=float, default=FAR_DISTANCE, metavar="D",
                        help=f"Mendeleev units per atom from which --far-samples are drawn (default {FAR_DISTANCE:g})")
    parser.add_argument("--max-analogue-distance", type=float, default=DEFAULT_MAX_ANALOGUE_DISTANCE, metavar="D",
                        help=f"farthest analogue used, Mendeleev units per atom (default {DEFAULT_MAX_ANALOGUE_DISTANCE:g})")
    parser.add_argument("--potential", default="sevennet-0", help="relaxes and ranks (default sevennet-0)")
    parser.add_argument("--fmax", type=float, default=PREDICT_FMAX_EV_A,
                        help=f"force threshold in eV/Å (default {PREDICT_FMAX_EV_A})")
    parser.add_argument("--steps", type=int, default=PREDICT_MAX_STEPS,
                        help=f"optimizer step cap per candidate (default {PREDICT_MAX_STEPS})")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default=PREDICT_OPTIMIZER,
                        help=f"BFGS or FIRE, on a Fréchet cell filter (default {PREDICT_OPTIMIZER})")
    add_funnel_arguments(parser)
    parser.add_argument("--distance-weight", type=float, default=DEFAULT_DISTANCE_WEIGHT_EV, metavar="EV",
                        help="ranking score: eV/atom per Mendeleev unit of analogue distance "
                             f"(default {DEFAULT_DISTANCE_WEIGHT_EV}, calibrated on validation)")
    parser.add_argument("--hull", type=Path, default=None, metavar="DATA",
                        help="dataset of known phases (e.g. mp_20/train.csv) for the energy above the hull")
    parser.add_argument("--seed", type=int, default=0, help="seed of the diffusion samples (default 0)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where the potential runs")


def _counts(args: argparse.Namespace) -> dict[str, int]:
    """Candidates per source: the counts given (each source's :data:`SOURCE_COUNTS` otherwise),
    drawn from ``--sources`` or, without it, from the default sources and every source whose
    count is given."""
    from diffcrystal.candidates import DEFAULT_SOURCES, SOURCE_COUNTS, SOURCES, counts_from_sources

    given = {s: getattr(args, SOURCE_OPTIONS[s].lstrip("-").replace("-", "_")) for s in SOURCES}
    for source, n in given.items():
        if n is not None and n < 0:
            raise InputError(f"{SOURCE_OPTIONS[source]} must be >= 0, got {n}")
    counts = {s: SOURCE_COUNTS[s] if n is None else n for s, n in given.items()}
    if args.sources is None:
        return counts_from_sources(",".join(s for s in SOURCES if s in DEFAULT_SOURCES or given[s] is not None), counts)
    chosen = counts_from_sources(args.sources, counts)  # unknown sources refused first
    named = {s.strip() for s in args.sources.split(",")}
    left_out = [s for s in SOURCES if given[s] is not None and s not in named]
    if left_out:
        raise InputError(f"{SOURCE_OPTIONS[left_out[0]]} counts {left_out[0]} candidates, which --sources "
                         f"{args.sources!r} leaves out")
    return chosen


def settings_from(args: argparse.Namespace):
    from diffcrystal.potential.relax import RelaxSettings
    from diffcrystal.prediction import PredictSettings
    from diffcrystal.ranking import RankingScore

    if args.steps < 1:
        raise InputError(f"--steps must be >= 1, got {args.steps}")
    if not args.fmax > 0:
        raise InputError(f"--fmax must be > 0 eV/Å, got {args.fmax}")
    return PredictSettings(counts=_counts(args), max_analogue_distance=args.max_analogue_distance,
                           far_free_samples=args.far_samples, far_distance=args.far_distance,
                           relax=RelaxSettings(fmax=args.fmax, max_steps=args.steps, optimizer=args.optimizer),
                           funnel=funnel_from(args),
                           score=RankingScore(distance_weight=args.distance_weight), seed=args.seed)


def run(args: argparse.Namespace) -> int:
    from diffcrystal.data.composition import parse_composition

    from diffcrystal.candidates import check_num_atoms

    check_num_atoms(parse_composition(args.composition), args.atoms)  # one-line errors before anything loads
    settings = settings_from(args)  # every option checked before torch loads
    from diffcrystal.checkpoint import bundled_analogue_table, resolve_checkpoint
    from diffcrystal.potential.calculators import resolve_potential
    from diffcrystal.prediction import predict
    from diffcrystal.prediction_folder import default_folder, prepare_folder, run_record, write_prediction

    resolve_potential(args.potential)
    if args.workers < 1:
        raise InputError(f"--workers must be >= 1, got {args.workers}")
    if args.hull is not None and not args.hull.exists():
        raise InputError(f"--hull: no such dataset {args.hull}")
    checkpoint = resolve_checkpoint(args.checkpoint, "csp")
    templates = Path(args.templates) if args.templates else bundled_analogue_table(checkpoint)
    if templates is not None and not templates.is_file():
        raise InputError(f"--templates: no such table file {templates}")
    from diffcrystal.sampling import composition_label

    out = args.out if args.out is not None else default_folder(composition_label(args.composition))
    if args.resume and args.out is None:
        raise InputError("--resume needs --out: the folder of the run to continue")
    record = run_record(args.composition, args.potential, args.hull, settings, checkpoint, templates, args.atoms)
    prepare_folder(out, record, args.resume)
    prediction = predict(args.composition, checkpoint=checkpoint, templates=templates, potential=args.potential,
                         settings=settings, hull=args.hull, workers=args.workers, device=args.device,
                         progress=not args.quiet, num_atoms=args.atoms)
    write_prediction(prediction, out, record)
    for note in prediction.notes:
        print(f"note: {note}")
    statuses: dict[str, int] = {}
    for outcome in prediction.outcomes:
        statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
    print(f"{len(prediction.outcomes)} candidates ({', '.join(f'{n} {s}' for s, n in statuses.items())}); "
          f"{prediction.relax_steps} potential steps of {prediction.relax_steps_cap} without the funnel; "
          f"{prediction.seconds['total']:.1f} s")
    print(f"{'rank':>4}  {'source':<18} {'E (eV/atom)':>11} {'score':>9} {'space group':<12} known")
    for entry in prediction.ranked[:10]:
        print(f"{entry.rank:>4}  {entry.best.candidate.source:<18} {entry.energy_per_atom:>11.4f} "
              f"{entry.score:>9.4f} {entry.space_group:<12} {entry.matches_known}")
    if len(prediction.ranked) > 10:
        print(f"  ... {len(prediction.ranked) - 10} more in ranked.csv")
    print(f"answer: {out}/ranked.csv (relaxed CIFs in {out}/cif/, every candidate in {out}/candidates.csv)",
          file=sys.stdout)
    return 0
