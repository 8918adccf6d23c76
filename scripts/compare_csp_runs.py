"""Compare two CSP evaluations of the same targets, sample by sample and target by target.

Two ``evaluate`` runs with the same seed draw the same noise wherever their samplers agree, so
their samples pair up: sample j of target i in run A against sample j of target i in run B.
Pairing removes most of the sampling noise from the comparison of two sampler settings (or
two models): the counts that decide it are the samples one run gets right and the other not.

    python scripts/compare_csp_runs.py runs/eval/A/metrics.json runs/eval/B/metrics.json [--targets 500:1000]

Reported over all paired samples: samples matched (and precise, RMSE < 0.1) in A, in B, in B
only and in A only; among the samples both match, how often B's RMSE is lower and higher, and
the median of B's RMSE over A's where A's is above numerical zero (``EXACT_COPY_RMS``: an
analogue template of a prototype with no free parameter, or a training structure the ``train``
baseline draws, matches its target at round-off, and the ratio would be meaningless). Per
target, the same four counts @k (any of its samples matches; the best match is precise), which
compare runs of different kinds, e.g. the model against a baseline. ``--targets START:END``
compares a slice of the targets (0-based, END excluded); ``--json OUT`` writes the figures.
Each file may be a ``metrics.json`` or a committed ``metrics.json.gz``."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from diffcrystal.atomic_write import atomic_write_text
from diffcrystal.errors import InputError
from diffcrystal.metrics import PRECISE_RMSE_THRESHOLDS, CSPMetrics, TargetResult, read_metrics_json

EXACT_COPY_RMS = 1e-9  # normalised RMSE below which a match is an exact copy (round-off), left out of the ratio


def paired_targets(a: Sequence[TargetResult], b: Sequence[TargetResult]) -> list[tuple[TargetResult, TargetResult]]:
    """The targets of A and B side by side; the runs must score the same targets in the same order."""
    labels_a, labels_b = [t.label for t in a], [t.label for t in b]
    if labels_a != labels_b:
        raise InputError(f"the runs score different targets ({len(labels_a)} and {len(labels_b)} of them)")
    return list(zip(a, b))


def paired_rms(targets: list[tuple[TargetResult, TargetResult]]) -> list[tuple[float | None, float | None]]:
    """``(rms in A, rms in B)`` of every paired sample (None: not matched); each target must have
    the same number of samples in both runs."""
    pairs = []
    for ta, tb in targets:
        if len(ta.candidates) != len(tb.candidates):
            raise InputError(f"target {ta.label}: {len(ta.candidates)} samples in one run, "
                             f"{len(tb.candidates)} in the other")
        pairs += [(ca.rms if ca.matched else None, cb.rms if cb.matched else None)
                  for ca, cb in zip(ta.candidates, tb.candidates)]
    return pairs


def compare(pairs: list[tuple[float | None, float | None]]) -> dict:
    """Counts of matched and precise samples in each run and in one only, and the RMSE
    comparison over the samples both match."""
    def precise(rms):
        return rms is not None and rms < PRECISE_RMSE_THRESHOLDS[0]

    both = [(x, y) for x, y in pairs if x is not None and y is not None]
    ratios = [y / x for x, y in both if x > EXACT_COPY_RMS]
    return {
        "samples": len(pairs),
        "matched_a": sum(x is not None for x, _ in pairs),
        "matched_b": sum(y is not None for _, y in pairs),
        "matched_b_only": sum(x is None and y is not None for x, y in pairs),
        "matched_a_only": sum(x is not None and y is None for x, y in pairs),
        "precise_a": sum(precise(x) for x, _ in pairs),
        "precise_b": sum(precise(y) for _, y in pairs),
        "precise_b_only": sum(precise(y) and not precise(x) for x, y in pairs),
        "precise_a_only": sum(precise(x) and not precise(y) for x, y in pairs),
        "matched_both": len(both),
        "rms_lower_in_b": sum(y < x for x, y in both),
        "rms_higher_in_b": sum(y > x for x, y in both),
        "median_rms_ratio_b_over_a": statistics.median(ratios) if ratios else None,
    }


def compare_targets(targets: list[tuple[TargetResult, TargetResult]]) -> dict:
    """Targets matched @k (any sample) and precise @k (the best match below the first precise
    threshold) in A, in B, in B only and in A only."""
    def precise(target: TargetResult) -> bool:
        return target.best_rms is not None and target.best_rms < PRECISE_RMSE_THRESHOLDS[0]

    figures = {"targets": len(targets)}
    for what, hit in (("matched", lambda t: t.matched_at_k), ("precise", precise)):
        flags = [(hit(ta), hit(tb)) for ta, tb in targets]
        figures |= {f"targets_{what}_a": sum(x for x, _ in flags), f"targets_{what}_b": sum(y for _, y in flags),
                    f"targets_{what}_b_only": sum(y and not x for x, y in flags),
                    f"targets_{what}_a_only": sum(x and not y for x, y in flags)}
    return figures


def target_slice(text: str) -> slice:
    """``START:END`` (0-based, END excluded; either side may be empty) as a slice."""
    try:
        start, end = (int(part) if part else None for part in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected START:END, e.g. 500:1000, got {text!r}") from None
    return slice(start, end)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_a", type=Path, help="metrics.json (or .json.gz) of run A")
    parser.add_argument("run_b", type=Path, help="metrics.json (or .json.gz) of run B, the same targets")
    parser.add_argument("--targets", type=target_slice, default=slice(None), metavar="START:END",
                        help="compare only these targets (0-based, END excluded)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    try:
        runs = []
        for path in (args.run_a, args.run_b):
            try:
                runs.append(CSPMetrics.from_dict(read_metrics_json(path)))
            except (ValueError, KeyError, TypeError) as error:
                raise InputError(f"{path}: not a readable CSP metrics.json ({type(error).__name__}: {error})") from None
        targets = paired_targets(*(run.per_target for run in runs))[args.targets]
        if not targets:
            raise InputError(f"--targets selects none of the {len(runs[0].per_target)} targets")
        figures = compare(paired_rms(targets)) | compare_targets(targets)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    ratio = figures["median_rms_ratio_b_over_a"]
    print(f"{figures['samples']} paired samples of {figures['targets']} targets; A = {args.run_a}, B = {args.run_b}\n")
    print("| | A | B | B only | A only |\n|---|---|---|---|---|")
    for prefix, unit in (("", "samples"), ("targets_", "targets @k")):
        for what in ("matched", "precise"):
            key = f"{prefix}{what}"
            print(f"| {unit} {what} | {figures[f'{key}_a']} | {figures[f'{key}_b']} | {figures[f'{key}_b_only']} | "
                  f"{figures[f'{key}_a_only']} |")
    print(f"\nmatched in both: {figures['matched_both']}; B's RMSE lower in {figures['rms_lower_in_b']}, "
          f"higher in {figures['rms_higher_in_b']}; median B/A {'-' if ratio is None else f'{ratio:.3f}'}")
    if args.json is not None:
        record = {"run_a": str(args.run_a), "run_b": str(args.run_b), **figures}
        atomic_write_text(args.json, json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
