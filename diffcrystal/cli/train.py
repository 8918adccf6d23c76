"""``diffcrystal train``: fit a generator from a dataset and an experiment config."""

from __future__ import annotations

import argparse
from pathlib import Path

from diffcrystal.training.config import load_config
from diffcrystal.training.train import train


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="experiment YAML (see configs/)")
    parser.add_argument("--data", nargs="+", help="training data (one or more datasets, read as one), overriding data.train of the config")
    parser.add_argument("--max-epochs", type=int, help="override train.max_epochs")
    parser.add_argument("--max-steps", type=int, help="override train.max_steps")
    parser.add_argument("--out", type=Path, help="run folder (default: runs/<config name>)")
    parser.add_argument("--resume", type=Path, help="Lightning checkpoint to resume from (checkpoints/last.ckpt)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.data:
        config.data.train = args.data[0] if len(args.data) == 1 else args.data
    if args.max_epochs is not None:
        config.train.max_epochs = args.max_epochs
    if args.max_steps is not None:
        config.train.max_steps = args.max_steps
    result = train(config, out_dir=args.out, resume=args.resume, progress=not args.quiet)
    print(f"trained {result.global_step} steps; generator: {result.generator_path}")
    return 0
