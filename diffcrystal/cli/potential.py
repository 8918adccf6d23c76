"""``diffcrystal potential {frames,label,fit,learn,bundle}``: build an own NequIP/Allegro student.

- ``frames INPUT... --out FRAMES.extxyz``: rattled + strained copies of candidates (and, with
  ``--snapshots N --teacher NAME``, snapshots along their relaxation), unlabelled.
- ``label --teacher sevennet-0 --frames IN --out OUT.extxyz``: energies, forces, stresses.
- ``fit --frames FILE.extxyz --arch nequip|allegro [--epochs N] --out DIR``: train with
  ``nequip-train`` (subprocess) and compile to ``DIR/model.nequip.pt2``; then use
  ``--potential DIR`` in ``relax``/``rank``.
- ``learn CANDIDATES... --out DIR``: active learning (ensemble disagreement picks the frames the
  teacher labels, beside a random-frames control; per-round record in ``DIR/learn.json``;
  ``--resume`` goes on after the last recorded round), the final student compiled to
  ``DIR/model.nequip.pt2``.
- ``bundle FIT_DIR --out FILE.safetensors``: the fitted student as one safe, portable file
  (:mod:`~diffcrystal.potential.student_bundle`; weights and design, no pickle, no compiled
  code), with ``FIT_DIR``'s ``fit.json`` and ``report.json`` as its card; use it anywhere a
  potential is named.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from diffcrystal.cli.checks import at_least
from diffcrystal.errors import InputError
from diffcrystal.plural import counted
from diffcrystal.potential.calculators import DEFAULT_POTENTIAL
from diffcrystal.potential.active_learning import LEARN_EPOCHS, LearnSettings
from diffcrystal.potential.fit import ARCHITECTURES, MAX_STRAIN, RATTLE_STD_A, FitSettings


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    frames = actions.add_parser("frames", help="rattled/strained copies of candidates to label")
    frames.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="sample folder, CIF folder, .cif or extxyz file(s)")
    frames.add_argument("--out", type=Path, required=True, help="output extxyz file")
    frames.add_argument("--copies", type=int, default=8, help="copies per structure (default: %(default)s)")
    frames.add_argument("--rattle", type=float, default=RATTLE_STD_A,
                        help="displacement std in Å (default: %(default)s)")
    frames.add_argument("--strain", type=float, default=MAX_STRAIN,
                        help="largest strain component (default: %(default)s)")
    frames.add_argument("--snapshots", type=int, default=0,
                        help="relaxation snapshots per structure (needs --teacher)")
    frames.add_argument("--teacher", default=DEFAULT_POTENTIAL, help="potential for snapshots")
    frames.add_argument("--seed", type=int, default=0,
                        help="random seed of the displacements and strains (default: %(default)s)")

    label = actions.add_parser("label", help="label frames with a teacher potential")
    label.add_argument("--teacher", default=DEFAULT_POTENTIAL, help="teacher potential (default: %(default)s)")
    label.add_argument("--frames", type=Path, required=True, help="input frames (extxyz)")
    label.add_argument("--out", type=Path, required=True, help="output labelled extxyz")

    fit = actions.add_parser("fit", help="train and compile a NequIP/Allegro student")
    fit.add_argument("--frames", type=Path, required=True, help="labelled frames (extxyz)")
    fit.add_argument("--arch", choices=ARCHITECTURES, default="nequip",
                     help="student architecture (default: %(default)s)")
    fit.add_argument("--epochs", type=int, default=FitSettings.epochs,
                     help="training epochs (default: %(default)s)")
    fit.add_argument("--r-max", type=float, default=FitSettings.r_max, help="cutoff in Å (default: %(default)s)")
    fit.add_argument("--features", type=int, default=FitSettings.num_features,
                     help="channels (NequIP) or scalar features (Allegro) (default: %(default)s)")
    fit.add_argument("--layers", type=int, default=FitSettings.num_layers,
                     help="interaction layers (default: %(default)s)")
    fit.add_argument("--out", type=Path, required=True, help="output folder")

    defaults = LearnSettings()
    learn = actions.add_parser("learn", help="active learning: an ensemble picks the frames a teacher labels")
    learn.add_argument("inputs", nargs="+", metavar="CANDIDATES",
                       help="sample folder, CIF folder, .cif or extxyz file(s)")
    learn.add_argument("--out", type=Path, required=True, help="new (or empty) output folder")
    learn.add_argument("--teacher", default=DEFAULT_POTENTIAL, help="teacher potential (default: %(default)s)")
    learn.add_argument("--rounds", type=int, default=defaults.rounds,
                       help="rounds after the initial fit (default: %(default)s)")
    learn.add_argument("--ensemble", type=int, default=defaults.ensemble,
                       help="students in the ensemble, at least 2 (default: %(default)s)")
    learn.add_argument("--initial", type=int, default=defaults.initial,
                       help="random frames of round 0 (default: %(default)s)")
    learn.add_argument("--per-round", type=int, default=defaults.per_round,
                       help="frames the teacher labels per round (default: %(default)s)")
    learn.add_argument("--held-out-share", type=float, default=defaults.held_out_share,
                       help="share of candidates held out for evaluation (default: %(default)s)")
    learn.add_argument("--max-per-candidate", type=int, default=None,
                       help="at most this many frames of one candidate selected per round (default: no limit)")
    learn.add_argument("--seed", type=int, default=defaults.seed, help="random seed (default: %(default)s)")
    learn.add_argument("--no-control", action="store_true",
                       help="skip the control student trained on randomly chosen frames")
    learn.add_argument("--resume", action="store_true",
                       help="go on after the last round recorded in --out (same settings; --rounds may grow)")
    learn.add_argument("--no-compile", action="store_true",
                       help="do not compile the final student into OUT/model.nequip.pt2 (saves ~10-17 min)")
    learn.add_argument("--arch", choices=ARCHITECTURES, default="nequip",
                       help="student architecture (default: %(default)s)")
    learn.add_argument("--epochs", type=int, default=LEARN_EPOCHS,
                       help="training epochs of every fit (default: %(default)s)")
    learn.add_argument("--features", type=int, default=FitSettings.num_features,
                       help="channels (NequIP) or scalar features (Allegro) (default: %(default)s)")


    bundle = actions.add_parser("bundle", help="write a fitted student as one safe .safetensors file")
    bundle.add_argument("fit_dir", type=Path, metavar="FIT_DIR",
                        help="a potential fit output folder, or a learn student's folder "
                             "(OUT/round-R/member-0); either holds train/best.ckpt")
    bundle.add_argument("--out", type=Path, required=True, help="output file (*.safetensors); refused when it exists")


def check_arguments(args: argparse.Namespace) -> None:
    """Range checks of the numbers given (one-line errors, before any potential loads)."""
    if args.action == "frames":
        at_least("--copies", args.copies, 1)
        at_least("--snapshots", args.snapshots, 0)
        at_least("--rattle", args.rattle, 0)
        at_least("--strain", args.strain, 0)
    elif args.action == "fit":
        at_least("--epochs", args.epochs, 1)
        at_least("--features", args.features, 1)
        at_least("--layers", args.layers, 1)
    elif args.action == "learn":
        at_least("--ensemble", args.ensemble, 2)
        at_least("--rounds", args.rounds, 0)
        at_least("--initial", args.initial, 3)
        at_least("--per-round", args.per_round, 1)
        at_least("--max-per-candidate", args.max_per_candidate, 1)
        at_least("--epochs", args.epochs, 1)
        at_least("--features", args.features, 1)
        if not 0 < args.held_out_share < 1:
            raise InputError(f"--held-out-share must be between 0 and 1, got {args.held_out_share}")


def run(args: argparse.Namespace) -> int:
    check_arguments(args)
    from diffcrystal.potential import fit as fitting
    from diffcrystal.potential.io import read_candidates

    if args.action == "frames":
        calculator = None
        if args.snapshots > 0:
            from diffcrystal.potential.calculators import load_calculator

            calculator = load_calculator(args.teacher)
        frames = fitting.make_frames(read_candidates(args.inputs), copies=args.copies,
                                     rattle_std_A=args.rattle, max_strain=args.strain,
                                     seed=args.seed, calculator=calculator, snapshots=args.snapshots)
        fitting.write_frames(frames, args.out)
        print(f"wrote {counted(len(frames), 'frame')} to {args.out}")
    elif args.action == "label":
        from ase.io import read

        if args.out.resolve() == args.frames.resolve():
            raise InputError(f"refusing to overwrite input {args.frames}; choose another --out")
        if not args.frames.is_file():
            raise InputError(f"{args.frames}: no such file")
        frames, skipped = fitting.label_frames(read(str(args.frames), index=":"), args.teacher)
        fitting.write_frames(frames, args.out)
        print(f"labelled {counted(len(frames), 'frame')} with {args.teacher} ({skipped} skipped); wrote {args.out}")
    elif args.action == "fit":
        settings = FitSettings(arch=args.arch, epochs=args.epochs, r_max=args.r_max,
                               num_features=args.features, num_layers=args.layers)
        result = fitting.fit_potential(args.frames, args.out, settings)
        print(f"fitted {args.arch} in {result.train_seconds:.0f} s (compile {result.compile_seconds:.0f} s); "
              f"model {result.model_path}")
    elif args.action == "learn":
        run_learn(args, read_candidates(args.inputs))
    elif args.action == "bundle":
        run_bundle(args.fit_dir, args.out)
    return 0


def run_bundle(fit_dir: Path, out: Path) -> None:
    """``potential bundle``: the fit folder's best checkpoint and its records as a student bundle."""
    import json

    from diffcrystal.potential.student_bundle import bundle_student, student_elements

    checkpoint = fit_dir / "train" / "best.ckpt"
    if not checkpoint.is_file():
        raise InputError(f"{fit_dir}: no train/best.ckpt (not a potential fit folder or a learn student's folder?)")
    if out.exists():
        raise InputError(f"{out} exists; choose another --out")
    card = {name: json.loads((fit_dir / f"{name}.json").read_text())
            for name in ("fit", "report") if (fit_dir / f"{name}.json").is_file()}
    bundle_student(checkpoint, out, card)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB; elements {' '.join(sorted(student_elements(out)))})")


