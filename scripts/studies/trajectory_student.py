"""A student distilled from the teacher's own relaxation trajectories of sampled candidates.

The active-learning loop (``potential learn``) labels a few hundred frames; here the teacher
relaxes whole candidates once (``diffcrystal relax --trajectory``), every state it evaluated is a
labelled frame, and a student is fitted on a stride of them. Candidates named in ``--exclude``
(the loop's held-out candidates) are left out, so the student can be scored on the loop's own
held-out frames (``--held-out``) beside the loop's students:

    OMP_NUM_THREADS=1 diffcrystal relax runs/ybco_al/samples --workers 1 --trajectory --out runs/ybco_traj/relaxed
    OMP_NUM_THREADS=1 python scripts/studies/trajectory_student.py runs/ybco_traj/relaxed/trajectories \\
        --exclude-from runs/ybco_al/al/learn.json --held-out runs/ybco_al/al/held_out.extxyz \\
        --every 3 --features 32 --layers 3 --epochs 20 --out runs/ybco_traj/student

Writes ``frames.extxyz`` (the training frames), the fitted student (``potential fit``'s files)
and ``report.json`` (frames, seconds, and the student's errors on the held-out frames).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from diffcrystal.atomic_write import atomic_write_text
from diffcrystal.errors import InputError
from diffcrystal.potential.fit import FitSettings, fit_potential, force_mae, write_frames
from diffcrystal.potential.trajectory import TRAJECTORY_SUFFIX


def trajectory_frames(folder: Path, exclude: set[str], every: int) -> tuple[list, list[str]]:
    """Every ``every``-th state of each trajectory in ``folder`` and its last state, for the
    candidates not in ``exclude``; returns (frames, candidate ids used)."""
    from ase.io import read

    frames, used = [], []
    for path in sorted(folder.glob(f"*{TRAJECTORY_SUFFIX}")):
        if path.stem in exclude:
            continue
        states = read(str(path), index=":")
        picked = states[::every] + ([] if (len(states) - 1) % every == 0 else [states[-1]])
        for state in picked:
            state.info["candidate"] = path.stem
        frames.extend(picked)
        used.append(path.stem)
    if not frames:
        raise InputError(f"{folder}: no trajectories left after excluding {len(exclude)} candidates")
    return frames, used


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trajectories", type=Path, help="folder of <id>.traj from diffcrystal relax --trajectory")
    parser.add_argument("--exclude-from", type=Path,
                        help="a potential learn record (learn.json): leave out its held-out candidates")
    parser.add_argument("--held-out", type=Path, help="labelled frames (extxyz) to score the student on")
    parser.add_argument("--every", type=int, default=3, help="take every N-th state of each trajectory (default: 3)")
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        from ase.io import read

        exclude = set()
        if args.exclude_from is not None:
            exclude = set(json.loads(args.exclude_from.read_text())["held_out_candidates"])
        frames, used = trajectory_frames(args.trajectories, exclude, args.every)
        args.out.mkdir(parents=True, exist_ok=True)
        frames_path = write_frames(frames, args.out / "frames.extxyz")
        print(f"{len(frames)} frames from {len(used)} trajectories (every {args.every})", file=sys.stderr)
        settings = FitSettings(epochs=args.epochs, num_features=args.features, num_layers=args.layers)
        started = time.perf_counter()
        result = fit_potential(frames_path, args.out, settings)
        report = {"trajectories": str(args.trajectories), "candidates": used, "excluded": sorted(exclude),
                  "every": args.every, "frames": len(frames), "features": args.features, "layers": args.layers,
                  "epochs": args.epochs, "fit_seconds": round(time.perf_counter() - started, 1),
                  "model": str(result.model_path)}
        if args.held_out is not None:
            from diffcrystal.potential.calculators import load_calculator

            held_out = read(str(args.held_out), index=":")
            errors = force_mae(load_calculator(result.model_path), held_out)
            report["held_out"] = {"frames": len(held_out), "force_mae_meV_A": round(1e3 * errors["forces_mae_eV_A"], 2),
                                  "energy_mae_meV_atom": round(1e3 * errors["energy_mae_eV_atom"], 2)}
        atomic_write_text(args.out / "report.json", json.dumps(report, indent=1) + "\n")
        print(json.dumps(report.get("held_out", {})))
    except (InputError, OSError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
