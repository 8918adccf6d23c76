"""A student distilled from the teacher's own relaxation trajectories of sampled candidates.

The active-learning loop (``potential learn``) labels a few hundred frames; here the teacher
relaxes whole candidates once (``diffcrystal relax --trajectory``), every state it evaluated is a
labelled frame, and a student is fitted on a stride of them. The candidates ``--exclude-from``
names (the loop's held-out candidates) are left out of training. The student is scored against the
teacher on those candidates' own trajectories (what pre-relaxation meets) and on the loop's
held-out frames (``--held-out``: rattled copies and snapshots), beside any other students given
with ``--compare``:

    OMP_NUM_THREADS=1 diffcrystal relax runs/ybco_al/samples --workers 1 --trajectory --out runs/ybco_traj/relaxed
    OMP_NUM_THREADS=1 python scripts/studies/trajectory_student.py runs/ybco_traj/relaxed/trajectories \\
        --exclude-from runs/ybco_al/al/learn.json --held-out runs/ybco_al/al/held_out.extxyz \\
        --every 4 --features 32 --layers 3 --epochs 15 --compare runs/ybco_al/al/model.nequip.pt2 \\
        --out runs/ybco_traj/student

Without a loop to take the held-out candidates from, ``--hold-out-targets SHARE`` holds out that
share of the targets instead: trajectories are named ``<target>__<candidate>``
(``scripts/studies/student_candidates.py``), and all candidates of a held-out target are left
out, so the student is scored on compositions it never saw (the universal student,
``checkpoints/README.md``).

Writes ``frames.extxyz`` (the training frames), the fitted student (``potential fit``'s files)
and ``report.json`` (frames, seconds, and each student's errors on the held-out sets).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from diffcrystal.atomic_write import atomic_write_text
from diffcrystal.errors import InputError
from diffcrystal.potential.fit import FitSettings, fit_potential, force_mae, write_frames
from diffcrystal.potential.trajectory import TRAJECTORY_SUFFIX, read_states, trajectory_frames

TARGET_SEPARATOR = "__"
"""Separates the target from the candidate in a trajectory's name (``<target>__<candidate>``)."""


def held_out_targets(trajectories: Path, share: float, seed: int) -> list[str]:
    """The trajectories of a random ``share`` of the targets (at least one, never all), sorted:
    a trajectory's target is its name up to :data:`TARGET_SEPARATOR`."""
    if not 0 < share < 1:
        raise InputError(f"--hold-out-targets must be between 0 and 1, got {share}")
    names = sorted(path.stem for path in trajectories.glob(f"*{TRAJECTORY_SUFFIX}"))
    targets = sorted({name.split(TARGET_SEPARATOR)[0] for name in names})
    if len(targets) < 2:
        raise InputError(f"{trajectories}: {len(targets)} target(s) in the trajectory names; holding some out needs 2")
    held = min(len(targets) - 1, max(1, round(share * len(targets))))
    chosen = {targets[i] for i in np.random.default_rng(seed).permutation(len(targets))[:held]}
    return [name for name in names if name.split(TARGET_SEPARATOR)[0] in chosen]


def held_out_sets(trajectories: Path, held_out_ids: list[str], held_out_frames: Path | None, every: int) -> dict:
    """The frames a student is scored on: every ``every``-th state of the held-out candidates'
    teacher trajectories (how pre-relaxation meets them) and, when given, the loop's own
    held-out frames (rattled copies and relaxation snapshots)."""
    from ase.io import read

    sets = {"held_out_trajectories": [state for name in held_out_ids for state in read_states(trajectories, name, every)]}
    if held_out_frames is not None:
        sets["loop_held_out_frames"] = read(str(held_out_frames), index=":")
    return sets


