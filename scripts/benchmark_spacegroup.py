"""Cost of space-group-constrained sampling against unconstrained sampling of the same cells.

For each case (composition, group, Wyckoff assignment) both arms sample ``--n`` crystals with
the same atoms (the assignment's conventional cell, same species order), the same checkpoint,
steps, batch and seed; only the sampler's ``project`` hook differs. Reported per case: sampler
wall time of each arm (best of ``--repeats``), their ratio, and the one-off cost of listing
the group's Wyckoff assignments (``--wyckoff auto``; a first call, pyxtal's tables of the group
loaded in it). Prints a Markdown table and writes JSON.

    OMP_NUM_THREADS=1 python scripts/benchmark_spacegroup.py --out benchmarks/spacegroup_speed.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import diffcrystal
from diffcrystal.data.composition import parse_composition
from diffcrystal.spacegroup import enumerate_assignments, parse_assignment

CASES = [
    ("BaTiO3", 99, "Ba:1a,Ti:1b,O:1b,O:2c"),
    ("NaCl", 225, "Na:4a,Cl:4b"),
    ("Si", 227, "Si:8a"),
    ("SrTiO3", 62, "Sr:4c,Ti:4a,O:4c,O:8d"),
]


def time_arm(generator, assignment, n, steps, seed, constrained) -> float:
    started = time.perf_counter()
    generator.sample([assignment.num_atoms] * n, [assignment.atomic_numbers()] * n, num_steps=steps,
                     generator=torch.Generator().manual_seed(seed),
                     assignments=[assignment] * n if constrained else None)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="default: the bundled CSP model")
    parser.add_argument("--n", type=int, default=20, help="crystals per arm (one batch)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/spacegroup_speed.json"))
    args = parser.parse_args()
    generator = diffcrystal.load_generator(args.checkpoint, device="cpu").generator
    rows = []
    for formula, number, wyckoff in CASES:
        composition = parse_composition(formula)
        assignment, z = parse_assignment(wyckoff, number, composition)
        started = time.perf_counter()
        listed = enumerate_assignments(composition, number, [z])
        listing = time.perf_counter() - started
        free, constrained = (min(time_arm(generator, assignment, args.n, args.steps, 0, c)
                                 for _ in range(args.repeats)) for c in (False, True))
        rows.append({"composition": formula, "spacegroup": number, "wyckoff": assignment.label,
                     "atoms": assignment.num_atoms, "n": args.n, "steps": args.steps,
                     "unconstrained_s": round(free, 2), "constrained_s": round(constrained, 2),
                     "ratio": round(constrained / free, 3), "assignments_listed": len(listed),
                     "listing_s": round(listing, 2)})
    print("| composition | group | assignment | atoms | unconstrained s | constrained s | ratio | "
          "assignments (auto) | listing s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['composition']} | {r['spacegroup']} | {r['wyckoff']} | {r['atoms']} | {r['unconstrained_s']} | "
              f"{r['constrained_s']} | {r['ratio']} | {r['assignments_listed']} | {r['listing_s']} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"threads": torch.get_num_threads(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
