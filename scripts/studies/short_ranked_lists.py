"""Would free samples filling a short ranked list help? On the targets whose templates-alone
ranked answer holds fewer than ``k`` distinct structures, how often none of them matches, and
how often the free diffusion samples of another run of the same targets match there
("The model's samples beside the templates, on validation", its paragraph "Short lists").

``predict`` ranks templates alone by default; for YBa2Cu3O7 that is one structure. Filling the
list up to ``k`` with free samples can only change ranked @k on a target where the list is
short and no template matches. This study counts those targets from two ``evaluate --ranked``
(or ``calibrate_ranking.py``) record files, and on them the free samples of the second run
that match the target: ranked (relaxed to the end) or in any state (pruned by the funnel or
merged as a duplicate), an upper bound of what a fill could add:

    python scripts/studies/short_ranked_lists.py \\
        benchmarks/ranked_calibration_templates_mp20_val_every10/records.jsonl.gz \\
        benchmarks/ranked_calibration_wide_mp20_val_every10/records.jsonl.gz

Each free sample's match is the record's (``StructureMatcher`` after relaxation; precise is
RMS < 0.1). Only the targets both files hold are counted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from diffcrystal.metrics import PRECISE_RMSE_THRESHOLDS
from diffcrystal.ranked_evaluation import read_records

FREE_SOURCE = "free_diffusion"
PRECISE_RMS = PRECISE_RMSE_THRESHOLDS[0]


def matches(entry: dict, precise: bool = False) -> bool:
    """A ranked structure or candidate that matches the target (precisely: RMS < 0.1)."""
    if entry["status"] != "match":
        return False
    return not precise or (entry["rms"] is not None and entry["rms"] < PRECISE_RMS)


def short_list_report(templates: list[dict], with_samples: list[dict], k: int) -> dict:
    """Counts over the targets both record lists hold: lists shorter than ``k``, those of them
    with no match among their structures (matched, and precise), and those where a free sample
    of ``with_samples`` matches (ranked, or in any state)."""
    other = {record["label"]: record for record in with_samples}
    shared = [record for record in templates if record["label"] in other]
    report = {"targets": len(shared), "k": k, "short": 0, "short_missed": 0, "short_missed_precise": 0,
              "free_ranked_match": [], "free_any_match": [], "free_any_precise": []}
    for record in shared:
        ranked = record["ranked"]
        if len(ranked) >= k:
            continue
        report["short"] += 1
        missed, missed_precise = (not any(matches(e, p) for e in ranked) for p in (False, True))
        report["short_missed"] += missed
        report["short_missed_precise"] += missed_precise
        samples = other[record["label"]]
        free_ranked = [e for e in samples["ranked"] if FREE_SOURCE in e.get("sources", [e["source"]])]
        free_any = [c for c in samples["candidates"] if c["source"] == FREE_SOURCE]
        if missed and any(matches(e) for e in free_ranked):
            report["free_ranked_match"].append(record["label"])
        if missed and any(matches(c) for c in free_any):
            report["free_any_match"].append(record["label"])
        if missed_precise and any(matches(c, precise=True) for c in free_any):
            report["free_any_precise"].append(record["label"])
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("templates", type=Path, help="records of a templates-alone ranked run")
    parser.add_argument("with_samples", type=Path, help="records of a run of the same targets with free samples")
    parser.add_argument("--k", type=int, default=5, help="length of the ranked list to fill (default 5)")
    parser.add_argument("--out", type=Path, help="also write the report as JSON")
    args = parser.parse_args(argv)
    runs = [read_records(path) for path in (args.templates, args.with_samples)]
    report = short_list_report(*runs, k=args.k)
    if report["targets"] == 0:
        print(f"error: {args.templates} and {args.with_samples} share no target", file=sys.stderr)
        return 2
    print(f"{report['targets']} targets; templates-alone lists shorter than {args.k}: {report['short']}")
    print(f"  of those, no structure matches: {report['short_missed']} (none precise: {report['short_missed_precise']})")
    print(f"  where none matches, a free sample of the second run matches: ranked {len(report['free_ranked_match'])}, "
          f"in any state {len(report['free_any_match'])} (precise {len(report['free_any_precise'])})")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
