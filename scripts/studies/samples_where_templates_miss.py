"""Where the templates miss, how many samples does the model need? A model's @j on the targets
whose first ``k`` distinct templates all miss, beside the ``train`` baseline's, by the Mendeleev
distance of the target's nearest analogue ("Where the templates miss").

The ranked answer's templates reach about 80 % of MP-20 targets; the rest have a structure type
no near analogue has, and only a generator's free samples can reach them. This study measures
the generator there, unrelaxed, from ordinary ``evaluate`` records:

1. the targets the analogue baseline's first ``--templates`` candidates all miss, written as a
   CSV of their test rows:

       python scripts/studies/samples_where_templates_miss.py targets \\
           --analogue benchmarks/baseline_analogue_mp20_k20_1000/metrics.json.gz \\
           --data ../shared/data/mp_20/test.csv --out runs/templates_miss/targets.csv

2. ``diffcrystal evaluate --checkpoint mp20_csp --data runs/templates_miss/targets.csv --k 20
   --out runs/templates_miss/mp20_csp_k20`` (any ``evaluate`` run with k samples per target);

3. the report: @j for every run given (runs over the first 1,000 test targets and runs over the
   missed targets alone both work: targets are found by label), by nearest-analogue distance:

       python scripts/studies/samples_where_templates_miss.py report \\
           --analogue benchmarks/baseline_analogue_mp20_k20_1000/metrics.json.gz \\
           --run wide=runs/templates_miss/mp20_csp_k20/metrics.json \\
           --run train=benchmarks/baseline_train_mp20_k20_1000/metrics.json.gz \\
           --out benchmarks/samples_where_templates_miss_mp20.json

Matched is the protocol's ``StructureMatcher`` (stol 0.5); precise is matched with normalised
RMS < 0.1. The samples are not relaxed: relaxation can turn a loose match into a precise one
or lose it.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from pathlib import Path

from diffcrystal.atomic_write import atomic_write_text
from diffcrystal.errors import InputError
from diffcrystal.metrics import read_metrics_json

SAMPLE_COUNTS = (1, 2, 5, 10, 20)
"""Numbers of samples j at which @j is reported."""
DISTANCE_BINS = ((0.0, 2.0), (2.0, 8.0), (8.0, math.inf))
"""Ranges of the nearest analogue's Mendeleev distance (per formula atom) the report splits by
(beyond 8, ``predict``'s default reach, it draws free samples alone);
targets with no analogue of their formula type form their own row."""
PRECISE_RMS = 0.1


def per_target(path: Path) -> dict[str, list[dict]]:
    """label -> the candidates' comparison results (status, rms) of an ``evaluate`` metrics file."""
    report = read_metrics_json(path)
    if report.get("task") != "csp":
        raise InputError(f"{path}: not a CSP evaluation (task {report.get('task')!r})")
    return {target["label"]: target["candidates"] for target in report["per_target"]}


def hit(candidates: list[dict], j: int, precise: bool = False) -> bool:
    """Whether one of the first ``j`` candidates matches (with RMS < 0.1 when ``precise``)."""
    return any(c["status"] == "match" and (not precise or (c["rms"] is not None and c["rms"] < PRECISE_RMS))
               for c in candidates[:j])


def missed_labels(analogue: dict[str, list[dict]], templates: int) -> list[str]:
    """The targets none of the first ``templates`` analogue-baseline candidates match, in order."""
    return [label for label, candidates in analogue.items() if not hit(candidates, templates)]


def write_targets(args) -> int:
    missed = set(missed_labels(per_target(args.analogue), args.templates))
    with open(args.data, newline="") as handle:
        reader = csv.DictReader(handle)
        rows = [row for row in reader if row.get("material_id") in missed]
        fields = reader.fieldnames
    if len(rows) != len(missed):
        raise InputError(f"{args.data}: holds {len(rows)} of the {len(missed)} missed targets; is it the file "
                         f"the analogue baseline was run on?")
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(args.out, text.getvalue())
    print(f"{len(rows)} targets that the first {args.templates} templates miss -> {args.out}")
    return 0


def nearest_distances(labels: list[str], data: Path) -> dict[str, float]:
    """label -> Mendeleev distance of the target's nearest analogue in ``mp20_csp``'s template
    library (inf: none of its formula type)."""
    from diffcrystal.checkpoint import bundled_analogue_table, resolve_checkpoint
    from diffcrystal.data.readers import read_crystals
    from diffcrystal.prediction import load_library

    checkpoint = resolve_checkpoint("mp20_csp", "csp")
    library = load_library(bundled_analogue_table(checkpoint), checkpoint)
    wanted = set(labels)
    out = {}
    for target in read_crystals(data, progress=False).crystals:
        if target.label in wanted:
            nearest = library.distinct_analogues(target.composition, 1, target.num_atoms, None)
            out[target.label] = nearest[0].distance if nearest else math.inf
    return out


def rates(candidates_by_label: dict[str, list[dict]], labels: list[str]) -> dict:
    """@j matched and precise counts over ``labels`` (targets a run lacks count as misses), for
    the j of :data:`SAMPLE_COUNTS` up to the run's samples per target."""
    k = max((len(c) for c in candidates_by_label.values()), default=0)
    return {f"at_{j}": {"matched": sum(hit(candidates_by_label.get(label, []), j) for label in labels),
                        "precise": sum(hit(candidates_by_label.get(label, []), j, True) for label in labels)}
            for j in SAMPLE_COUNTS if j <= k}


def report(args) -> int:
    analogue = per_target(args.analogue)
    missed = missed_labels(analogue, args.templates)
    runs, files = {}, {}
    for spec in args.run:
        name, _, path = spec.partition("=")
        if not path:
            raise InputError(f"--run {spec!r}: expected NAME=METRICS_FILE")
        runs[name], files[name] = per_target(Path(path)), path
        absent = [label for label in missed if label not in runs[name]]
        if absent:
            raise InputError(f"--run {name}: lacks {len(absent)} of the {len(missed)} missed targets "
                             f"(first {absent[0]})")
    distance = nearest_distances(missed, args.data)
    groups = {"all missed": missed, "no analogue": [label for label in missed if math.isinf(distance[label])]}
    for low, high in DISTANCE_BINS:
        groups[f"nearest analogue {low:g}-{high:g}"] = [label for label in missed if low <= distance[label] < high]
    result = {"targets": len(analogue), "templates": args.templates, "missed": len(missed), "runs": files,
              "groups": {name: {"targets": len(labels), **{run: rates(c, labels) for run, c in runs.items()}}
                         for name, labels in groups.items()}}
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    print(f"{len(missed)} of {len(analogue)} targets: none of the first {args.templates} templates matches")
    for name, group in result["groups"].items():
        print(f"{name} ({group['targets']} targets)")
        for run in runs:
            cells = "  ".join(f"@{j} {group[run][f'at_{j}']['matched']}/{group[run][f'at_{j}']['precise']}"
                              for j in SAMPLE_COUNTS if f"at_{j}" in group[run])
            print(f"  {run:>8}: {cells}  (matched/precise)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("targets", "report"):
        command = commands.add_parser(name)
        command.add_argument("--analogue", type=Path, required=True,
                             help="metrics file of evaluate --baseline analogue (k >= --templates)")
        command.add_argument("--templates", type=int, default=8, help="distinct templates tried (default: 8, predict's)")
        command.add_argument("--data", type=Path, default=Path("../shared/data/mp_20/test.csv"),
                             help="the targets' CSV (default: the MP-20 test file)")
        command.add_argument("--out", type=Path, required=True)
    commands.choices["report"].add_argument("--run", action="append", required=True, metavar="NAME=METRICS",
                                            help="an evaluate run's metrics file (repeatable)")
    args = parser.parse_args(argv)
    try:
        return write_targets(args) if args.command == "targets" else report(args)
    except InputError as error:
        print(f"samples_where_templates_miss: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