def score(model: str | Path, sets: dict, elements: set[str] | None = None) -> dict:
    """Force (meV/Å) and energy (meV/atom) MAE of ``model`` against the teacher on each set.
    ``elements``: the model's element types; frames with others are left out of the MAE (a
    student refuses them) and counted as ``frames_unseen_elements``."""
    from diffcrystal.potential.calculators import load_calculator

    calculator = load_calculator(model)
    out = {}
    for name, frames in sets.items():
        known = [f for f in frames if elements is None or set(f.get_chemical_symbols()) <= elements]
        entry = {"frames": len(known), "frames_unseen_elements": len(frames) - len(known)}
        if known:
            errors = force_mae(calculator, known)
            entry.update(force_mae_meV_A=round(1e3 * errors["forces_mae_eV_A"], 1),
                         energy_mae_meV_atom=round(1e3 * errors["energy_mae_eV_atom"], 1))
        out[name] = entry
    return out


def fit_on(frames: list, used: list[str], args: argparse.Namespace) -> dict:
    """Fit the student on ``frames`` into ``args.out``: ``{'model', 'elements', 'seconds'}``."""
    args.out.mkdir(parents=True, exist_ok=True)
    frames_path = write_frames(frames, args.out / "frames.extxyz")
    print(f"{len(frames)} frames from {len(used)} trajectories (every {args.every})", file=sys.stderr)
    settings = FitSettings(epochs=args.epochs, num_features=args.features, num_layers=args.layers)
    started = time.perf_counter()
    result = fit_potential(frames_path, args.out, settings)
    return {"model": str(result.model_path), "elements": fitted(args)["elements"],
            "seconds": round(time.perf_counter() - started, 1)}


def fitted(args: argparse.Namespace) -> dict:
    """The student already fitted in ``args.out``, from its ``fit.json``: ``{'model', 'elements',
    'seconds'}`` (training plus compilation)."""
    path = args.out / "fit.json"
    if not path.is_file():
        raise InputError(f"--rescore: no fitted student in {args.out} (no fit.json)")
    record = json.loads(path.read_text())
    return {"model": record["model"], "elements": sorted(record["type_names"]),
            "seconds": round(record["train_seconds"] + record["compile_seconds"], 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trajectories", type=Path, help="folder of <id>.traj from diffcrystal relax --trajectory")
    held = parser.add_mutually_exclusive_group(required=True)
    held.add_argument("--exclude-from", type=Path,
                      help="a potential learn record (learn.json): its held-out candidates are left out of "
                           "training and scored on")
    held.add_argument("--hold-out-targets", type=float, metavar="SHARE",
                      help="leave out this share of the targets (trajectories <target>__<candidate>) and score on them")
    parser.add_argument("--seed", type=int, default=0, help="draw of --hold-out-targets (default: 0)")
    parser.add_argument("--held-out", type=Path, help="the loop's held-out frames (extxyz), scored on as well")
    parser.add_argument("--every", type=int, default=3, help="take every N-th state of each trajectory (default: 3)")
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--compare", nargs="*", default=[], metavar="MODEL",
                        help="other students (e.g. the loop's model.nequip.pt2) scored on the same frames")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rescore", action="store_true",
                        help="do not fit: score the student already fitted in --out (its fit.json) again")
    args = parser.parse_args(argv)
    try:
        exclude = (json.loads(args.exclude_from.read_text())["held_out_candidates"] if args.exclude_from
                   else held_out_targets(args.trajectories, args.hold_out_targets, args.seed))
        frames, used = trajectory_frames(args.trajectories, set(exclude), args.every)
        fit = fitted(args) if args.rescore else fit_on(frames, used, args)
        report = {"trajectories": str(args.trajectories), "candidates": used, "excluded": sorted(exclude),
                  "hold_out_targets": args.hold_out_targets, "seed": args.seed,
                  "every": args.every, "frames": len(frames), "features": args.features, "layers": args.layers,
                  "epochs": args.epochs, "fit_seconds": fit["seconds"], "model": fit["model"],
                  "elements": fit["elements"]}
        sets = held_out_sets(args.trajectories, sorted(exclude), args.held_out, args.every)
        report["scores"] = {fit["model"]: score(fit["model"], sets, set(fit["elements"])),
                            **{str(model): score(model, sets) for model in args.compare}}
        atomic_write_text(args.out / "report.json", json.dumps(report, indent=1) + "\n")
        print(json.dumps(report["scores"], indent=1))
    except (InputError, OSError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
