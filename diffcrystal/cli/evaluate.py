"""``diffcrystal evaluate``: sample with a generator (or apply a trivial baseline) against a
test set and score it."""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import replace
from pathlib import Path

from diffcrystal.baselines import BASELINES
from diffcrystal.cli.checks import at_least
from diffcrystal.errors import InputError
from diffcrystal.output_folder import check_no_earlier_output, fresh_folder
from diffcrystal.potential.results import OPTIMIZERS

EVALUATION_OUTPUTS = ("metrics.json",)
"""Files whose presence marks a folder holding an evaluation (never overwritten)."""

DEFAULT_OUT_PARENT = Path("evaluation")
"""Default ``--out`` is ``evaluation/<checkpoint or baseline>_<data>`` under the current folder
(``evaluation/`` is git-ignored in this repository)."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", help="generator checkpoint file or bundled model name (default: the bundled CSP one)")
    parser.add_argument("--data", type=Path, required=True, help="test set (CDVAE CSV, CIF folder, extxyz, ASE db)")
    parser.add_argument("--baseline", choices=BASELINES,
                        help="CSP: instead of sampling a model, make the k candidates by a trivial rule: 'prototype' "
                        "(cubic ABX3 perovskite, A/B placed at random), 'train' (a random training structure's "
                        "geometry with the target's species) or 'analogue' (the nearest training structure of the "
                        "same formula type on Pettifor's scale, species substituted); needs no checkpoint")
    parser.add_argument("--train-data", type=Path, nargs="+",
                        help="--baseline: training set(s) the geometry comes from; de novo: the training set(s) "
                        "the novel share is measured against (default: the --checkpoint's training data)")
    parser.add_argument("--k", type=int, default=20, help="CSP: samples per test composition (default: 20)")
    parser.add_argument("--n", type=int, default=1000, help="de novo: number of samples (default: 1000)")
    parser.add_argument("--steps", type=int, help="sampler steps (default: the checkpoint's)")
    parser.add_argument("--corrector-step-lr", type=float, metavar="LR",
                        help="Langevin corrector step_lr of the coordinates (default: the checkpoint's; "
                        "recorded in metrics.json when given)")
    parser.add_argument("--noise-scale", type=float, metavar="LAMBDA",
                        help="factor on the coordinates' reverse and corrector noise, a sampling temperature "
                        "(1: the diffusion's own; default: the checkpoint's; recorded in metrics.json when given)")
    parser.add_argument("--noise-scale-max-t", type=int, metavar="T",
                        help="apply --noise-scale only at timesteps t <= T, keeping the diffusion's own noise "
                        "above (default: every step; recorded in metrics.json when given)")
    parser.add_argument("--step-spacing", type=float, metavar="RHO",
                        help="spacing ρ > 0 of the sampler's timesteps t_k = T (1 - k/K)^ρ (1: even; larger: "
                        "denser at low noise, smaller: at high noise; default: the checkpoint's; recorded in metrics.json when given)")
    parser.add_argument("--corrector-steps", type=int, metavar="C",
                        help="Langevin corrector steps per predictor step, each one more denoiser call (default: "
                        "the checkpoint's; recorded in metrics.json when given)")
    parser.add_argument("--corrector-min-t", type=int, metavar="T",
                        help="run the Langevin corrector only at timesteps t > T, leaving the lowest-noise steps "
                        "to the predictor (default: the checkpoint's; recorded in metrics.json when given)")
    parser.add_argument("--limit", type=int, help="use only the first M test structures (after --offset)")
    parser.add_argument("--offset", type=int, default=0,
                        help="skip the first M test structures: score a test set in chunks, then merge "
                             "their metrics.json with scripts/merge_csp_metrics.py")
    parser.add_argument("--batch-size", type=int, default=500, help="crystals sampled together (default: 500)")
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed; the same seed gives the same samples (default: 0)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"],
                        help="where the generator samples (default: auto, CUDA when available); "
                        "a --baseline samples nothing")
    parser.add_argument("--workers", type=int, default=2,
                        help="processes for reading and structure matching; 0: none, all in this process (default: 2)")
    parser.add_argument("--primitive-targets", action="store_true",
                        help="CSP: sample each target's primitive cell (fewer atoms) instead of the cell as given "
                        "in the test file (the DiffCSP protocol)")
    parser.add_argument("--spacegroup-from-target", action="store_true",
                        help="CSP: give each target's space group and Wyckoff assignment (spglib, 0.01 Å; the "
                        "DiffCSP++ setting) and keep every sample on that group, in its conventional cell")
    parser.add_argument("--spacegroup-from-analogues", action="store_true",
                        help="CSP: take each target's space group and Wyckoff assignment from its nearest chemical "
                        "analogues in the training data (same formula type, nearest on Pettifor's scale; "
                        "--train-data, default the checkpoint's) and keep every sample on that group")
    parser.add_argument("--refine-analogues", type=int, metavar="T0",
                        help="CSP: start each sample from one of the target's nearest chemical analogues (species "
                        "substituted, as --baseline analogue), noised to timestep T0 and denoised by the model")
    parser.add_argument("--dataset", choices=["perov_5", "carbon_24", "mp_20"],
                        help="de novo coverage cutoffs (default: guessed from --data)")
    parser.add_argument("--out", type=Path,
                        help="folder for metrics.json / metrics.md / rmse_histogram.png; refused when it "
                        "holds an earlier evaluation (default: evaluation/<checkpoint or baseline>_<data>, "
                        "or -2, -3... when taken)")
    parser.add_argument("--ranked", action="store_true",
                        help="CSP: score `diffcrystal predict` as users meet it: each target's composition alone "
                             "goes through templates, diffusion, relaxation and ranking; the top --k ranked "
                             "structures are scored (resumable: records.jsonl in --out)")
    parser.add_argument("--potential", default="sevennet-0", help="--ranked: relaxes and ranks (default sevennet-0)")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default=None,
                        help="--ranked: predict's relaxation optimizer (default: predict's, BFGS; "
                             "records written before it was recorded were relaxed with FIRE)")
    parser.add_argument("--atom-count", action="store_true",
                        help="--ranked: tell predict each target cell's atom count too (`predict --atoms`), as the CSP "
                             "benchmarks pose the task; without it, the composition alone")
    parser.add_argument("--templates", metavar="TABLE",
                        help="--ranked: predict's template table (default: the one shipped with the checkpoint; "
                             "build one with scripts/build_analogue_table.py)")
    parser.add_argument("--sources", metavar="LIST",
                        help="--ranked: predict's candidate sources, comma-separated, each at predict's count for it "
                             "(default: predict's, template, with free samples where no template is within reach); "
                             "`--sources template,analogue_diffusion,free_diffusion` adds the model's samples beside "
                             "the templates")
    parser.add_argument("--far-samples", type=int, default=None, metavar="N",
                        help="--ranked: predict --far-samples, at least N free samples where the nearest analogue "
                             "is --far-distance or farther (default: predict's)")
    parser.add_argument("--far-distance", type=float, default=None, metavar="D",
                        help="--ranked: predict --far-distance, Mendeleev units (default: predict's)")
    parser.add_argument("--every", type=int, default=1, metavar="N",
                        help="use every N-th test structure (after --offset, before --limit)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def default_out(method: str, data: Path) -> Path:
    """``evaluation/<method>_<data folder>_<data file stem>``, e.g.
    ``evaluation/perov5_carbon24_csp_perov_5_test``."""
    data = data.resolve()
    name = data.name if data.is_dir() else f"{data.parent.name}_{data.stem}"
    return DEFAULT_OUT_PARENT / f"{method}_{name}"


def far_sample_settings(args: argparse.Namespace) -> dict:
    """``PredictSettings`` fields of ``--far-samples`` and ``--far-distance`` (predict's defaults
    for those not given)."""
    given = {"far_free_samples": args.far_samples, "far_distance": args.far_distance}
    return {name: value for name, value in given.items() if value is not None}


def check_arguments(args: argparse.Namespace) -> None:
    """The range and combination checks that need no checkpoint or data (one-line errors)."""
    at_least("--k", args.k, 1)
    at_least("--n", args.n, 1)
    at_least("--offset", args.offset, 0)
    at_least("--every", args.every, 1)
    at_least("--limit", args.limit, 1)
    at_least("--batch-size", args.batch_size, 1)
    at_least("--workers", args.workers, 0)
    at_least("--steps", args.steps, 1)
    if args.atom_count and not args.ranked:
        raise InputError("--atom-count tells predict the atom count: it goes with --ranked")
    if args.noise_scale_max_t is not None and args.noise_scale is None:
        raise InputError("--noise-scale-max-t bounds the steps of --noise-scale: give both")
    if args.templates is not None and not args.ranked:
        raise InputError("--templates is predict's template table: it goes with --ranked")
    if args.optimizer is not None and not args.ranked:
        raise InputError("--optimizer is predict's relaxation optimizer: it goes with --ranked")
    if args.sources is not None and not args.ranked:
        raise InputError("--sources names predict's candidate sources: it goes with --ranked")
    if (args.far_samples is not None or args.far_distance is not None) and not args.ranked:
        raise InputError("--far-samples and --far-distance are predict's: they go with --ranked")
    if args.far_samples is not None or args.far_distance is not None:
        from diffcrystal.prediction import PredictSettings

        PredictSettings(**far_sample_settings(args))  # checks them before any work
    if args.ranked:
        for option, value in (("--steps", args.steps), ("--corrector-step-lr", args.corrector_step_lr),
                              ("--noise-scale", args.noise_scale), ("--noise-scale-max-t", args.noise_scale_max_t),
                              ("--step-spacing", args.step_spacing), ("--corrector-steps", args.corrector_steps),
                              ("--corrector-min-t", args.corrector_min_t)):
            if value is not None:
                raise InputError(f"{option} is a sampler setting; --ranked samples as predict does, "
                                 "with the checkpoint's")
    if args.baseline is not None:
        for option, value in (("--corrector-step-lr", args.corrector_step_lr), ("--noise-scale", args.noise_scale),
                              ("--noise-scale-max-t", args.noise_scale_max_t),
                              ("--step-spacing", args.step_spacing),
                              ("--corrector-steps", args.corrector_steps), ("--corrector-min-t", args.corrector_min_t),
                              ("--device", args.device)):
            if value is not None:
                raise InputError(f"{option} is a sampler setting; a --baseline samples nothing")


def run_ranked_evaluation(args: argparse.Namespace) -> int:
    """``evaluate --ranked`` (:mod:`diffcrystal.ranked_evaluation`)."""
    from diffcrystal.candidates import DEFAULT_COUNTS, counts_from_sources
    from diffcrystal.checkpoint import bundled_analogue_table, file_sha256, resolve_checkpoint
    from diffcrystal.data.readers import read_crystals
    from diffcrystal.evaluation import check_output_folder
    from diffcrystal.generator import Generator
    from diffcrystal.potential.calculators import resolve_potential
    from diffcrystal.prediction import PredictSettings, load_library
    from diffcrystal.ranked_evaluation import evaluate_ranked

    if args.baseline is not None:
        raise InputError("--ranked scores predict's answers; the baselines are reported beside them, drop --baseline")
    at_least("--every", args.every, 1)
    counts = DEFAULT_COUNTS if args.sources is None else counts_from_sources(args.sources)
    resolve_potential(args.potential)
    checkpoint = resolve_checkpoint(args.checkpoint, "csp")
    out = args.out or default_out(f"ranked-{checkpoint.name.removesuffix('.safetensors')}", args.data)
    if not (out / "records.jsonl").is_file():  # a folder with records resumes them
        check_no_earlier_output(out, EVALUATION_OUTPUTS, "an evaluation")
    check_output_folder(out)
    targets = read_crystals(args.data, workers=args.workers, progress=not args.quiet).crystals
    targets = targets[args.offset::args.every][:args.limit]
    if not targets:
        raise InputError(f"{args.data}: no test structures left after --offset/--every/--limit")
    generator = Generator.from_checkpoint(checkpoint)
    templates = Path(args.templates) if args.templates is not None else bundled_analogue_table(checkpoint)
    library = load_library(templates, checkpoint)
    settings = PredictSettings(seed=args.seed, counts=counts, **far_sample_settings(args))
    if args.optimizer is not None:
        settings = replace(settings, relax=replace(settings.relax, optimizer=args.optimizer))
    extra = {"command": "diffcrystal " + shlex.join(sys.argv[1:]), "checkpoint": str(checkpoint),
             "checkpoint_sha256": file_sha256(checkpoint), "templates": str(templates),
             "templates_sha256": file_sha256(templates), "potential": args.potential, "offset": args.offset,
             "every": args.every, "candidate_counts": settings.counts,
             "far_samples": {"count": settings.far_free_samples, "distance": settings.far_distance}}
    path, text = evaluate_ranked(targets, out, library=library, generator=generator, potential=args.potential,
                                 settings=settings, k=args.k, extra=extra, progress=not args.quiet,
                                 give_atom_count=args.atom_count)
    print(text)
    print(f"details in {path}")
    return 0


def run(args: argparse.Namespace) -> int:
    check_arguments(args)
    if args.ranked:
        return run_ranked_evaluation(args)
    from diffcrystal.checkpoint import checkpoint_train_data, file_sha256, resolve_checkpoint
    from diffcrystal.evaluation import check_output_folder, evaluate

    checkpoint = None
    if args.baseline is None or args.checkpoint is not None:
        checkpoint = resolve_checkpoint(args.checkpoint, "csp")
    method = f"baseline-{args.baseline}" if args.baseline else checkpoint.name.removesuffix(".safetensors")
    if args.out is not None:
        check_no_earlier_output(args.out, EVALUATION_OUTPUTS, "an evaluation")
    out = args.out or fresh_folder(default_out(method, args.data), EVALUATION_OUTPUTS)
    check_output_folder(out)
    train_data = args.train_data or []
    if (args.baseline or args.spacegroup_from_analogues or args.refine_analogues is not None) and not train_data:
        if checkpoint is None:
            raise InputError(f"--baseline {args.baseline} needs training structures: pass --train-data PATH "
                             "(or a --checkpoint whose training data are recorded)")
        train_data = checkpoint_train_data(checkpoint)
    generator = None
    if args.baseline is None:
        from diffcrystal.api import resolve_device
        from diffcrystal.generator import Generator

        generator = Generator.from_checkpoint(checkpoint, device=resolve_device(args.device or "auto"))
        if args.corrector_step_lr is not None:
            generator.set_corrector_step_lr(args.corrector_step_lr)
        if args.noise_scale is not None:
            generator.set_coord_noise_scale(args.noise_scale, args.noise_scale_max_t)
        sampling = {"step_spacing": args.step_spacing, "corrector_steps": args.corrector_steps,
                    "corrector_min_t": args.corrector_min_t}
        generator.set_sampling(**{key: value for key, value in sampling.items() if value is not None})
        if generator.mode == "denovo" and not train_data:  # novelty against the model's own data
            try:
                train_data = checkpoint_train_data(checkpoint)
            except InputError as error:
                print(f"no novelty figures: {error}", file=sys.stderr)
    dataset = args.dataset or next((d for d in ("perov_5", "carbon_24", "mp_20") if d in str(args.data)), None)
    result = evaluate(
        generator,
        args.data,
        out,
        k=args.k,
        n=args.n,
        limit=args.limit,
        offset=args.offset,
        every=args.every,
        num_steps=args.steps,
        batch_size=args.batch_size,
        seed=args.seed,
        workers=args.workers,
        dataset=dataset,
        primitive_targets=args.primitive_targets,
        spacegroup_from_target=args.spacegroup_from_target,
        spacegroup_from_analogues=args.spacegroup_from_analogues,
        refine_analogues=args.refine_analogues,
        baseline=args.baseline,
        train_data=train_data,
        extra={
            "command": "diffcrystal " + shlex.join(sys.argv[1:]),
            "checkpoint": None if checkpoint is None else str(checkpoint),
            "checkpoint_sha256": None if checkpoint is None else file_sha256(checkpoint),
            **({} if args.corrector_step_lr is None else {"corrector_step_lr": args.corrector_step_lr}),
            **({} if args.noise_scale is None else {"coord_noise_scale": args.noise_scale}),
            **({} if args.noise_scale_max_t is None else {"coord_noise_scale_max_t": args.noise_scale_max_t}),
            **({} if args.step_spacing is None else {"step_spacing": args.step_spacing}),
            **({} if args.corrector_steps is None else {"corrector_steps": args.corrector_steps}),
            **({} if args.corrector_min_t is None else {"corrector_min_t": args.corrector_min_t}),
        },
        progress=not args.quiet,
    )
    print(result.markdown_path.read_text())
    what = f"baseline {args.baseline}" if args.baseline else "sampling"
    histogram = f", RMSE histogram {result.histogram_path}" if result.histogram_path else ""
    print(f"{what} took {result.sampling_seconds:.1f} s; details in {result.json_path}{histogram}")
    return 0
