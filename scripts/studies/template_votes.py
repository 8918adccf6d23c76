"""Structure-type votes against the nearest template, unrelaxed: which template would a
k-nearest-neighbour vote pick, and does it match the target? ("Ranked prediction", its
paragraph "Structure-type votes").

For each target (the CSP checkpoint's held-out validation structures, each with its own entry
left out of the templates; or a test file), the analogues are ordered as ``predict`` orders
them with the target's atom count given (:meth:`AnalogueLibrary.analogues`); the ``nearest``
first vote for their structure type with weight ``exp(-d / scale)``, and the winning type's
nearest analogue, substituted, is compared with the target by the protocol's matcher.
``nearest = 1`` is the nearest template (the ``analogue`` baseline @1):

    python scripts/studies/template_votes.py --split validation --every 5 --out benchmarks/template_votes_mp20_val.json
    python scripts/studies/template_votes.py --split test --every 15 --out benchmarks/template_votes_mp20_test.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

NEAREST = (1, 5, 10, 20)
"""Grid of how many nearest analogues vote."""
SCALES = (0.5, 1.0, 2.0)
"""Grid of the vote's distance scale (Mendeleev units)."""
TEST_FILE = Path("../shared/data/mp_20/test.csv")


def winner(library, target, nearest: int, scale: float):
    """The nearest analogue of the structure type with most votes among the ``nearest`` first
    (:meth:`~diffcrystal.analogues.AnalogueLibrary.type_votes`; ties: the type whose first
    analogue is nearer), or None when the target has no analogue."""
    analogues = library.analogues(target.composition, target.num_atoms)
    votes = library.type_votes(target.composition, target.num_atoms, nearest, scale)
    if not votes:
        return None
    first = {}
    for analogue in analogues[:nearest]:
        first.setdefault(analogue.structure_type(), analogue)
    return first[max(votes, key=lambda kind: (votes[kind], -first[kind].distance))]


def library_and_targets(split: str, every: int, limit: int | None):
    """``(templates, targets)``: ``mp20_csp``'s bundled template library and every ``every``-th
    target (at most ``limit``) of ``split``: its held-out validation structures (each to be
    compared with its own entry left out of the templates) or the shared test file."""
    from diffcrystal.checkpoint import bundled_analogue_table, resolve_checkpoint
    from diffcrystal.prediction import load_library

    checkpoint = resolve_checkpoint("mp20_csp", "csp")
    library = load_library(bundled_analogue_table(checkpoint), checkpoint)
    if split == "validation":
        from diffcrystal.ranked_evaluation import held_out_validation

        targets = held_out_validation(checkpoint)[2]
    else:
        from diffcrystal.data.readers import read_crystals

        targets = read_crystals(TEST_FILE, progress=False).crystals
    return library, targets[::every][:limit]


def target_arguments(description: str) -> argparse.ArgumentParser:
    """A parser with the options of :func:`library_and_targets` and ``--out`` (a JSON report)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--split", choices=("validation", "test"), required=True)
    parser.add_argument("--every", type=int, default=5, help="take every N-th target")
    parser.add_argument("--limit", type=int, default=None, help="at most M targets")
    parser.add_argument("--out", type=Path, required=True, help="JSON report")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = target_arguments(__doc__.splitlines()[0]).parse_args(argv)

    from diffcrystal.metrics.csp import compare_with_target

    library, targets = library_and_targets(args.split, args.every, args.limit)
    compared: dict[tuple[str, str], tuple[bool, float | None]] = {}
    counts = {(n, s): [0, 0] for n in NEAREST for s in SCALES}
    for target in targets:
        templates = library.without({target.label}) if args.split == "validation" else library
        for key in counts:
            chosen = winner(templates, target, *key)
            if chosen is None:
                break
            pair = (target.label, chosen.template.label)
            if pair not in compared:
                result = compare_with_target(chosen.substituted(), target)
                compared[pair] = (result.status == "match", result.rms)
            matched, rms = compared[pair]
            counts[key][0] += matched
            counts[key][1] += matched and rms is not None and rms < 0.1
    rows = [{"nearest": n, "scale": s, "matched_percent": 100.0 * m / len(targets),
             "precise_percent": 100.0 * p / len(targets)} for (n, s), (m, p) in counts.items()]
    rows.sort(key=lambda r: (-r["matched_percent"], -r["precise_percent"], r["nearest"], r["scale"]))
    report = {"split": args.split, "every": args.every, "targets": len(targets), "atom_count_given": True,
              "rows": rows}
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    for row in rows:
        print(f"nearest {row['nearest']:>2}, scale {row['scale']:g}: {row['matched_percent']:.1f} % matched, "
              f"{row['precise_percent']:.1f} % precise")
    return 0


if __name__ == "__main__":
    sys.exit(main())
