"""Target by target, where two ranked evaluations of the same targets differ: the targets that
one run matches within its top k and the other does not, with, for each run, the rank of its
first matching structure (default score) and what became of its candidates that match before
relaxing (``converged``, ``pruned`` in the funnel, ``duplicate`` of another candidate, ...):

    python scripts/studies/compare_ranked_runs.py benchmarks/ranked_templates_mp20_every30/records.jsonl.gz \\
        benchmarks/ranked_wide28k_mp20_every30/records.jsonl.gz

Only the targets both record files hold are compared.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from diffcrystal.ranked_evaluation import read_records, rescored_results
from diffcrystal.ranking import RankingScore


def first_match_rank(record: dict, score: RankingScore) -> int | None:
    """1-based rank of the first matching structure under ``score`` (None: none matches)."""
    (result,) = rescored_results([record], score, len(record["ranked"]) or 1)
    return next((i + 1 for i, pair in enumerate(result.candidates) if pair.matched), None)


def describe(record: dict, score: RankingScore) -> str:
    rank = first_match_rank(record, score)
    matching = [f"{c['label']} {c['state']}" for c in record["candidates"] if c["status"] == "match"]
    return (f"first match at rank {rank if rank else '-'} of {len(record['ranked'])}; "
            f"matching candidates: {', '.join(matching) or 'none'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path, help="records.jsonl(.gz) of one evaluate --ranked run")
    parser.add_argument("second", type=Path, help="... and of the other")
    parser.add_argument("--k", type=int, nargs="+", default=[1, 5], help="ranks compared (default 1 5)")
    args = parser.parse_args(argv)
    runs = [{r["label"]: r for r in read_records(path)} for path in (args.first, args.second)]
    shared = [label for label in runs[0] if label in runs[1]]
    if not shared:
        raise SystemExit(f"error: {args.first} and {args.second} share no target")
    score = RankingScore()
    print(f"{len(shared)} targets in both runs; A = {args.first}, B = {args.second}")
    ranks = {label: [first_match_rank(run[label], score) for run in runs] for label in shared}
    for k in args.k:
        within = {label: [r is not None and r <= k for r in pair] for label, pair in ranks.items()}
        for name, which in (("A", 0), ("B", 1)):
            only = [label for label in shared if within[label][which] and not within[label][1 - which]]
            print(f"@{k}: matched by {name} only: {len(only)}")
            for label in only:
                print(f"  {label} {runs[0][label]['formula']}")
                for run_name, run in zip("AB", runs):
                    print(f"    {run_name}: {describe(run[label], score)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
