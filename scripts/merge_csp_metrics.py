"""Merge CSP evaluations run in chunks of one test set into one ``metrics.json``.

A long evaluation (e.g. @20 on 1,000 MP-20 targets, about 10 h of one CPU core with the
analogues' space groups) can run a chunk per session with ``diffcrystal evaluate --offset M
--limit L``; this script joins the chunks as if they had been scored together:

    python scripts/merge_csp_metrics.py runs/eval/chunk_0/metrics.json runs/eval/chunk_100/metrics.json \\
        --out runs/eval/mp20_csp_k20_200_sganalogue

A chunk may also be given gzipped (``metrics.json.gz``, as runs are committed in ``benchmarks/``).

The chunks must come from the same protocol (method, checkpoint hash, test file, k, sampler
steps, corrector step and steps, step spacing, space-group mode, matcher tolerances) and together cover one contiguous range of test
structures without overlap; anything else stops with a one-line error. Writes
``metrics.json``, ``metrics.md`` and ``rmse_histogram.png`` into ``--out`` and prints the table.
Summary figures are recomputed from the per-target detail (match rates, RMSEs, precise shares,
diversity). Sampling seconds add up.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from diffcrystal.errors import InputError
from diffcrystal.evaluation import check_output_folder
from diffcrystal.metrics import CSPMetrics, merge_csp_metrics, read_metrics_json, write_metrics
from diffcrystal.metrics.rmse_histogram import RMSE_HISTOGRAM_PNG, write_rmse_histogram

PROTOCOL_KEYS = (
    "method", "test_data", "primitive_targets", "num_steps", "k", "checkpoint_sha256", "train_data",
    "spacegroup_from_target", "spacegroup_from_analogues", "analogue_train_data",
    "refine_analogues_from_timestep", "corrector_step_lr", "corrector_steps", "corrector_min_t", "step_spacing",
)
"""Keys of a run's ``extra`` record that must agree between chunks (a sampler setting is recorded
only when it overrides the checkpoint's, whose hash stands for the rest)."""

COUNT_KEYS = ("num_target_atoms", "num_targets_in_p1", "num_targets_without_analogue", "num_targets_without_candidates")
"""Per-chunk counts of a run's ``extra`` record that add up (kept when every chunk has them)."""


def read_chunk(path: Path) -> tuple[CSPMetrics, dict]:
    """The metrics and the ``extra`` record of one ``metrics.json`` (or ``metrics.json.gz``)."""
    payload = read_metrics_json(path)
    try:
        return CSPMetrics.from_dict(payload), payload.get("extra", {})
    except (ValueError, KeyError, TypeError) as error:
        raise InputError(f"{path}: not a readable CSP metrics.json ({type(error).__name__}: {error})") from None


def order_chunks(chunks: list[tuple[Path, CSPMetrics, dict]]) -> list[tuple[Path, CSPMetrics, dict]]:
    """Chunks sorted by their first test structure; raises unless they share the protocol and
    tile one contiguous range of the test file."""
    first_extra = chunks[0][2]
    for path, _, extra in chunks[1:]:
        for key in PROTOCOL_KEYS:
            if extra.get(key) != first_extra.get(key):
                raise InputError(f"{path}: {key} is {extra.get(key)!r}, but {chunks[0][0]} has {first_extra.get(key)!r}")
    ordered = sorted(chunks, key=lambda chunk: chunk[2].get("test_offset", 0))
    for (path_a, metrics_a, extra_a), (path_b, _, extra_b) in zip(ordered, ordered[1:]):
        end = extra_a.get("test_offset", 0) + metrics_a.n_targets
        start = extra_b.get("test_offset", 0)
        if start != end:
            kind = "overlap" if start < end else "gap"
            raise InputError(f"{kind} between {path_a} (test structures up to {end}) and {path_b} (from {start})")
    return ordered


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chunks", nargs="+", type=Path, help="metrics.json or metrics.json.gz of each chunk (any order)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the merged metrics")
    args = parser.parse_args(argv)
    try:
        ordered = order_chunks([(path, *read_chunk(path)) for path in args.chunks])
        merged = merge_csp_metrics([metrics for _, metrics, _ in ordered])  # k and matcher tolerances
        out = check_output_folder(args.out)
    except (InputError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    first = ordered[0][2]
    record = {
        **{key: first[key] for key in PROTOCOL_KEYS if key in first},
        "test_offset": first.get("test_offset", 0),
        "num_test_structures": merged.n_targets,
        **{key: sum(extra[key] for _, _, extra in ordered) for key in COUNT_KEYS
           if all(key in extra for _, _, extra in ordered)},
        "sampling_seconds": round(sum(extra.get("sampling_seconds", 0.0) for _, _, extra in ordered), 1),
        "merged_from": [str(path) for path, _, _ in ordered],
        "commands": [extra.get("command") for _, _, extra in ordered],
    }
    title = f"diffcrystal csp metrics ({first.get('method', 'model')}, {len(ordered)} chunks merged)"
    _, md_path = write_metrics(merged, out, extra=record, title=title)
    write_rmse_histogram(merged, out / RMSE_HISTOGRAM_PNG, title=title)
    print(md_path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
