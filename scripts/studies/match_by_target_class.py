"""Where does a CSP model fail? @1 matched and precise shares of ``evaluate`` runs, split by
what kind of crystal the target is: atoms in its primitive cell, distinct elements, and crystal
system (spglib, 0.1 Å).

A model's single match rate hides where it is weak. Broken down beside the ``train`` and
``analogue`` baselines on the same targets, it says which targets a better network or sampler
has to win (for instance large cells, or low symmetry), and which ones it already solves:

    python scripts/studies/match_by_target_class.py --data ../shared/data/mp_20/test.csv \\
        --run model=benchmarks/mp20_csp_wide80k_c3_k1_full/metrics.json.gz \\
        --run train=benchmarks/baseline_train_mp20_k1_full/metrics.json.gz \\
        --run analogue=benchmarks/baseline_analogue_mp20_k1_full/metrics.json.gz \\
        --out benchmarks/match_by_target_class_mp20.json

Each run must hold every target of ``--data`` (found by label). Matched is the protocol's
``StructureMatcher`` result of the run's first candidate; precise is matched with normalised
RMS < 0.1. With ``--per-sample`` every candidate counts (the shares per sample of
``scripts/tune_corrector.py``, split the same way; for runs with k samples per target, such as
two checkpoints' tuning runs on the same validation structures). Writes one JSON object (per
class: targets, and per run the samples counted and how many match and match precisely) and
prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from diffcrystal.atomic_write import atomic_write_text
from diffcrystal.data.crystal import Crystal
from diffcrystal.errors import InputError
from diffcrystal.metrics import read_metrics_json
from diffcrystal.symmetry import space_group

PRECISE_RMS = 0.1
ATOM_BINS = ((1, 4), (5, 8), (9, 12), (13, 16), (17, 20), (21, None))
"""Inclusive ranges of atoms in the primitive cell (MP-20 has 1-20; the last bin catches more)."""
CRYSTAL_SYSTEMS = ("triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic",
                   "unknown")


def candidate_hits(path: Path, per_sample: bool) -> dict[str, list[tuple[bool, bool]]]:
    """label -> (matched, precise) of each target's first candidate (every candidate with
    ``per_sample``) in an ``evaluate`` file; a target without candidates counts one miss."""
    report = read_metrics_json(path)
    if report.get("task") != "csp":
        raise InputError(f"{path}: not a CSP evaluation (task {report.get('task')!r})")
    hits = {}
    for target in report["per_target"]:
        candidates = target["candidates"] or [{"status": "missing", "rms": None}]
        hits[target["label"]] = [
            (c["status"] == "match", c["status"] == "match" and c["rms"] is not None and c["rms"] < PRECISE_RMS)
            for c in (candidates if per_sample else candidates[:1])]
    return hits


def _bin_name(low: int, high: int | None) -> str:
    return f"{low}-{high}" if high is not None else f">={low}"


def atom_bin(crystal: Crystal) -> str:
    for low, high in ATOM_BINS:
        if crystal.num_atoms >= low and (high is None or crystal.num_atoms <= high):
            return _bin_name(low, high)
    raise ValueError(f"{crystal.label}: {crystal.num_atoms} atoms")


def element_count(crystal: Crystal) -> str:
    distinct = len(set(crystal.atomic_numbers.tolist()))
    return str(distinct) if distinct < 4 else ">=4"


def crystal_system_of(crystal: Crystal) -> str:
    return space_group(crystal).crystal_system


CLASSIFIERS: dict[str, tuple[Callable[[Crystal], str], tuple[str, ...]]] = {
    "atoms in the primitive cell": (atom_bin, tuple(_bin_name(low, high) for low, high in ATOM_BINS)),
    "distinct elements": (element_count, ("1", "2", "3", ">=4")),
    "crystal system (spglib, 0.1 Å)": (crystal_system_of, CRYSTAL_SYSTEMS),
}
"""Split name -> (class of a target, the classes in reporting order)."""


def breakdown(targets: list[Crystal], runs: dict[str, dict[str, list[tuple[bool, bool]]]]) -> dict:
    """Per split and class (classes no target falls in are left out): the number of targets and
    each run's samples counted, and how many of them match and match precisely."""
    result = {}
    for split, (classify, order) in CLASSIFIERS.items():
        classes = [classify(target) for target in targets]
        rows = {}
        for name in order:
            labels = [target.label for target, c in zip(targets, classes) if c == name]
            if labels:
                rows[name] = {"targets": len(labels), **{
                    run: {"samples": sum(len(hits[label]) for label in labels),
                          "matched": sum(matched for label in labels for matched, _ in hits[label]),
                          "precise": sum(precise for label in labels for _, precise in hits[label])}
                    for run, hits in runs.items()}}
        result[split] = rows
    return result


def markdown(result: dict, run_names: list[str]) -> str:
    lines = []
    for split, rows in result.items():
        lines += ["", f"| {split} | targets | " + " | ".join(f"{run} matched / precise" for run in run_names) + " |",
                  "|---|---|" + "---|" * len(run_names)]
        for name, row in rows.items():
            cells = [f"{100 * row[run]['matched'] / row[run]['samples']:.1f} / "
                     f"{100 * row[run]['precise'] / row[run]['samples']:.1f} %" for run in run_names]
            lines.append(f"| {name} | {row['targets']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the targets' dataset (the runs' --data)")
    parser.add_argument("--run", action="append", required=True, metavar="NAME=METRICS_FILE",
                        help="an evaluate run's metrics.json(.gz); repeat for several")
    parser.add_argument("--per-sample", action="store_true",
                        help="count every candidate of a target, not only its first")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = parser.parse_args(argv)
    from diffcrystal.data.readers import read_crystals

    try:
        runs, files = {}, {}
        for spec in args.run:
            name, _, path = spec.partition("=")
            if not name or not path:
                raise InputError(f"--run {spec!r}: expected NAME=METRICS_FILE")
            runs[name], files[name] = candidate_hits(Path(path), args.per_sample), path
        loaded = read_crystals(args.data, canonical=True, progress=False)
        if loaded.skipped:
            raise InputError(f"{args.data}: {len(loaded.skipped)} rows unreadable (first: {loaded.skipped[0]})")
        targets = loaded.crystals
        for name, hits in runs.items():
            absent = [t.label for t in targets if t.label not in hits]
            if absent:
                raise InputError(f"--run {name}: lacks {len(absent)} of the {len(targets)} targets of {args.data} "
                                 f"(first {absent[0]})")
        result = {"data": str(args.data), "targets": len(targets), "per_sample": args.per_sample, "runs": files,
                  "splits": breakdown(targets, runs)}
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    counted = "per sample" if args.per_sample else "@1"
    print(f"{len(targets)} targets of {args.data}; {counted} matched / precise (RMS < {PRECISE_RMS})")
    print(markdown(result["splits"], list(runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
