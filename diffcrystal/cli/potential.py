"""``diffcrystal potential {frames,label,fit}``: build an own NequIP/Allegro student.

- ``frames INPUT... --out FRAMES.extxyz``: rattled + strained copies of candidates (and, with
  ``--snapshots N --teacher NAME``, snapshots along their relaxation), unlabelled.
- ``label --teacher sevennet-0 --frames IN --out OUT.extxyz``: energies, forces, stresses.
- ``fit --frames FILE.extxyz --arch nequip|allegro [--epochs N] --out DIR``: train with
  ``nequip-train`` (subprocess) and compile to ``DIR/model.nequip.pt2``; then use
  ``--potential DIR`` in ``relax``/``rank``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from diffcrystal.cli.checks import at_least
from diffcrystal.plural import counted
from diffcrystal.potential.calculators import DEFAULT_POTENTIAL
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


def run(args: argparse.Namespace) -> int:
    check_arguments(args)
    from diffcrystal.errors import InputError
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
    return 0
