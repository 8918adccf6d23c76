"""``diffcrystal evaluate``: sample with a generator against a test set and score it."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch

from diffcrystal.checkpoint import file_sha256, resolve_checkpoint
from diffcrystal.evaluation import evaluate
from diffcrystal.generator import Generator


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", help="generator checkpoint file or bundled model name (default: the bundled CSP one)")
    parser.add_argument("--data", type=Path, required=True, help="test set (CDVAE CSV, CIF folder, extxyz, ASE db)")
    parser.add_argument("--k", type=int, default=20, help="CSP: samples per test composition (default: 20)")
    parser.add_argument("--n", type=int, default=1000, help="de novo: number of samples (default: 1000)")
    parser.add_argument("--steps", type=int, help="sampler steps (default: the checkpoint's)")
    parser.add_argument("--limit", type=int, help="use only the first M test structures")
    parser.add_argument("--batch-size", type=int, default=500, help="crystals sampled together (default: 500)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="processes for structure matching")
    parser.add_argument("--primitive-targets", action="store_true",
                        help="CSP: sample each target's primitive cell (fewer atoms) instead of the cell as given "
                        "in the test file (the DiffCSP protocol)")
    parser.add_argument("--dataset", choices=["perov_5", "carbon_24", "mp_20"],
                        help="de novo coverage cutoffs (default: guessed from --data)")
    parser.add_argument("--out", type=Path, default=Path("evaluation"), help="folder for metrics.json / metrics.md")
    parser.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    checkpoint = resolve_checkpoint(args.checkpoint, "csp")
    generator = Generator.from_checkpoint(checkpoint, device="cuda" if torch.cuda.is_available() else "cpu")
    dataset = args.dataset or next((d for d in ("perov_5", "carbon_24", "mp_20") if d in str(args.data)), None)
    result = evaluate(
        generator,
        args.data,
        args.out,
        k=args.k,
        n=args.n,
        limit=args.limit,
        num_steps=args.steps,
        batch_size=args.batch_size,
        seed=args.seed,
        workers=args.workers,
        dataset=dataset,
        primitive_targets=args.primitive_targets,
        extra={
            "command": "diffcrystal " + shlex.join(sys.argv[1:]),
            "checkpoint": str(checkpoint),
            "checkpoint_sha256": file_sha256(checkpoint),
        },
        progress=not args.quiet,
    )
    print(result.markdown_path.read_text())
    print(f"sampling took {result.sampling_seconds:.1f} s; details in {result.json_path}")
    return 0
