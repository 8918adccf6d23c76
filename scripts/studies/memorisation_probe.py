"""Memorisation probe: can a denoiser variant learn which structure goes with which composition?

Trains a config on the first ``--rows`` structures of a training file (all of them used for
training; validation reads the same rows), then samples each of those compositions once and
counts how many come back matched and precisely (RMSE < 0.1 and < 0.05, DiffCSP's matcher,
``diffcrystal.metrics.csp_metrics``). A model that ignores composition cannot reproduce a
set of different perovskites precisely, whatever its match rate; one that uses it can.

    OMP_NUM_THREADS=1 python scripts/studies/memorisation_probe.py --config configs/perov5_csp.yaml \\
        --rows 256 --steps 3000 --set model.pairwise_messages=true --out runs/probe/pairwise

Writes ``probe.json`` (settings, counts, training wall time) into ``--out`` and prints one line.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

from diffcrystal.data.readers import read_crystals
from diffcrystal.evaluation import generate_for
from diffcrystal.generator import Generator
from diffcrystal.metrics import csp_metrics
from diffcrystal.training.config import ExperimentConfig, load_config
from diffcrystal.training.train import train

PRECISE_RMSE = (0.1, 0.05)
"""Thresholds of the normalised RMSE below which a match counts as precise."""


def parse_override(text: str) -> tuple[str, str, object]:
    """``section.key=value`` (value parsed as YAML) -> (section, key, value)."""
    path, _, value = text.partition("=")
    section, _, key = path.partition(".")
    if not key or not _:
        raise SystemExit(f"--set expects section.key=value, got {text!r}")
    return section, key, yaml.safe_load(value)


def probe_config(base: ExperimentConfig, subset: Path, steps: int, overrides: list[str]) -> ExperimentConfig:
    values = base.to_dict()
    values["data"].update(train=str(subset), val=str(subset))
    values["train"].update(max_steps=steps, max_epochs=1_000_000, checkpoint_every_n_steps=max(steps // 4, 1))
    for text in overrides:
        section, key, value = parse_override(text)
        if key not in values.get(section, {}):
            raise SystemExit(f"unknown config key {section}.{key}")
        values[section][key] = value
    return ExperimentConfig.from_dict(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--data", help="training CSV (default: the config's data.train)")
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--sample-steps", type=int, help="sampler steps (default: the config's)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = load_config(args.config)
    source = args.data or base.data.train
    subset = out / "probe.csv"
    pd.read_csv(source).head(args.rows).to_csv(subset, index=False)
    config = probe_config(base, subset, args.steps, args.set)

    started = time.perf_counter()
    result = train(config, out_dir=out / "run", progress=False)
    train_s = time.perf_counter() - started

    generator = Generator.from_checkpoint(result.generator_path)
    targets = read_crystals(subset, canonical=False, progress=False).crystals
    steps = args.sample_steps or config.sampling.num_steps
    requests = [(t.num_atoms, t.atomic_numbers.tolist()) for t in targets]
    samples = generate_for(generator, requests, num_steps=steps, batch_size=512, seed=args.seed, progress=False)
    metrics = csp_metrics([[s] for s in samples], targets, workers=1, progress=False)
    rms = [t.best_rms for t in metrics.per_target if t.matched_at_k]
    record = {
        "config": args.config,
        "overrides": args.set,
        "rows": len(targets),
        "train_steps": result.global_step,
        "train_seconds": round(train_s, 1),
        "sample_steps": steps,
        "parameters": sum(p.numel() for p in generator.denoiser.parameters()),
        "matched": len(rms),
        **{f"precise_below_{t}": sum(r < t for r in rms) for t in PRECISE_RMSE},
        "mean_rmse": round(sum(rms) / len(rms), 4) if rms else None,
        "torch_threads": torch.get_num_threads(),
    }
    (out / "probe.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record))


if __name__ == "__main__":
    main()
