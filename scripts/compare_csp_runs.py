"""Compare two CSP evaluations of the same targets sample by sample.

Two ``evaluate`` runs with the same seed draw the same noise wherever their samplers agree, so
their samples pair up: sample j of target i in run A against sample j of target i in run B.
Pairing removes most of the sampling noise from the comparison of two sampler settings (or
two models): the counts that decide it are the samples one run gets right and the other not.

    python scripts/compare_csp_runs.py runs/eval/A/metrics.json runs/eval/B/metrics.json

Reported over all paired samples: samples matched (and precise, RMSE < 0.1) in A, in B, in B
only and in A only; among the samples both match, how often B's RMSE is lower and higher, and
the median of B's RMSE over A's where A's is above numerical zero (``EXACT_COPY_RMS``: a
structure copied from the training data, as the ``train`` baseline draws, matches its duplicate
at about 1e-13, and the ratio would be meaningless). ``--json OUT`` writes the same figures. Each file may be a
``metrics.json`` or a committed ``metrics.json.gz``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from diffcrystal.atomic_write import atomic_write_text
from diffcrystal.errors import InputError
from diffcrystal.metrics import PRECISE_RMSE_THRESHOLDS, CSPMetrics, read_metrics_json

EXACT_COPY_RMS = 1e-9  # normalised RMSE below which a match is an exact copy (round-off), left out of the ratio


def paired_rms(a: CSPMetrics, b: CSPMetrics) -> list[tuple[float | None, float | None]]:
    """``(rms in A, rms in B)`` of every paired sample (None: not matched); the runs must score
    the same targets in the same order with the same number of samples each."""
    labels_a, labels_b = [t.label for t in a.per_target], [t.label for t in b.per_target]
    if labels_a != labels_b:
        raise InputError(f"the runs score different targets ({len(labels_a)} and {len(labels_b)} of them)")
    pairs = []
    for ta, tb in zip(a.per_target, b.per_target):
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_a", type=Path, help="metrics.json (or .json.gz) of run A")
    parser.add_argument("run_b", type=Path, help="metrics.json (or .json.gz) of run B, the same targets")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    try:
        runs = []
        for path in (args.run_a, args.run_b):
            try:
                runs.append(CSPMetrics.from_dict(read_metrics_json(path)))
            except (ValueError, KeyError, TypeError) as error:
                raise InputError(f"{path}: not a readable CSP metrics.json ({type(error).__name__}: {error})") from None
        figures = compare(paired_rms(*runs))
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    ratio = figures["median_rms_ratio_b_over_a"]
    print(f"{figures['samples']} paired samples; A = {args.run_a}, B = {args.run_b}\n")
    print("| | A | B | B only | A only |\n|---|---|---|---|---|")
    for what in ("matched", "precise"):
        print(f"| {what} | {figures[f'{what}_a']} | {figures[f'{what}_b']} | {figures[f'{what}_b_only']} | "
              f"{figures[f'{what}_a_only']} |")
    print(f"\nmatched in both: {figures['matched_both']}; B's RMSE lower in {figures['rms_lower_in_b']}, "
          f"higher in {figures['rms_higher_in_b']}; median B/A {'-' if ratio is None else f'{ratio:.3f}'}")
    if args.json is not None:
        record = {"run_a": str(args.run_a), "run_b": str(args.run_b), **figures}
        atomic_write_text(args.json, json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
