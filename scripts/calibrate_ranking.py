"""Calibrate ``predict``'s ranking score on validation structures, never on test files.

The validation structures are those the CSP checkpoint held out of training (its recorded
data section and seed, through :func:`~diffcrystal.training.datamodule.load_split`). Each one's
composition goes through ``predict`` with its own entry left out of the templates (the rest of
the training data are its analogues); the records (:mod:`diffcrystal.ranked_evaluation`) are
then re-scored over a grid of weights, and ranked @1 / @5 with the precise share are reported
for each, against the nearest template alone. The same weights are also fitted by maximum
likelihood (:mod:`diffcrystal.ranking_fit`), with the L2 strength chosen by 5-fold
cross-validation over the targets, whose held-out @1 is an honest estimate (the grid's best
is chosen on the same targets it is scored on):

    OMP_NUM_THREADS=1 python scripts/calibrate_ranking.py --every 20 --limit 80 --out runs/calibrate

``--atom-count`` tells ``predict`` each target cell's atom count (``predict --atoms``, as the CSP
benchmarks pose the task) and adds the atom-count weight w_n to the grid. ``--sources`` chooses
``predict``'s candidate sources (default: predict's, the templates alone, with free samples where
no template is within reach); ``--sources template,analogue_diffusion,free_diffusion`` adds the
model's samples beside the templates. ``--offset`` starts the ``--every`` stride elsewhere, for a
second, disjoint set of targets. Writes ``records.jsonl`` (resumable) and ``calibration.json`` (the grid, best first).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
from pathlib import Path

from diffcrystal.candidates import counts_from_sources
from diffcrystal.checkpoint import bundled_analogue_table
from diffcrystal.errors import InputError
from diffcrystal.prediction import PredictSettings, load_library
from diffcrystal.ranked_evaluation import held_out_validation, ranked_metrics, ranked_rates, run_ranked
from diffcrystal.ranking import RankingScore

DISTANCE_WEIGHTS = (0.0, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08)
"""Grid of w_d (eV/atom per Mendeleev unit)."""
FREE_DISTANCES = (4.0, 8.0, 16.0)
"""Grid of the distance charged to free diffusion samples (Mendeleev units)."""
STABILITY_WEIGHTS = (0.0, 0.25, 0.5, 1.0)
"""Grid of w_s (dimensionless)."""
ATOM_COUNT_WEIGHTS = (0.0, 0.02, 0.05, 0.1, 1.0)
"""Grid of w_n (eV/atom), searched when the records were made with the atom count given."""
VOTE_WEIGHTS = (0.0, 0.01, 0.02, 0.04, 0.08)
"""Grid of w_v (eV/atom)."""
L2_STRENGTHS = (0.001, 0.01, 0.03, 0.1, 0.3)
"""L2 strengths of the maximum-likelihood fit tried by cross-validation."""


def weight_sets(records: list[dict]) -> list[tuple[float, ...]]:
    """The grid's (w_d, free, w_s, w_n, w_v) sets; w_n only when the records were made with the
    atom count given."""
    atom_weights = ATOM_COUNT_WEIGHTS if any(r.get("given_atoms") is not None for r in records) else (0.0,)
    return list(itertools.product(DISTANCE_WEIGHTS, FREE_DISTANCES, STABILITY_WEIGHTS, atom_weights, VOTE_WEIGHTS))


def grid(records: list[dict], k: int) -> list[dict]:
    """Ranked figures for every weight combination, best first (precise @1, then matched @1, then @k)."""
    rows = []
    for w_d, free, w_s, w_n, w_v in weight_sets(records):
        at_1, at_k = ranked_rates(records, RankingScore(w_d, free, w_s, w_n, w_v), k)
        rows.append({"distance_weight": w_d, "free_distance": free, "stability_weight": w_s,
                     "atom_count_weight": w_n, "vote_weight": w_v, "at_1": at_1, "at_k": at_k})
    rows.sort(key=lambda r: (-r["at_1"]["precise_0.1"], -r["at_1"]["matched"], -r["at_k"]["matched"],
                             r["distance_weight"], r["stability_weight"], r["atom_count_weight"], r["vote_weight"],
                             r["free_distance"]))
    return rows


def grid_cross_validated_at_1(records: list[dict], folds: int = 5, seed: int = 0) -> float:
    """Matched @1 (percent) of the grid's choice made without the targets it is scored on: the
    targets split as :func:`~diffcrystal.ranking_fit.cross_validated_at_1` splits them, each
    fold ranked by the weights best on the other folds (precise @1, then matched @1)."""
    import numpy as np

    from diffcrystal.ranked_evaluation import rescored_results

    combos = weight_sets(records)
    matched = np.zeros((len(combos), len(records)), dtype=bool)
    precise = np.zeros_like(matched)
    for row, weights in enumerate(combos):
        for column, result in enumerate(rescored_results(records, RankingScore(*weights), 1)):
            first = result.candidates[0]
            matched[row, column] = first.matched
            precise[row, column] = first.matched and first.rms is not None and first.rms < 0.1
    order = np.random.default_rng(seed).permutation(len(records))
    hits = 0
    for held in np.array_split(order, folds):
        train = np.setdiff1d(order, held)
        best = max(range(len(combos)), key=lambda i: (precise[i, train].sum(), matched[i, train].sum()))
        hits += matched[best, held].sum()
    return 100.0 * hits / len(records)


def maximum_likelihood(records: list[dict], k: int) -> dict:
    """The weights fitted by maximum likelihood (module docstring): every L2 strength's
    cross-validated @1 (percent), the best strength's score fitted on all records, and its
    figures on them."""
    from diffcrystal.ranking_fit import choice_sets, cross_validated_at_1, fit_parameters, score_from_parameters

    sets = choice_sets(records)
    cross_validated = {l2: 100.0 * cross_validated_at_1(sets, l2) for l2 in L2_STRENGTHS}
    best = max(L2_STRENGTHS, key=lambda l2: (cross_validated[l2], l2))
    score = score_from_parameters(fit_parameters(sets, best))
    summary = ranked_metrics(records, score, k)
    return {"cross_validated_at_1_matched": cross_validated, "l2": best, "score": dataclasses.asdict(score),
            "at_1": summary.at_1, "at_k": summary.at_k}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="mp20_csp", help="CSP checkpoint (file or bundled name)")
    parser.add_argument("--every", type=int, default=20, help="take every N-th validation structure")
    parser.add_argument("--offset", type=int, default=0,
                        help="start at the validation structure of this index (0: the first), e.g. --every 10 "
                             "--offset 5 for the targets between those of --every 10")
    parser.add_argument("--limit", type=int, default=None, help="at most M of those")
    parser.add_argument("--k", type=int, default=5, help="ranked @k besides @1")
    parser.add_argument("--potential", default="sevennet-0")
    parser.add_argument("--out", type=Path, required=True, help="folder for records.jsonl and calibration.json")
    parser.add_argument("--atom-count", action="store_true",
                        help="tell predict each target cell's atom count (predict --atoms) and calibrate w_n too")
    parser.add_argument("--sources", metavar="LIST",
                        help="predict's candidate sources, comma-separated, each at predict's count for it "
                             "(default: predict's, template)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        if args.every < 1 or args.offset < 0:
            raise InputError(f"--every must be >= 1 and --offset >= 0, got {args.every} and {args.offset}")
        settings = PredictSettings() if args.sources is None else PredictSettings(counts=counts_from_sources(args.sources))
        checkpoint, generator, validation = held_out_validation(args.checkpoint)
        targets = validation[args.offset::args.every][:args.limit]
        if not targets:
            raise InputError(f"{checkpoint}: no validation structures to calibrate on")
        library = load_library(bundled_analogue_table(checkpoint), checkpoint)
        records = run_ranked(targets, args.out, library=library, generator=generator, potential=args.potential,
                             settings=settings, hold_out_self=True, progress=not args.quiet,
                             give_atom_count=args.atom_count)
    except InputError as error:
        print(f"calibrate_ranking: error: {error}", file=sys.stderr)
        return 1
    rows = grid(records, args.k)
    default = ranked_metrics(records, RankingScore(), args.k)
    fitted = maximum_likelihood(records, args.k)
    fitted["grid_cross_validated_at_1_matched"] = grid_cross_validated_at_1(records)
    summary = {"checkpoint": str(checkpoint), "validation_structures": len(validation), "targets": len(records),
               "every": args.every, "offset": args.offset, "k": args.k, "potential": args.potential,
               "candidate_counts": settings.counts,
               "default_score": dataclasses.asdict(RankingScore()), "default": dataclasses.asdict(default),
               "maximum_likelihood": fitted, "grid": rows}
    (args.out / "calibration.json").write_text(json.dumps(summary, indent=2) + "\n")
    nearest = default.sources_at_1["template"]
    print(f"{len(records)} validation targets; nearest template alone @1: {nearest['matched']:.1f} % matched, "
          f"{nearest['precise_0.1']:.1f} % precise; {default.seconds_per_target:.1f} s per target")
    print(f"{'w_d':>7} {'free':>5} {'w_s':>4} {'w_n':>4} {'w_v':>4}  @1 matched / precise   @{args.k} matched / precise")
    for row in rows[:12]:
        print(f"{row['distance_weight']:>7g} {row['free_distance']:>5g} {row['stability_weight']:>4g} "
              f"{row['atom_count_weight']:>4g} {row['vote_weight']:>4g}  "
              f"{row['at_1']['matched']:>6.1f} / {row['at_1']['precise_0.1']:>5.1f}         "
              f"{row['at_k']['matched']:>6.1f} / {row['at_k']['precise_0.1']:>5.1f}")
    print(f"grid, cross-validated @1 matched: {fitted['grid_cross_validated_at_1_matched']:.1f} %")
    print("maximum likelihood, cross-validated @1 matched per L2 strength: "
          + ", ".join(f"{l2:g}: {value:.1f} %" for l2, value in fitted["cross_validated_at_1_matched"].items()))
    weights = fitted["score"]
    print(f"fitted with L2 {fitted['l2']:g}: w_d {weights['distance_weight']:.4g}, free {weights['free_distance']:.3g}, "
          f"w_s {weights['stability_weight']:.3g}, w_n {weights['atom_count_weight']:.3g}, "
          f"w_v {weights['vote_weight']:.3g}; on all targets @1 {fitted['at_1']['matched']:.1f} / "
          f"{fitted['at_1']['precise_0.1']:.1f}, @{args.k} {fitted['at_k']['matched']:.1f} / {fitted['at_k']['precise_0.1']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
