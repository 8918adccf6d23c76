"""Do a CSP model's samples match their targets more precisely once their symmetry is made
exact? Scored on the validation structures the checkpoint held out, raw and symmetrized.

The sampler ends with residual displacements of the order of the lowest noise level, so a
sample whose structure type is right can sit just outside the precise threshold (RMSE < 0.1)
of a high-symmetry target. ``sample`` already writes each sample's spglib-refined cell
(``cif_symmetrized/``, :func:`~diffcrystal.symmetry.symmetrized`): spglib finds the group
within ``symprec`` Å and moves every site onto its exact Wyckoff position. Nothing of the
target is used. This study samples ``k`` structures per validation composition once, then
scores the raw samples and their symmetrized cells at each ``--symprec`` with the protocol's
matcher (a sample spglib finds no group above P1 for stays as it is), sample for sample:

    OMP_NUM_THREADS=1 python scripts/studies/symmetrized_samples.py --checkpoint mp20_csp \\
        --k 4 --limit 200 --symprec 0.01 0.05 0.1 0.2 0.3 --out runs/study/symmetrized_val

With the same checkpoint settings, seed, k and limit, the raw samples are those of
``scripts/tune_corrector.py`` (the same sampler calls). Writes ``summary.json`` into ``--out``
and prints a Markdown table: per sample, the share matched and precise (RMSE < 0.1), @k, and
the samples each symmetrization made precise or matched that were not, and the reverse, and of
the samples matched both ways, how many the symmetrization brought nearer the target.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from diffcrystal.atomic_write import atomic_write_text
from diffcrystal.errors import InputError
from diffcrystal.metrics import PRECISE_RMSE_THRESHOLDS, csp_metrics
from diffcrystal.metrics.csp import CHANGE_COLUMNS, change_cells
from diffcrystal.ranked_evaluation import held_out_samples
from diffcrystal.symmetry import symmetrized

PRECISE_RMSE = PRECISE_RMSE_THRESHOLDS[0]
"""RMSE below which a match counts as precise (0.1, the issue's and docs' threshold)."""


def symmetrized_or_raw(crystal, symprec: float):
    """The spglib-refined cell of ``crystal`` at ``symprec`` Å, or ``crystal`` itself when
    spglib finds no group above P1 (or it is missing)."""
    if crystal is None:
        return None
    return symmetrized(crystal, symprec) or crystal


def row_of(label: str, metrics, raw_metrics, changed: int, seconds: float) -> dict:
    """One variant's table row; with ``raw_metrics``, what it changed sample for sample."""
    row = {
        "variant": label,
        "samples_changed": changed,
        **metrics.per_sample_rates(PRECISE_RMSE),
        "seconds": round(seconds, 1),
    }
    if raw_metrics is not None:
        row.update(metrics.changes_from(raw_metrics, PRECISE_RMSE))
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default="mp20_csp", help="CSP checkpoint file or bundled model name")
    parser.add_argument("--k", type=int, default=4, help="samples per validation composition (default: 4)")
    parser.add_argument("--limit", type=int, help="use only the first M validation structures")
    parser.add_argument("--symprec", type=float, nargs="+", required=True,
                        help="spglib tolerances (Å) to symmetrize at, each > 0")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if any(not p > 0 for p in args.symprec):
            raise InputError(f"--symprec values must be > 0 Å, got {args.symprec}")
        started = time.perf_counter()
        checkpoint, generator, validation, samples = held_out_samples(args.checkpoint, args.k, args.limit, args.seed)
        sampling_seconds = time.perf_counter() - started  # with loading the checkpoint and data
        raw_metrics = csp_metrics(samples, validation, workers=1, progress=False)
        rows = [row_of("raw", raw_metrics, None, 0, sampling_seconds)]
        for symprec in args.symprec:
            started = time.perf_counter()
            refined = [[symmetrized_or_raw(c, symprec) for c in per_target] for per_target in samples]
            changed = sum(r is not c for per_r, per_c in zip(refined, samples) for r, c in zip(per_r, per_c))
            metrics = csp_metrics(refined, validation, workers=1, progress=False)
            rows.append(row_of(f"symmetrized at {symprec:g} Å", metrics, raw_metrics, changed, time.perf_counter() - started))
            print(rows[-1], file=sys.stderr)
        sampling = generator.experiment.sampling
        summary = {
            "checkpoint": str(checkpoint), "validation_structures": len(validation), "k": args.k, "seed": args.seed,
            "num_steps": sampling.num_steps, "corrector_steps": sampling.corrector_steps,
            "corrector_min_t": sampling.corrector_min_t, "corrector_step_lr": generator.corrector_step_lr,
            "rows": rows,
        }
        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out / "summary.json", json.dumps(summary, indent=1) + "\n")
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{len(validation)} validation structures of {checkpoint.name}, k = {args.k}\n")
    print(f"| samples | changed | matched / sample | precise / sample | matched @k | precise @k | {CHANGE_COLUMNS} | "
          "invalid |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['variant']} | {row['samples_changed']} | {row['match_per_sample_percent']:.1f} % | "
              f"{row['precise_per_sample_percent']:.1f} % | {row['match_at_k_percent']:.1f} % | "
              f"{row['precise_at_k_percent']:.1f} % | {change_cells(row)} | {row['n_invalid']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
