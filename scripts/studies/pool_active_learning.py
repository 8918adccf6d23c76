"""Does ensemble disagreement choose better training frames than chance? A replay on labelled trajectories.

The teacher's own relaxation trajectories (``diffcrystal relax --trajectory``) are a pool whose
labels are already known, so the choice of frames can be compared without new teacher calls and
without the loop's other differences (its pool of student snapshots, its rattled held-out set):

- Round 0: ``--initial`` frames drawn at random from the pool (the training candidates' states,
  every ``--every``-th and the last); an ensemble of ``--ensemble`` students (seeds 1, 2, ...) is
  fitted. Both arms start from it.
- Round r >= 1, **active** arm: the ensemble ranks the frames it has not used by
  :func:`~diffcrystal.potential.active_learning.force_disagreement` and the highest (at most
  ``--max-per-candidate`` from one candidate in a round) join its training set: all
  ``--per-round`` frames, or with ``--active-share s`` that share of them and the rest drawn at
  random; the ensemble is refitted from scratch.
- Round r >= 1, **random** arm: as many frames drawn at random from the frames it has not used;
  one student (seed 1, as the first member) is refitted.
- After each round the active arm's first member and the random arm's student are scored against
  the teacher on the held-out candidates' trajectories (every ``--every``-th state), the active
  arm with the rank correlation between its ensemble's disagreement and the true max-atom force
  error (:func:`~diffcrystal.potential.active_learning.evaluate`).

    OMP_NUM_THREADS=1 python scripts/studies/pool_active_learning.py runs/ybco_traj/relaxed/trajectories \\
        --exclude-from runs/ybco_al/al/learn.json --out runs/ybco_traj/pool_al

Writes ``record.json`` after every round (settings, candidates, and per round and arm: frames,
energy/force MAE, the 90th percentile of the max-atom force error, seconds) and each fitted
student in ``round-<r>/<arm>[-<member>]/``; ``--rescore`` scores a finished run's students again.
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
from diffcrystal.potential.active_learning import NequipFitter, ensemble_disagreements, evaluate, most_disagreeing
from diffcrystal.potential.fit import FitSettings
from diffcrystal.potential.trajectory import read_states, trajectory_frames


def most_disagreeing_capped(disagreements, candidates, count: int, per_candidate: int | None) -> list[int]:
    """Indices of the ``count`` highest ``disagreements`` (highest first), passing over a frame
    once its candidate (``candidates[i]``) already gave ``per_candidate`` frames."""
    picked, taken = [], {}
    for index in most_disagreeing(disagreements, len(disagreements)):
        if len(picked) == count:
            break
        if per_candidate is not None and taken.get(candidates[index], 0) >= per_candidate:
            continue
        taken[candidates[index]] = taken.get(candidates[index], 0) + 1
        picked.append(index)
    return picked


def round_zero_random(active: dict) -> dict:
    """The random arm's scores in round 0, where it is the active arm's first member (no ensemble
    of its own, so no uncertainty figures)."""
    return {key: value for key, value in active.items() if key != "uncertainty"}


def replay(pool: list, held_out: list, fitter, out: Path, initial: int, per_round: int, rounds: int,
           ensemble: int, per_candidate: int | None, seed: int, active_share: float = 1.0, log=print) -> dict:
    """Run both arms (module docstring) on the labelled ``pool`` with students from ``fitter``,
    scoring on ``held_out``; writes ``out/record.json`` after every round and returns it.
    ``active_share``: the share of each round's frames the active arm chooses by disagreement;
    it draws the rest at random (in the random arm's order, from the frames it has not used)."""
    if not 0 < active_share <= 1:
        raise InputError(f"the active share must be in (0, 1], got {active_share}")
    if initial + rounds * per_round > len(pool):
        raise InputError(f"{initial} initial + {rounds} x {per_round} frames need a pool of that many; "
                         f"it has {len(pool)}")
    rng = np.random.default_rng(seed)
    order = [int(i) for i in rng.permutation(len(pool))]
    used = {"active": set(order[:initial]), "random": set(order[:initial])}
    record = {"pool": len(pool), "held_out": len(held_out), "rounds": []}
    members = None
    for round_index in range(rounds + 1):
        start = time.perf_counter()
        entry = {"round": round_index}
        if round_index > 0:
            unused = sorted(set(range(len(pool))) - used["active"])
            disagreements = ensemble_disagreements(members, [pool[i] for i in unused])
            picked = most_disagreeing_capped(disagreements, [pool[i].info["candidate"] for i in unused],
                                             round(active_share * per_round), per_candidate)
            entry["selected_mean_disagreement_meV_A"] = round(1e3 * float(np.mean([disagreements[i] for i in picked])), 1)
            entry["unused_mean_disagreement_meV_A"] = round(1e3 * float(np.mean(disagreements)), 1)
            used["active"] |= {unused[i] for i in picked}
            drawn = [i for i in order if i not in used["active"]][:per_round - len(picked)]
            used["active"] |= set(drawn)
            unused_random = [i for i in order if i not in used["random"]]
            used["random"] |= set(unused_random[:len(picked) + len(drawn)])
        folder = out / f"round-{round_index}"
        train = [pool[i] for i in sorted(used["active"])]
        members = [fitter.fit(train, folder / f"active-{m}", seed + 1 + m) for m in range(ensemble)]
        entry["active"] = {"frames": len(train), **evaluate(members[0], held_out, ensemble_disagreements(members, held_out))}
        if round_index > 0:
            random_train = [pool[i] for i in sorted(used["random"])]
            random_student = fitter.fit(random_train, folder / "random", seed + 1)
            entry["random"] = {"frames": len(random_train), **evaluate(random_student, held_out)}
        else:  # the arms part after round 0
            entry["random"] = round_zero_random(entry["active"])
        entry["seconds"] = round(time.perf_counter() - start, 1)
        record["rounds"].append(entry)
        atomic_write_text(out / "record.json", json.dumps(record, indent=1) + "\n")
        log(f"round {round_index}: {entry['active']['frames']} frames, force MAE active "
            f"{entry['active']['force_mae_meV_A']} vs random {entry['random']['force_mae_meV_A']} meV/Å "
            f"({entry['seconds']:.0f} s)")
    return record


def rescore(record: dict, held_out: list, fitter, out: Path, ensemble: int) -> dict:
    """Score the students a finished :func:`replay` left in ``out`` again (after a change of
    :func:`~diffcrystal.potential.active_learning.evaluate`), without refitting them."""
    for entry in record["rounds"]:
        folder = out / f"round-{entry['round']}"
        members = [fitter.load(folder / f"active-{m}") for m in range(ensemble)]
        entry["active"] = {"frames": entry["active"]["frames"],
                           **evaluate(members[0], held_out, ensemble_disagreements(members, held_out))}
        if entry["round"] == 0:
            entry["random"] = round_zero_random(entry["active"])
        else:
            entry["random"] = {"frames": entry["random"]["frames"], **evaluate(fitter.load(folder / "random"), held_out)}
    atomic_write_text(out / "record.json", json.dumps(record, indent=1) + "\n")
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trajectories", type=Path, help="folder of <id>.traj from diffcrystal relax --trajectory")
    parser.add_argument("--exclude-from", type=Path, required=True,
                        help="a potential learn record (learn.json): its held-out candidates are scored on, "
                             "never trained on")
    parser.add_argument("--every", type=int, default=4, help="take every N-th state of each trajectory (default: 4)")
    parser.add_argument("--initial", type=int, default=150, help="random frames of round 0 (default: 150)")
    parser.add_argument("--per-round", type=int, default=150, help="frames added per round (default: 150)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds after round 0 (default: 2)")
    parser.add_argument("--active-share", type=float, default=1.0,
                        help="share of each round's frames chosen by disagreement, the rest at random (default: 1)")
    parser.add_argument("--ensemble", type=int, default=3, help="students in the active arm's ensemble (default: 3)")
    parser.add_argument("--max-per-candidate", type=int, default=10,
                        help="frames one candidate may give the active arm per round (default: 10)")
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rescore", action="store_true",
                        help="score the students of a finished run in --out again, without refitting")
    args = parser.parse_args(argv)
    try:
        if args.ensemble < 2:
            raise InputError(f"an ensemble needs at least 2 members to disagree, got {args.ensemble}")
        exclude = sorted(json.loads(args.exclude_from.read_text())["held_out_candidates"])
        pool, used = trajectory_frames(args.trajectories, set(exclude), args.every)
        held_out = [state for name in exclude for state in read_states(args.trajectories, name, args.every)]
        species = {symbol for frame in pool + held_out for symbol in frame.get_chemical_symbols()}
        settings = FitSettings(epochs=args.epochs, num_features=args.features, num_layers=args.layers)
        fitter = NequipFitter(settings, sorted(species))
        if args.rescore:
            record = json.loads((args.out / "record.json").read_text())
            rescore(record, held_out, fitter, args.out, record["settings"]["ensemble"])
            return 0
        args.out.mkdir(parents=True, exist_ok=True)
        record = replay(pool, held_out, fitter, args.out, args.initial,
                        args.per_round, args.rounds, args.ensemble, args.max_per_candidate, args.seed,
                        args.active_share, log=lambda line: print(line, file=sys.stderr))
        record.update({"trajectories": str(args.trajectories), "candidates": used, "excluded": exclude,
                       "settings": {key: getattr(args, key) for key in (
                           "every", "initial", "per_round", "rounds", "active_share", "ensemble", "max_per_candidate",
                           "features", "layers", "epochs", "seed")}})
        atomic_write_text(args.out / "record.json", json.dumps(record, indent=1) + "\n")
    except (InputError, OSError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
