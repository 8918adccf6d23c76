"""``diffcrystal sample``: generate candidate crystals with a trained generator."""

from __future__ import annotations

import argparse
import logging
import re
import shlex
import time
from collections import Counter
from pathlib import Path

from diffcrystal.analogues import DEFAULT_MAX_ANALOGUE_DISTANCE
from diffcrystal.cli.checks import at_least
from diffcrystal.data.composition import parse_composition, to_atomic_numbers
from diffcrystal.errors import InputError
from diffcrystal.plural import counted


def _formula_units(text: str) -> list[int]:
    """``'1,2'`` -> ``[1, 2]``; the range is checked in :func:`run`."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"formula units must be integers like '1' or '1,2', got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"formula units must be integers like '1' or '1,2', got {text!r}")
    return values


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--composition", help="formula to predict structures for (CSP), e.g. YBa2Cu3O7; "
                        "without it the de novo generator also picks species and atom counts")
    parser.add_argument("--formula-units", type=_formula_units, metavar="Z",
                        help="formula units per cell, one or a list such as 1,2 (default: 1; with --spacegroup "
                        "every Z whose conventional cell fits the checkpoint's largest training cell)")
    parser.add_argument("--spacegroup", type=int, metavar="N",
                        help="sample every structure in space group N (1..230), kept on its Wyckoff positions "
                        "at every step; cells are the group's conventional cell")
    parser.add_argument("--wyckoff", default="auto", metavar="auto|LIST",
                        help="with --spacegroup: 'auto' (cycle through every Wyckoff assignment of the composition "
                        "that realises the group, fewest orbits first) or one assignment such as 'Na:4a,Cl:4b'")
    parser.add_argument("--analogues", nargs="?", const="bundled", metavar="TABLE",
                        help="sample on the space groups and Wyckoff assignments of the composition's nearest "
                        "chemical analogues (known crystals of the same formula type with the nearest elements on "
                        "Pettifor's scale), cycling from the nearest; TABLE: a file from "
                        "scripts/build_analogue_table.py (default: the one shipped with the checkpoint)")
    parser.add_argument("--max-analogue-distance", type=float, metavar="D",
                        help="with --analogues: only analogues within Mendeleev distance D per formula atom "
                        "(same elements 0, neighbours in a group ~1-3; default: 8, beyond which an analogue's "
                        "structure rarely holds on MP-20; 'inf': any)")
    parser.add_argument("--n", type=int, default=100, help="number of crystals (default: 100)")
    parser.add_argument("--out", type=Path, help="output folder (default: samples/<formula> or samples/denovo)")
    parser.add_argument("--checkpoint", help="generator checkpoint file or bundled model name, e.g. carbon24_csp (default: the bundled one for the mode)")
    parser.add_argument("--steps", type=int, help="sampler steps (default: the checkpoint's recommended number)")
    parser.add_argument("--corrector-steps", type=int, metavar="C",
                        help="Langevin corrector steps per sampler step, each one more denoiser call (default: the "
                        "checkpoint's; 5 for mp20_csp, which with 1 samples about twice as fast and reproduces about half as many "
                        "structures precisely)")
    parser.add_argument("--corrector-min-t", type=int, metavar="T",
                        help="run the corrector only at timesteps t > T, the lowest-noise steps by the predictor alone "
                        "(default: the checkpoint's)")
    parser.add_argument("--noise-scale", type=float, metavar="LAMBDA",
                        help="factor on the coordinates' sampling noise, a temperature (default: the checkpoint's, 1 "
                        "for the bundled ones). 0.5 suits a user who wants one or a few candidates: on 200 MP-20 test "
                        "targets it made the first sample match 31.5 %% of them against 24.5 %%, but 20 samples "
                        "cover fewer (67.5 %% against 77 %%): colder samples are more alike")
    parser.add_argument("--batch-size", type=int, default=100, help="crystals sampled together (default: 100)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same structures")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="where the generator samples (default: auto, CUDA when available)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run in --out (default: the latest of samples/<formula>, "
                        "samples/<formula>-2, ...)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _fresh_folder(default: Path, resume: bool) -> Path:
    """``default``, or ``default-2``, ``default-3``... when earlier runs hold it (never
    overwrite saved samples); with ``--resume`` the latest existing one."""
    candidates = [default] + [default.with_name(f"{default.name}-{i}") for i in range(2, 10_000)]
    taken = [c for c in candidates if (c / "summary.csv").exists()]
    if resume:
        return taken[-1] if taken else default
    return next(c for c in candidates if not (c / "summary.csv").exists())


def _element_counts(records) -> str:
    """``'2: 31, 3: 52, 13: 1'``: how many formulas have each number of distinct elements."""
    counts = Counter(len(set(re.findall(r"[A-Z][a-z]?", r.formula))) for r in records if r.formula)
    return ", ".join(f"{elements}: {count}" for elements, count in sorted(counts.items())) or "no formulas"


def _print_summary(result, composition: str | None) -> None:
    """Validity (the checks used, failures per check, per Z), space groups of a finished run."""
    from diffcrystal.charge_neutrality import smact_validity
    from diffcrystal.sample_writer import CHECK_COLUMNS, CHECKS

    used = result.validity_checks
    print(f"valid: {result.num_valid}/{len(result.records)} (checks: {'; '.join(CHECKS[c] for c in used)})")
    failures = {c: sum(not getattr(r, CHECK_COLUMNS[c]) for r in result.records) for c in used}
    print("  failed: " + ", ".join(f"{check} {count}" for check, count in failures.items()))
    for z, (valid, count, atoms) in result.valid_by_formula_units().items():
        print(f"  Z={z} ({atoms} atoms per cell): {valid}/{count} valid")
    if composition is None:
        print(f"  elements per formula (no check limits it; SMACT passes many-element formulas): "
              f"{_element_counts(result.records)}")
    if "charge" not in used and composition is not None:
        neutral = smact_validity(to_atomic_numbers(parse_composition(composition)))
        print(f"  {composition} {'is' if neutral else 'is not'} charge neutral with SMACT's oxidation states "
              "(column charge_neutral; no validity check here: the composition was given)")
    if result.num_cif_problems:
        print(f"  {counted(result.num_cif_problems, 'CIF')} did not read back and were not kept (column cif_problem)")
    requested = [r for r in result.records if r.requested_spacegroup]
    if requested:
        from diffcrystal.spacegroup import space_group_symbol

        for number in dict.fromkeys(r.requested_spacegroup for r in requested):
            group = [r for r in requested if r.requested_spacegroup == number]
            found = sum(r.spacegroup_number_tight == number for r in group)
            broken = sum(r.spacegroup_number_tight == number and r.symmetry_break_A > 0 for r in group)
            print(f"requested space group {space_group_symbol(number)} ({number}): spglib finds it at 0.01 Å in "
                  f"{found}/{len(group)} ({broken} after breaking extra symmetry, column symmetry_break_A; "
                  "Wyckoff assignment per sample in column wyckoff)")
    print("space groups (spglib, symprec 0.1 Å):")
    for group, count in result.space_group_counts().most_common(10):
        print(f"  {group:<22} {count}")


def _print_analogues(out_dir: Path) -> None:
    """The analogues a run sampled on, from its ``run.json``."""
    import json

    from diffcrystal.run_record import RUN_RECORD_NAME

    record = json.loads((out_dir / RUN_RECORD_NAME).read_text())
    print(f"analogues (nearest first, from {record['analogue_table']}):")
    for entry in record["analogues"][:10]:
        print(f"  {entry['template']:<12} {entry['formula']:<14} Mendeleev distance {entry['mendeleev_distance']:<6g} "
              f"-> {entry['wyckoff']} (space group {entry['spacegroup']})")
    if len(record["analogues"]) > 10:
        print(f"  ... {len(record['analogues']) - 10} more in run.json")


def _analogue_table(option: str | None, checkpoint: Path) -> Path | None:
    """The table ``--analogues`` names: its file, or with no value the checkpoint's bundled one."""
    from diffcrystal.checkpoint import bundled_analogue_table

    if option is None:
        return None
    if option != "bundled":
        if not Path(option).is_file():
            raise InputError(f"--analogues: no such table file {option}")
        return Path(option)
    table = bundled_analogue_table(checkpoint)
    if table is None:
        raise InputError(f"{checkpoint.name} ships no analogue table: pass --analogues TABLE "
                         "(build one with scripts/build_analogue_table.py)")
    return table


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(format="diffcrystal: warning: %(message)s", level=logging.WARNING)
    if args.composition is not None and not args.composition.strip():
        raise InputError("--composition is empty: give a formula such as YBa2Cu3O7, "
                         "or leave the option out to sample de novo")
    composition = parse_composition(args.composition) if args.composition is not None else None
    at_least("--n", args.n, 1)
    at_least("--batch-size", args.batch_size, 1)
    at_least("--noise-scale", args.noise_scale, 0)
    for z in args.formula_units or []:
        at_least("--formula-units", z, 1)
    if args.spacegroup is not None:
        from diffcrystal.spacegroup import check_spacegroup

        check_spacegroup(args.spacegroup)
        if composition is None:
            raise InputError("--spacegroup needs --composition (crystal-structure prediction)")
    elif args.wyckoff != "auto":
        raise InputError("--wyckoff needs --spacegroup")
    if args.analogues is not None and (composition is None or args.spacegroup is not None):
        raise InputError("--analogues needs --composition and no --spacegroup")
    if args.max_analogue_distance is not None and (args.analogues is None or not args.max_analogue_distance >= 0):
        raise InputError(f"--max-analogue-distance needs --analogues and a distance >= 0, "
                         f"got {args.max_analogue_distance}")
    mode = "csp" if composition is not None else "denovo"
    from diffcrystal.api import load_generator

    generator = load_generator(args.checkpoint, mode=mode, device=args.device)
    analogue_table = _analogue_table(args.analogues, generator.checkpoint)
    overrides = {"corrector_steps": args.corrector_steps, "corrector_min_t": args.corrector_min_t}
    generator.generator.set_sampling(**{key: value for key, value in overrides.items() if value is not None})
    if args.noise_scale is not None:  # within the checkpoint's own timestep window, if it has one
        generator.generator.set_coord_noise_scale(
            args.noise_scale, generator.generator.experiment.diffusion.coord_noise_scale_max_t)
    steps = generator.default_steps if args.steps is None else args.steps
    name = "".join(ch for ch in args.composition if ch.isalnum()) if composition is not None else "denovo"
    default = Path("samples") / name
    out_dir = args.out or _fresh_folder(default, args.resume)
    if out_dir != default and args.out is None and not args.resume:
        logging.warning("%s holds an earlier run; this run goes to %s", default, out_dir)
    started = time.perf_counter()
    result = generator.sample_to_folder(
        out_dir,
        args.composition,
        args.n,
        formula_units=args.formula_units,
        spacegroup=args.spacegroup,
        wyckoff=args.wyckoff,
        analogue_table=analogue_table,
        max_analogue_distance=(DEFAULT_MAX_ANALOGUE_DISTANCE if args.max_analogue_distance is None
                               else args.max_analogue_distance),
        steps=steps,
        batch_size=args.batch_size,
        seed=args.seed,
        resume=args.resume,
        progress=not args.quiet,
    )
    elapsed = time.perf_counter() - started
    sampling = generator.generator.experiment.sampling
    noise_scale = generator.generator.coord_noise_scale
    total = len(result.records)
    made = f"in {elapsed:.1f} s"
    if result.num_kept:
        made = f": {result.num_kept} kept from the earlier run, {total - result.num_kept} sampled {made}"
    print(f"\n{counted(total, 'structure')}{'' if result.num_kept else ' '}{made} "
          f"({counted(steps, 'step')} + {counted(sampling.corrector_steps, 'corrector step')} each"
          f"{f' above t = {sampling.corrector_min_t}' if sampling.corrector_min_t else ''}, "
          f"{'' if noise_scale == 1 else f'coordinate noise × {noise_scale:g}, '}"
          f"{generator.mode} checkpoint {generator.checkpoint})")
    if analogue_table is not None:
        _print_analogues(result.out_dir)
    _print_summary(result, args.composition)
    print(f"files: {result.out_dir}/summary.csv, {result.out_dir}/cif/, {result.out_dir}/samples.extxyz, "
          f"{result.out_dir}/overview.png")
    folder = shlex.quote(str(result.out_dir))
    print(f"next: diffcrystal relax {folder}  (or: diffcrystal rank {folder})")
    return 0
