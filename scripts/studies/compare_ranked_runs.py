"""Target by target, where two ranked evaluations of the same targets differ: the targets that
one run matches within its top k and the other does not. For each, the structure the matching
run ranks first among its matches (label, rank, energy) and, in both runs, what became of that
candidate (``converged`` and its rank, ``pruned`` in the funnel, ``duplicate`` of another, or
absent) beside the energy of the run's answer:

    python scripts/studies/compare_ranked_runs.py benchmarks/ranked_templates_mp20_every30/records.jsonl.gz \\
        benchmarks/ranked_wide28k_mp20_every30/records.jsonl.gz

Only the targets both record files hold are compared.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from diffcrystal.ranked_evaluation import read_records, rescored_order
from diffcrystal.ranking import RankingScore


def first_match(order: list[dict]) -> tuple[int, dict] | None:
    """``(1-based rank, entry)`` of the first matching structure of a ranked order (None: none)."""
    return next(((i + 1, e) for i, e in enumerate(order) if e["status"] == "match"), None)


def fate(record: dict, order: list[dict], label: str) -> str:
    """What became of candidate ``label`` in a run: its rank, energy and whether it matches when
    ranked (a ranked structure stands for the candidates merged into it), else its state, or
    ``absent``."""
    for rank, entry in enumerate(order, 1):
        if label == entry["label"] or label in entry.get("members", ()):
            verdict = "matches" if entry["status"] == "match" else "no match"
            return f"rank {rank} of {len(order)} ({entry['energy_per_atom']:.3f} eV/atom, as {entry['label']}, {verdict})"
    state = next((c["state"] for c in record["candidates"] if c["label"] == label), "absent")
    return f"{state}, unranked"


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
    orders = {label: [rescored_order(run[label], score) for run in runs] for label in shared}
    print(f"{len(shared)} targets in both runs; A = {args.first}, B = {args.second}")
    for k in args.k:
        for name, which in (("A", 0), ("B", 1)):
            only = []
            for label in shared:
                found = [first_match(order) for order in orders[label]]
                if found[which] is not None and found[which][0] <= k and (
                        found[1 - which] is None or found[1 - which][0] > k):
                    only.append((label, found[which][1]["label"]))
            print(f"@{k}: matched by {name} only: {len(only)}")
            for label, structure in only:
                print(f"  {label} {runs[0][label]['formula']}: {name}'s first match {structure}")
                for run_name, run, order in zip("AB", runs, orders[label]):
                    answer = f"{order[0]['energy_per_atom']:.3f} eV/atom" if order else "none"
                    print(f"    {run_name}: {fate(run[label], order, structure)}; answer {answer}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
