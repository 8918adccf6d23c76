"""Free samples where the templates are far: does ``predict --far-samples N`` raise ranked @k?
("Free samples where the templates are far".)

``predict --far-samples N`` draws at least N free diffusion samples beside the templates for a
composition whose nearest analogue lies ``--far-distance`` Mendeleev units or more away (or has
none within reach), and leaves every other composition as it was. So on a set of validation
targets only the far ones need predicting again: this study picks them (each target's own entry
left out of the templates, the atom count given, as ``calibrate_ranking.py --atom-count`` does),
runs ``predict`` on them with the far samples (``records.jsonl`` in ``--out``, resumable), and
scores ranked @1 and @k of the whole set with their new records in place of their
templates-alone ones, beside the templates alone:

    OMP_NUM_THREADS=1 python scripts/studies/far_free_samples.py --every 10 --offset 0 \\
        --templates-records benchmarks/ranked_calibration_templates_mp20_val_every10/records.jsonl.gz \\
        --far-samples 20 --out runs/far/every10

The templates-alone records must hold every target of the stride; a near target's record is
used as it is, since the far samples leave its candidates unchanged. ``--data`` takes the
targets from a test file instead (``evaluate --ranked --atom-count --every N`` records):

    OMP_NUM_THREADS=1 python scripts/studies/far_free_samples.py --data ../shared/data/mp_20/test.csv --every 30 \
        --templates-records benchmarks/ranked_templates_mp20_every30/records.jsonl.gz --out runs/far/test_every30
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from diffcrystal.errors import InputError
from diffcrystal.metrics import PRECISE_RMSE_THRESHOLDS
from diffcrystal.prediction import FAR_DISTANCE, PredictSettings, free_sample_count
from diffcrystal.ranked_evaluation import protocol_metrics, read_records, rescored_order, rescored_results
from diffcrystal.ranking import RankingScore

PRECISE_RMS = PRECISE_RMSE_THRESHOLDS[0]


def first_match(record: dict, score: RankingScore, precise: bool = False) -> int | None:
    """0-based rank of the first ranked structure of ``record`` that matches its target
    (precisely: RMS < 0.1) under ``score``; None when none does."""
    for rank, entry in enumerate(rescored_order(record, score)):
        if entry["status"] == "match" and (not precise or (entry["rms"] is not None and entry["rms"] < PRECISE_RMS)):
            return rank
    return None


def counts_at(records: list[dict], score: RankingScore, k: int) -> dict:
    """Targets matched and matched precisely within the first 1 and ``k`` ranked structures
    (the protocol's figures of :func:`~diffcrystal.ranked_evaluation.ranked_metrics`, as counts)."""
    results = rescored_results(records, score, k)
    metrics = protocol_metrics(results)
    return {"at_1": {"matched": sum(r.matched_at_1 for r in results), "precise": metrics.n_precise("1", PRECISE_RMS)},
            f"at_{k}": {"matched": sum(r.matched_at_k for r in results), "precise": metrics.n_precise("k", PRECISE_RMS)}}


def far_report(templates: list[dict], far: list[dict], score: RankingScore, k: int) -> dict:
    """Ranked @1 / @k of the templates-alone ``templates`` records, and of the same targets with
    the ``far`` records in place of theirs; on all targets and on the far ones, with each far
    target's first matching rank in both and whether a free sample matched in any state."""
    replaced = {r["label"]: r for r in far}
    missing = sorted(set(replaced) - {r["label"] for r in templates})
    if missing:
        raise InputError(f"far records of targets the templates-alone records lack: {', '.join(missing[:5])}")
    combined = [replaced.get(r["label"], r) for r in templates]
    far_templates = [r for r in templates if r["label"] in replaced]
    targets = []
    for before in far_templates:
        after = replaced[before["label"]]
        free = [c for c in after["candidates"] if c["source"] == "free_diffusion"]
        targets.append({"label": before["label"], "formula": before["formula"], "num_atoms": before["num_atoms"],
                        "templates_first_match": first_match(before, score),
                        "with_far_samples_first_match": first_match(after, score),
                        "templates": sum(c["source"] == "template" for c in after["candidates"]),
                        "free_samples": len(free), "free_any_match": sum(c["status"] == "match" for c in free),
                        "cpu_seconds": {"templates": before["cpu_seconds"], "with_far_samples": after["cpu_seconds"]}})
    cpu = {"templates": sum(r["cpu_seconds"] for r in templates) / len(templates),
           "with_far_samples": sum(r["cpu_seconds"] for r in combined) / len(combined)}
    return {"targets": len(templates), "far_targets": len(far), "k": k, "score": dataclasses.asdict(score),
            "cpu_seconds_per_target": cpu,
            "all": {"templates": counts_at(templates, score, k), "with_far_samples": counts_at(combined, score, k)},
            "far": {"templates": counts_at(far_templates, score, k), "with_far_samples": counts_at(far, score, k)},
            "per_far_target": targets}


def far_targets(targets, library, settings: PredictSettings) -> list:
    """The targets whose candidates ``settings``' far samples change: their nearest analogue
    (own entry left out, atom count given) lies ``far_distance`` or more away, or none is within reach."""
    from diffcrystal.candidates import nearest_analogues
    from diffcrystal.data.composition import format_composition, parse_composition

    plain = dataclasses.replace(settings, far_free_samples=0)
    chosen = []
    for target in targets:
        composition = parse_composition(format_composition(target.composition))
        analogues = nearest_analogues(composition, library.without({target.label}), settings.counts["template"],
                                      settings.max_analogue_distance, target.num_atoms)
        if free_sample_count(settings, analogues) != free_sample_count(plain, analogues):
            chosen.append(target)
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="mp20_csp", help="CSP checkpoint (file or bundled name)")
    parser.add_argument("--data", type=Path, default=None,
                        help="test file of the targets (default: the checkpoint's held-out validation structures)")
    parser.add_argument("--every", type=int, default=10, help="take every N-th validation structure")
    parser.add_argument("--offset", type=int, default=0, help="start at this validation structure (0: the first)")
    parser.add_argument("--templates-records", type=Path, required=True,
                        help="records of calibrate_ranking.py --atom-count, templates alone, on the same stride")
    parser.add_argument("--far-samples", type=int, default=20, help="predict --far-samples (default 20)")
    parser.add_argument("--far-distance", type=float, default=FAR_DISTANCE,
                        help=f"predict --far-distance, Mendeleev units (default {FAR_DISTANCE:g})")
    parser.add_argument("--k", type=int, default=5, help="ranked @k besides @1")
    parser.add_argument("--potential", default="sevennet-0")
    parser.add_argument("--out", type=Path, required=True, help="folder for records.jsonl and far_samples.json")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        from diffcrystal.checkpoint import bundled_analogue_table
        from diffcrystal.prediction import load_library
        from diffcrystal.ranked_evaluation import held_out_validation, run_ranked

        templates = read_records(args.templates_records)
        if not templates:
            raise InputError(f"{args.templates_records}: no ranked-evaluation records")
        settings = PredictSettings(far_free_samples=args.far_samples, far_distance=args.far_distance)
        checkpoint, generator, validation = held_out_validation(args.checkpoint)
        if args.data is not None:
            from diffcrystal.data.readers import read_crystals

            validation = read_crystals(args.data, workers=1, progress=not args.quiet).crystals
        targets = validation[args.offset::args.every]
        if {t.label for t in targets} != {r["label"] for r in templates}:
            raise InputError(f"{args.templates_records} holds other targets than every {args.every}th structure "
                             f"of {args.data or 'the validation set'} from {args.offset}")
        library = load_library(bundled_analogue_table(checkpoint), checkpoint)
        chosen = far_targets(targets, library, settings)
        far = run_ranked(chosen, args.out, library=library, generator=generator, potential=args.potential,
                         settings=settings, hold_out_self=args.data is None, progress=not args.quiet,
                         give_atom_count=True)
        report = far_report(templates, far, RankingScore(), args.k)
    except InputError as error:
        print(f"far_free_samples: error: {error}", file=sys.stderr)
        return 1
    report.update({"checkpoint": str(checkpoint), "data": str(args.data or "validation"), "every": args.every, "offset": args.offset,
                   "far_samples": args.far_samples, "far_distance": args.far_distance})
    (args.out / "far_samples.json").write_text(json.dumps(report, indent=1) + "\n")
    for subset in ("all", "far"):
        for arm in ("templates", "with_far_samples"):
            c = report[subset][arm]
            print(f"{subset:>3} targets, {arm:>16}: @1 {c['at_1']['matched']} / {c['at_1']['precise']}, "
                  f"@{args.k} {c[f'at_{args.k}']['matched']} / {c[f'at_{args.k}']['precise']} (matched / precise)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