def run_learn(args: argparse.Namespace, candidates: list) -> None:
    """``potential learn``: check the output folder, run the loop, compile the final student."""
    from diffcrystal.potential import active_learning
    from diffcrystal.potential.calculators import load_calculator, potential_label
    from diffcrystal.potential.fit import compile_student
    from diffcrystal.potential.io import check_output_folder

    if not candidates:
        raise InputError("no candidate structures in " + " ".join(map(str, args.inputs)))
    check_output_folder(args.out)
    if not args.resume and args.out.is_dir() and any(args.out.iterdir()):
        raise InputError(f"output folder {args.out} is not empty; choose a new --out (or --resume a stopped run)")
    settings = LearnSettings(rounds=args.rounds, ensemble=args.ensemble, initial=args.initial,
                             per_round=args.per_round, held_out_share=args.held_out_share,
                             seed=args.seed, control=not args.no_control,
                             max_per_candidate=args.max_per_candidate)
    species = {symbol for _, atoms in candidates for symbol in atoms.get_chemical_symbols()}
    fitter = active_learning.NequipFitter(
        FitSettings(arch=args.arch, epochs=args.epochs, num_features=args.features), species)
    teacher = potential_label(args.teacher)
    result = active_learning.learn(candidates, args.out, load_calculator(teacher), fitter, settings,
                                   teacher_name=teacher, resume=args.resume)
    print(f"wrote {args.out / active_learning.RECORD_NAME}")
    if not args.no_compile:
        model, seconds = compile_student(fitter.checkpoint(result.final_student), args.out)
        print(f"compiled the final student in {seconds:.0f} s: {model}")
