"""Tune a CSP checkpoint's sampler on its own held-out validation structures: the Langevin
corrector step, the number of steps, their spacing and the corrector steps per step.

The corrector step ``step_lr (sigma_t / sigma_min)^2`` is a sampling-time setting: DiffCSP tuned
one value per benchmark for its network, and ours may want another. So are the number of
predictor steps K and the spacing ρ of their timesteps ``t_k = T (1 - k/K)^ρ`` (1: even; larger:
denser at low noise, smaller: at high noise; :func:`~diffcrystal.diffusion.sampler.timestep_grid`). Tuning on the test
file would make the test figures optimistic, so this script rebuilds the validation structures
the checkpoint never trained on (its recorded ``data`` section and ``train.seed``, through
:func:`~diffcrystal.training.datamodule.load_split`) and samples each of their compositions
``k`` times for every combination of the settings given (``--corrector-steps``: Langevin
corrector steps per predictor step, each one more denoiser call; ``--corrector-min-t``: the
timestep at and below which the corrector stops; ``--corrector-max-t``: above which;
``--noise-scales``: factors λ on the coordinates' reverse and corrector noise, a sampling
temperature; ``--noise-scale-max-t``: the timestep above which λ is 1). Reported per setting: the share of
*samples* that match their target and that match precisely (RMSE < 0.1): the expected @1, with
about k times less variance than @1 itself, @k, and the sampling seconds.

    OMP_NUM_THREADS=1 python scripts/tune_corrector.py --checkpoint perov5_csp \\
        --values 5e-7 1.5e-6 5e-6 1.5e-5 5e-5 --k 8 --out runs/tune/perov5_csp
    OMP_NUM_THREADS=1 python scripts/tune_corrector.py --checkpoint mp20_csp --values 3e-5 \\
        --steps 100 200 --spacings 1 2 3 --k 4 --limit 200 --out runs/tune/mp20_csp_spacing

Writes ``validation.extxyz``, one ``evaluate`` folder per setting (``lr_<value>``, with
``_steps<K>_rho<ρ>`` when ``--steps`` or ``--spacings`` are given, ``_corrector<C>`` with
``--corrector-steps``, ``_cmin<t>`` with ``--corrector-min-t``, ``_cmax<t>`` with ``--corrector-max-t``,
``_noise<λ>`` with ``--noise-scales``, ``_noisemax<t>`` with ``--noise-scale-max-t``) and ``summary.json`` into
``--out``, and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
from pathlib import Path

from ase.io import write

from diffcrystal.atomic_write import atomic_write_text
from diffcrystal.checkpoint import resolve_checkpoint
from diffcrystal.checkpoint import checkpoint_train_data
from diffcrystal.errors import InputError
from diffcrystal.evaluation import evaluate
from diffcrystal.generator import Generator
from diffcrystal.training.datamodule import load_split

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="CSP checkpoint file or bundled model name")
    parser.add_argument("--values", type=float, nargs="+", help="corrector step_lr values to try "
                        "(default: the checkpoint's)")
    parser.add_argument("--k", type=int, default=8, help="samples per validation composition (default: 8)")
    parser.add_argument("--steps", type=int, nargs="+", help="sampler step counts to try (default: the checkpoint's)")
    parser.add_argument("--spacings", type=float, nargs="+",
                        help="timestep spacings ρ to try, each > 0 (default: the checkpoint's)")
    parser.add_argument("--corrector-steps", type=int, nargs="+",
                        help="corrector steps per predictor step to try (default: the checkpoint's)")
    parser.add_argument("--corrector-min-t", type=int, nargs="+", metavar="T",
                        help="timesteps at and below which the corrector stops, to try (default: the checkpoint's)")
    parser.add_argument("--corrector-max-t", type=int, nargs="+", metavar="T",
                        help="timesteps above which the corrector stops, to try (default: the checkpoint's)")
    parser.add_argument("--noise-scales", type=float, nargs="+", metavar="LAMBDA",
                        help="factors on the coordinates' reverse and corrector noise to try (default: the checkpoint's)")
    parser.add_argument("--noise-scale-max-t", type=int, nargs="+", metavar="T",
                        help="timesteps above which the noise scale is 1, to try (default: the checkpoint's)")
    parser.add_argument("--limit", type=int, help="use only the first M validation structures")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        checkpoint = resolve_checkpoint(args.checkpoint, "csp")
        generator = Generator.from_checkpoint(checkpoint)
        if generator.mode != "csp":
            raise InputError(f"{checkpoint} is a {generator.mode} checkpoint; the corrector is tuned for CSP")
        experiment = generator.experiment
        data = dataclasses.replace(experiment.data, train=[str(p) for p in checkpoint_train_data(checkpoint)])
        _, validation, _ = load_split(data, experiment.train.seed)
        validation = validation[: args.limit] if args.limit else validation
        if not validation:
            raise InputError(f"{checkpoint}: its training data hold out no validation structures")
        args.out.mkdir(parents=True, exist_ok=True)
        val_path = args.out / "validation.extxyz"
        write(val_path, [crystal.to_atoms() for crystal in validation], format="extxyz")
        settings = list(itertools.product(args.values or [generator.corrector_step_lr],
                                          args.steps or [experiment.sampling.num_steps],
                                          args.spacings or [experiment.sampling.step_spacing],
                                          args.corrector_steps or [experiment.sampling.corrector_steps],
                                          args.corrector_min_t or [experiment.sampling.corrector_min_t],
                                          args.corrector_max_t or [experiment.sampling.corrector_max_t],
                                          args.noise_scales or [generator.coord_noise_scale],
                                          args.noise_scale_max_t or [experiment.diffusion.coord_noise_scale_max_t]))
        rows = []
        for value, steps, spacing, correctors, min_t, max_t, noise_scale, noise_max_t in settings:
            generator.set_corrector_step_lr(value)
            generator.set_coord_noise_scale(noise_scale, noise_max_t)
            generator.set_sampling(step_spacing=spacing, corrector_steps=correctors, corrector_min_t=min_t,
                                   corrector_max_t=max_t)
            name = f"lr_{value:g}"
            if args.steps is not None or args.spacings is not None:
                name += f"_steps{steps}_rho{spacing:g}"
            if args.corrector_steps is not None:
                name += f"_corrector{correctors}"
            if args.corrector_min_t is not None:
                name += f"_cmin{min_t}"
            if args.corrector_max_t is not None:
                name += f"_cmax{max_t}"
            if args.noise_scales is not None:
                name += f"_noise{noise_scale:g}"
            if args.noise_scale_max_t is not None:
                name += f"_noisemax{noise_max_t}"
            run = evaluate(generator, val_path, args.out / name, k=args.k, num_steps=steps,
                           seed=args.seed, workers=1, progress=False,
                           extra={"checkpoint": str(checkpoint), "corrector_step_lr": value, "step_spacing": spacing,
                                  "corrector_steps": correctors, "corrector_min_t": min_t,
                                  "corrector_max_t": max_t, "coord_noise_scale": noise_scale,
                                  "coord_noise_scale_max_t": noise_max_t})
            row = {"step_lr": value, "num_steps": steps, "step_spacing": spacing, "corrector_steps": correctors,
                   "corrector_min_t": min_t, "corrector_max_t": max_t, "coord_noise_scale": noise_scale,
                   "coord_noise_scale_max_t": noise_max_t,
                   "sampling_seconds": round(run.sampling_seconds, 1), **run.metrics.per_sample_rates()}
            rows.append(row)
            print(f"{name}: {row}", file=sys.stderr)
            summary = {"checkpoint": str(checkpoint), "validation_structures": len(validation), "k": args.k,
                       "seed": args.seed, "rows": rows}
            atomic_write_text(args.out / "summary.json", json.dumps(summary, indent=1) + "\n")  # after every row
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{len(validation)} validation structures of {checkpoint.name}, k = {args.k}\n")
    print("| corrector step_lr | steps | spacing ρ | corrector steps | corrector at t > | corrector at t <= | noise λ | λ at t <= | "
          "matched / sample | precise / sample | matched @k | precise @k | invalid | sampling s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['step_lr']:g} | {row['num_steps']} | {row['step_spacing']:g} | {row['corrector_steps']} | "
              f"{row['corrector_min_t']} | {row['corrector_max_t'] or 'T'} | {row['coord_noise_scale']:g} | "
              f"{row['coord_noise_scale_max_t'] or 'T'} | "
              f"{row['match_per_sample_percent']:.1f} % | {row['precise_per_sample_percent']:.1f} % | "
              f"{row['match_at_k_percent']:.1f} % | {row['precise_at_k_percent']:.1f} % | {row['n_invalid']} | "
              f"{row['sampling_seconds']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
