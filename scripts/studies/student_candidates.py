"""Unrelaxed ``predict`` candidates of MP-20 validation compositions, as CIFs for the teacher.

The universal student (``potential bundle-student``) learns SevenNet-0 on what ``predict`` asks a
potential to relax: substituted templates and diffusion samples over the MP-20 chemistry. This
script gathers those candidates for every N-th validation structure of the CSP checkpoint (the
structures it held out of training, never the test files), with the atom count given and the
target's own entry left out of the templates, and writes each one unrelaxed as
``<out>/<target>__<candidate>.cif`` with ``<out>/candidates.csv`` (file, target, composition,
source, analogue). The teacher then relaxes them with trajectories:

    OMP_NUM_THREADS=1 python scripts/studies/student_candidates.py --every 8 --out runs/mp20_student/candidates
    OMP_NUM_THREADS=1 diffcrystal relax runs/mp20_student/candidates --steps 200 --fmax 0.05 \\
        --trajectory --workers 1 --out runs/mp20_student/relaxed
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from diffcrystal.errors import InputError

DEFAULT_COUNTS = {"template": 2, "analogue_diffusion": 1, "free_diffusion": 1}
"""Candidates per source and target: fewer than ``predict``'s, spread over more compositions."""


def file_stem(target: str, candidate: str) -> str:
    """``<target>__<candidate>`` with characters that are unsafe in file names replaced."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in f"{target}__{candidate}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="mp20_csp", help="CSP checkpoint (default: %(default)s)")
    parser.add_argument("--every", type=int, default=8, help="take every N-th validation structure (default: 8)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many targets")
    for source, count in DEFAULT_COUNTS.items():
        parser.add_argument(f"--{source.replace('_', '-')}", type=int, default=count,
                            help=f"{source} candidates per target (default: {count})")
    parser.add_argument("--seed", type=int, default=0, help="sampler seed (default: 0)")
    parser.add_argument("--out", type=Path, required=True, help="new folder for the CIFs")
    args = parser.parse_args(argv)
    from tqdm.auto import tqdm

    from diffcrystal.data.composition import format_composition
    from diffcrystal.prediction import PredictSettings, gather_candidates, load_library
    from diffcrystal.ranked_evaluation import held_out_validation

    try:
        if args.every < 1:
            raise InputError(f"--every must be >= 1, got {args.every}")
        if args.out.exists() and any(args.out.iterdir()):
            raise InputError(f"{args.out} is not empty: use a new folder")
        checkpoint, generator, validation = held_out_validation(args.checkpoint)
        library = load_library(None, checkpoint)
        targets = validation[::args.every][:args.limit]
        settings = PredictSettings(counts={"template": args.template, "analogue_diffusion": args.analogue_diffusion,
                                           "free_diffusion": args.free_diffusion}, seed=args.seed)
        args.out.mkdir(parents=True, exist_ok=True)
        rows = []
        for target in tqdm(targets, desc="candidates", unit="target"):
            candidates, _, notes = gather_candidates(target.composition, generator, library.without({target.label}),
                                                     settings, num_atoms=target.num_atoms)
            for candidate in candidates:
                name = file_stem(target.label, candidate.label) + ".cif"
                candidate.crystal.to_structure().to(filename=str(args.out / name))
                rows.append({"file": name, "target": target.label, "composition": format_composition(target.composition),
                             "source": candidate.source, "analogue": candidate.analogue})
            for note in notes:
                print(f"{target.label}: {note}", file=sys.stderr)
        with (args.out / "candidates.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(f"{len(rows)} candidates of {len(targets)} validation compositions in {args.out}")
    except (InputError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
