"""Validation loss of a generator per noise level, on the structures its training held out.

The arms of the fixed-budget study (``configs/study/README.md``) are compared on the same
held-out structures: this script rebuilds them from the checkpoint's recorded ``data`` section
and ``train.seed`` (:func:`~diffcrystal.ranked_evaluation.held_out_validation`, as training
drew them) and evaluates the joint diffusion loss of the generator's (EMA) denoiser in float32 with
the timesteps restricted to each of ``--bins`` equal ranges of t in 1..T. The noise is drawn
from a fixed seed per bin and repeat, so two checkpoints of the same data see the same noisy
structures. The mean over the bins estimates the loss over uniform t (``val/loss`` in the
run's ``logs/metrics.csv``, up to the noise draws).

    OMP_NUM_THREADS=1 python scripts/study_validation_loss.py mp20_csp \\
        --out benchmarks/study/mp20_csp_baseline_val_loss.json
    OMP_NUM_THREADS=1 python scripts/study_validation_loss.py runs/study_wide \\
        --out benchmarks/study/mp20_csp_wide_val_loss.json

``CHECKPOINT`` is a run folder (its ``generator.safetensors``), a generator file or a bundled
model's name. Writes one JSON object: per bin its t range and the mean per-structure losses
(``loss`` and one ``loss_<field>`` per diffusion field), their mean over the bins, and what
was measured (checkpoint, its training step and time, structures, seed, repeats).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from diffcrystal.atomic_write import atomic_write_text
from diffcrystal.checkpoint import resolve_checkpoint
from diffcrystal.data.graph import collate
from diffcrystal.diffusion.joint import JointDiffusion
from diffcrystal.errors import InputError
from diffcrystal.generator import Generator
from diffcrystal.ranked_evaluation import held_out_validation
from diffcrystal.training.run_folder import GENERATOR_NAME

DEFAULT_BINS = 10
BATCH_SIZE = 64
"""Crystals per loss call. Fixed, not the checkpoint's training batch: the noise is drawn batch
by batch from one stream, so the same batches give every checkpoint the same noisy structures
(64 is the batch every earlier record of this script was computed with)."""
DEFAULT_REPEATS = 2
"""Noise draws per structure and bin (the standard error of a bin's mean falls as 1/sqrt)."""


def checkpoint_of(spec: str) -> Path:
    """The generator file ``spec`` names: a run folder's generator, a file, or a bundled name."""
    folder = Path(spec)
    if folder.is_dir():
        if not (folder / GENERATOR_NAME).is_file():
            raise InputError(f"run folder {folder} holds no {GENERATOR_NAME} yet")
        return folder / GENERATOR_NAME
    return resolve_checkpoint(spec, "csp")


def timestep_bins(num_timesteps: int, bins: int) -> list[tuple[int, int]]:
    """``bins`` contiguous, inclusive ``(t_min, t_max)`` ranges covering 1..``num_timesteps``."""
    if not 1 <= bins <= num_timesteps:
        raise InputError(f"--bins must be in 1..{num_timesteps} (the checkpoint's timesteps), got {bins}")
    edges = [round(i * num_timesteps / bins) for i in range(bins + 1)]
    return [(edges[i] + 1, edges[i + 1]) for i in range(bins)]


@torch.no_grad()
def binned_losses(generator: Generator, crystals: list, bins: list[tuple[int, int]], repeats: int, seed: int,
                  atom_loss_average: str) -> list[dict[str, float]]:
    """Per bin: the mean over ``crystals`` and ``repeats`` noise draws of each loss term, the
    per-atom terms reduced as ``atom_loss_average`` says (:class:`JointDiffusion`)."""
    batches = [collate(crystals[i: i + BATCH_SIZE], torch.float32) for i in range(0, len(crystals), BATCH_SIZE)]
    results = []
    for index, window in enumerate(bins):
        joint = JointDiffusion(generator.joint.fields, generator.joint.loss_weights, window, atom_loss_average)
        sums: dict[str, float] = {}
        for repeat in range(repeats):
            noise = torch.Generator().manual_seed(seed + 1_000 * repeat + index)
            for batch in batches:
                for name, value in joint.training_loss(generator.denoiser, batch, noise).items():
                    sums[name] = sums.get(name, 0.0) + float(value) * batch.num_graphs
        results.append({name: total / (repeats * len(crystals)) for name, total in sorted(sums.items())})
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", help="run folder, generator file or bundled model name")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--bins", type=int, default=DEFAULT_BINS, help=f"ranges of t (default: {DEFAULT_BINS})")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS,
                        help=f"noise draws per structure and bin (default: {DEFAULT_REPEATS})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise (default: 0)")
    parser.add_argument("--train-data", nargs="+", help="the checkpoint's training data, where its recorded path is not found")
    parser.add_argument("--atom-loss-average", choices=["crystal", "atom"],
                        help="reduction of the per-atom losses (default: the checkpoint's own); give the "
                             "same one to compare checkpoints trained with different ones")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        if args.repeats < 1:
            raise InputError(f"--repeats must be >= 1, got {args.repeats}")
        checkpoint, generator, validation = held_out_validation(checkpoint_of(args.checkpoint), args.train_data)
        generator.denoiser.float()
        bins = timestep_bins(generator.joint.num_timesteps, args.bins)
        if not validation:
            raise InputError(f"{checkpoint}: its training data hold out no validation structures")
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    reduction = args.atom_loss_average or generator.joint.atom_loss_average
    losses = binned_losses(generator, validation, bins, args.repeats, args.seed, reduction)
    report = {
        "checkpoint": args.checkpoint,
        "training": generator.training,
        "validation_structures": len(validation),
        "dtype": "float32",
        "seed": args.seed,
        "repeats": args.repeats,
        "atom_loss_average": reduction,
        "bins": [{"t_min": low, "t_max": high, **values} for (low, high), values in zip(bins, losses)],
        "mean_over_bins": {name: sum(row[name] for row in losses) / len(losses) for name in losses[0]},
        "cpu_threads": torch.get_num_threads(),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(report, indent=1) + "\n")
    print(f"{len(validation)} validation structures; loss per t range -> {args.out}")
    for row in report["bins"]:
        print(f"t {row['t_min']:>4}-{row['t_max']:<4} " + "  ".join(f"{k} {v:.4f}" for k, v in row.items() if k.startswith("loss")))
    print("mean    " + "  ".join(f"{k} {v:.4f}" for k, v in report["mean_over_bins"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
