"""How many distinct templates does ``predict`` need? The share of targets that one of the first
``k`` distinct structure types (unrelaxed, species substituted) matches, for several ``k`` and
analogue-distance limits ("Ranked prediction", paragraph "The candidates' ceiling").

The analogues are ordered and made distinct as ``predict`` does with the target's atom count
given (:meth:`AnalogueLibrary.distinct_analogues`); each is compared with the target by the
protocol's matcher. A ranked answer cannot do better @k than this ceiling at the same ``k``
unless relaxation or diffusion turns a non-matching candidate into a match:

    python scripts/studies/template_ceiling.py --split validation --every 5 --out benchmarks/template_ceiling_mp20_val.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from template_votes import library_and_targets, target_arguments  # noqa: E402  (the study beside this one)

COUNTS = (1, 3, 5, 8, 12, 16, 24)
"""Numbers of distinct templates tried."""
MAX_DISTANCES = (4.0, 8.0, None)
"""Farthest analogue (Mendeleev units; None: any)."""


def main(argv: list[str] | None = None) -> int:
    args = target_arguments(__doc__.splitlines()[0]).parse_args(argv)

    from tqdm import tqdm

    from diffcrystal.metrics.csp import compare_with_target

    library, targets = library_and_targets(args.split, args.every, args.limit)
    # Per distance limit and target: 1-based position, among the templates within the limit, of
    # the first matching template and of the first precise one (0: none).
    first = {limit: [] for limit in MAX_DISTANCES}
    for target in tqdm(targets, desc="targets"):
        templates = library.without({target.label}) if args.split == "validation" else library
        compared = {}
        for limit in MAX_DISTANCES:
            outcomes = []
            for analogue in templates.distinct_analogues(target.composition, max(COUNTS), target.num_atoms, limit):
                if analogue.template.label not in compared:
                    result = compare_with_target(analogue.substituted(), target)
                    matched = result.status == "match"
                    compared[analogue.template.label] = (matched, matched and result.rms is not None and result.rms < 0.1)
                outcomes.append(compared[analogue.template.label])
            matched = next((i for i, o in enumerate(outcomes, start=1) if o[0]), 0)
            precise = next((i for i, o in enumerate(outcomes, start=1) if o[1]), 0)
            first[limit].append((matched, precise))
    rows = []
    for limit, found in first.items():
        for k in COUNTS:
            rows.append({"templates": k, "max_distance": limit,
                         "matched_percent": 100.0 * sum(0 < m <= k for m, _ in found) / len(targets),
                         "precise_percent": 100.0 * sum(0 < p <= k for _, p in found) / len(targets)})
    report = {"split": args.split, "every": args.every, "targets": len(targets), "atom_count_given": True,
              "rows": rows}
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    for row in rows:
        print(f"{row['templates']:>2} templates within {row['max_distance']}: {row['matched_percent']:.1f} % matched, "
              f"{row['precise_percent']:.1f} % precise")
    return 0


if __name__ == "__main__":
    sys.exit(main())
