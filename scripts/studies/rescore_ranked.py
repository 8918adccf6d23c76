"""Re-score ranked-evaluation records without relaxing again: the default score, energy alone,
the ranking without structures only diffusion samples reached, other weights (``--weights``),
the share of targets some ranked structure matches (what any ranking can reach), what became
of each source's candidates that match before relaxing (merged as ``duplicate``, ``pruned``,
``converged``), @1 by the
target's energy above the hull ("Ranked prediction", its paragraph "What this says"), and the
mean potential steps and CPU seconds per target:

    python scripts/studies/rescore_ranked.py benchmarks/ranked_atoms_mp20_every15_176/records.jsonl.gz \\
        --data ../shared/data/mp_20/test.csv

"Without diffusion-only structures" drops them from the finished list; it is not ``predict``
without the diffusion samples, whose funnel relaxes and prunes other candidates: measure that
with ``evaluate --ranked --sources template``.

``--data`` is the file the targets came from (its ``e_above_hull`` column gives the strata).
``--targets-of OTHER`` scores only the targets that another run's records also hold, so two runs
over different target sets (``--every 15`` and ``--every 30``) compare on the same targets.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from pathlib import Path

from diffcrystal.candidates import SOURCES
from diffcrystal.ranked_evaluation import ranked_metrics, read_records, rescored_results
from diffcrystal.ranking import RankingScore

STRATA = ((None, 1e-6, "on the hull"), (1e-6, 0.02, "0-20 meV/atom above"), (0.02, None, "> 20 meV/atom above"))
"""Ranges of the target's energy above the hull (eV/atom) and their names."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", type=Path, help="records.jsonl(.gz) of evaluate --ranked")
    parser.add_argument("--data", type=Path, required=True, help="the targets' CSV (with e_above_hull)")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--weights", type=float, nargs=5, action="append", default=[],
                        metavar=("W_D", "FREE", "W_S", "W_N", "W_V"),
                        help="another score to compare (RankingScore's five weights); repeatable")
    parser.add_argument("--targets-of", type=Path, default=None, metavar="OTHER",
                        help="score only the targets that this other records file also holds")
    args = parser.parse_args(argv)
    records = read_records(args.records)
    if args.targets_of is not None:
        shared = {r["label"] for r in read_records(args.targets_of)}
        missing = len(shared - {r["label"] for r in records})
        records = [r for r in records if r["label"] in shared]
        print(f"restricted to the targets of {args.targets_of} ({missing} of theirs not in {args.records})")
        if not records:
            raise SystemExit(f"error: {args.records} shares no target with {args.targets_of}")
    csv.field_size_limit(1 << 30)
    with open(args.data, newline="") as handle:
        hull = {row["material_id"]: float(row["e_above_hull"] or "nan") for row in csv.DictReader(handle)}
    only_templates = [dict(r, ranked=[e for e in r["ranked"] if "template" in e["sources"]]) for r in records]
    print(f"{len(records)} targets; per target {sum(r['relax_steps'] for r in records) / len(records):.1f} potential "
          f"steps and {sum(r['cpu_seconds'] for r in records) / len(records):.1f} CPU s (mean)")
    for name, chosen, score in (("default score", records, RankingScore()),
                                ("energy alone", records, RankingScore(0.0, 8.0, 0.0, 0.0, 0.0)),
                                ("without diffusion-only structures", only_templates, RankingScore()),
                                *((f"weights {' '.join(f'{w:g}' for w in weights)}", records, RankingScore(*weights))
                                  for weights in args.weights)):
        s = ranked_metrics(chosen, score, args.k)
        print(f"{name}: @1 {s.at_1['matched']:.2f} / {s.at_1['precise_0.1']:.2f} %, "
              f"@{args.k} {s.at_k['matched']:.2f} / {s.at_k['precise_0.1']:.2f} %")
    ceiling = [[e for e in r["ranked"] if e["status"] == "match"] for r in records]
    print(f"some ranked structure matches: {100 * sum(bool(m) for m in ceiling) / len(records):.1f} %, precisely "
          f"{100 * sum(any(e['rms'] is not None and e['rms'] < 0.1 for e in m) for m in ceiling) / len(records):.1f} %")
    for source in SOURCES:
        fates = Counter(c["state"] for r in records for c in r["candidates"]
                        if c["source"] == source and c["status"] == "match")
        if fates:
            print(f"{source} candidates that match before relaxing: {sum(fates.values())} "
                  f"({', '.join(f'{state} {n}' for state, n in fates.most_common())})")
    answers = rescored_results(records, RankingScore(), 1)
    for low, high, name in STRATA:
        chosen = [i for i, r in enumerate(records)
                  if (low is None or hull[r["label"]] > low) and (high is None or hull[r["label"]] <= high)]
        if not chosen:
            continue
        ranked = sum(answers[i].matched_at_1 for i in chosen) / len(chosen)
        nearest = sum(any(c["label"] == "template-00" and c["status"] == "match" for c in records[i]["candidates"])
                      for i in chosen) / len(chosen)
        print(f"{name}: {len(chosen)} targets ({100 * len(chosen) / len(records):.0f} %), ranked @1 "
              f"{100 * ranked:.0f} %, nearest template {100 * nearest:.0f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
