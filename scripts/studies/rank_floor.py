"""The least teacher work that can rank a folder's top K: a floor under any pruning rule.

Read from a full relaxation kept by ``scripts/benchmark_rank.py --keep-outputs`` (its
``ranked.csv``: every candidate's teacher steps; ``costs.json``: CPU seconds and steps). An
oracle that knew the full relaxation's first K in advance would still relax each of them to
convergence (its recorded steps) and evaluate every other candidate at least ``--probe`` times
to rank it below them (1: one energy; the funnel's first stage: 10). With ``c`` the measured CPU
seconds per teacher step and W cores:

- teacher steps ``S = Σ_top-K steps + (N − K) · probe``;
- CPU seconds ``c · S``;
- wall seconds at least ``max(c · S / W, c · longest top-K relaxation)`` (one relaxation's
  steps run one after another).

Any rule that uses the teacher alone, the funnel included, costs at least this much:

    python scripts/studies/rank_floor.py runs/rank_settings_ybco100_kept/full --out benchmarks/rank_floor_ybco100.json
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from diffcrystal.atomic_write import atomic_write_text


def teacher_floor(steps_by_rank: list[int], cpu_seconds_per_step: float, top: int, probe: int, cores: int) -> dict:
    """The oracle's teacher steps, CPU and wall seconds for ranks ``steps_by_rank`` (best first)."""
    kept, others = steps_by_rank[:top], len(steps_by_rank) - min(top, len(steps_by_rank))
    steps = sum(kept) + others * probe
    cpu = cpu_seconds_per_step * steps
    return {"probe_steps": probe, "teacher_steps": steps, "top_steps": kept, "cpu_seconds": round(cpu, 1),
            "wall_seconds_at_least": round(max(cpu / cores, cpu_seconds_per_step * max(kept, default=0)), 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("full", type=Path, help="a full relaxation kept by benchmark_rank.py --keep-outputs")
    parser.add_argument("--top", type=int, default=5, help="crystals that must be relaxed to the end (default: 5)")
    parser.add_argument("--probe", type=int, nargs="+", default=[1, 10],
                        help="teacher steps spent on each other candidate (default: 1 and 10)")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--budget", type=float, default=60.0, help="wall seconds to compare with (default: 60)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    try:
        with open(args.full / "ranked.csv", newline="") as handle:
            steps = [int(row["steps"]) for row in csv.DictReader(handle)]
        costs = json.loads((args.full / "costs.json").read_text())
    except (OSError, KeyError, ValueError) as error:
        print(f"error: {args.full}: not a kept full relaxation ({error})", file=sys.stderr)
        return 1
    per_step = costs["cpu_seconds"] / costs["teacher_steps"]
    report = {"full": str(args.full), "candidates": len(steps), "top": args.top, "cores": args.cores,
              "cpu_seconds_per_teacher_step": round(per_step, 4), "full_teacher_steps": costs["teacher_steps"],
              "budget_seconds": args.budget, "budget_teacher_steps": int(args.budget * args.cores / per_step),
              "floors": [teacher_floor(steps, per_step, args.top, probe, args.cores) for probe in args.probe]}
    for floor in report["floors"]:
        print(f"probe {floor['probe_steps']}: {floor['teacher_steps']} teacher steps "
              f"({floor['teacher_steps'] / costs['teacher_steps']:.3f} of full), {floor['cpu_seconds']} CPU s, "
              f"at least {floor['wall_seconds_at_least']} s on {args.cores} cores "
              f"(budget {args.budget:g} s = {report['budget_teacher_steps']} teacher steps)")
    if args.out is not None:
        atomic_write_text(args.out, json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
