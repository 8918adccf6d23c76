"""``diffcrystal train``: fit a generator from a dataset and an experiment config."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from diffcrystal.plural import counted


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="experiment YAML (see configs/)")
    parser.add_argument("--data", nargs="+", help="training data (one or more datasets, read as one), overriding data.train of the config")
    parser.add_argument("--max-epochs", type=int, help="override train.max_epochs")
    parser.add_argument("--max-steps", type=int, help="override train.max_steps")
    parser.add_argument("--max-hours", type=float, help="override train.max_hours: wall-clock budget in hours, counting earlier sessions of a resumed run")
    parser.add_argument("--out", type=Path, help="run folder (default: runs/<config name>)")
    parser.add_argument("--init-from", help="start from this generator's weights (file or bundled name), overriding train.init_from")
    parser.add_argument("--resume", type=Path, help="Lightning checkpoint to resume from (checkpoints/last.ckpt)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from diffcrystal.training.clock import SECONDS_PER_HOUR
    from diffcrystal.training.config import load_config
    from diffcrystal.training.run_folder import LAST_CHECKPOINT
    from diffcrystal.training.train import SKIPPED_NAME, train

    config = load_config(args.config)
    if args.data:
        config.data.train = args.data[0] if len(args.data) == 1 else args.data
    overrides = {"max_epochs": args.max_epochs, "max_steps": args.max_steps, "max_hours": args.max_hours, "init_from": args.init_from}
    overrides = {key: value for key, value in overrides.items() if value is not None}
    # replace() runs the range checks of TrainConfig on the overridden values too.
    config.train = dataclasses.replace(config.train, **overrides)
    result = train(config, out_dir=args.out, resume=args.resume, progress=not args.quiet)
    print(f"trained {counted(result.global_step, 'step')} ({result.wall_time_s / SECONDS_PER_HOUR:.2f} h of training); "
          f"generator: {result.generator_path}")
    if result.stopped_by_budget:
        print(f"stopped by the time budget of {config.train.max_hours:g} h (train.max_hours); to continue, resume "
              f"with a larger --max-hours: --resume {result.run_dir / LAST_CHECKPOINT}")
    if result.num_skipped:
        print(f"skipped {counted(result.num_skipped, 'data entry', 'data entries')} (unreadable, or filtered by the "
              f"config; each with its reason): {result.run_dir / SKIPPED_NAME}")
    return 0
