"""Write a generator that hands its last timesteps to a low-noise expert (diffcrystal.experts).

    python scripts/attach_low_noise_expert.py checkpoints/mp20_csp.safetensors \\
        runs/mp20_csp_low_noise/generator.safetensors --out runs/mp20_csp_with_expert.safetensors

The expert is a generator trained with ``diffusion.train_timesteps: [1, t_e]`` under the same
diffusion (e.g. ``configs/mp20_csp_low_noise.yaml``); the result samples with the base above
t_e and the expert at and below it, and loads wherever a checkpoint does
(``--checkpoint FILE``; ``scripts/bundle_checkpoint.py`` bundles it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from diffcrystal.experts import attach_low_noise_expert


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", type=Path, help="generator checkpoint for the high-noise timesteps")
    parser.add_argument("expert", type=Path, help="generator trained on timesteps 1..t_e")
    parser.add_argument("--out", type=Path, required=True, help="combined checkpoint to write")
    args = parser.parse_args(argv)
    path = attach_low_noise_expert(args.base, args.expert, args.out)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
