"""The relaxation funnel against relaxing every candidate: wall time, potential steps and whether
the answer changes, on ``predict``'s candidates for held-out validation structures.

Each target's composition goes through ``predict`` twice with the same candidates (same seed,
its own entry left out of the templates): once with the default funnel, once with every
distinct candidate relaxed to the end (``--no-funnel``). A *miss* is a target whose first
structure without the funnel was pruned by the funnel (so the funnel's answer differs); each
answer is also compared with the target (the protocol's matcher):

    OMP_NUM_THREADS=1 python scripts/benchmark_rank.py --every 40 --limit 10 --out benchmarks/funnel_mp20_val.json

``--atom-count`` gives ``predict`` each target cell's atom count, as ``evaluate --ranked --atom-count`` does.

Each run relaxes into its own empty cache folder, so neither reads the other's relaxations.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

from diffcrystal.atomic_write import atomic_write_text
from diffcrystal.checkpoint import bundled_analogue_table
from diffcrystal.data.composition import format_composition
from diffcrystal.data.crystal import Crystal
from diffcrystal.metrics.csp import compare_with_target
from diffcrystal.errors import InputError
from diffcrystal.potential.calculators import resolve_potential
from diffcrystal.prediction import PredictSettings, load_library, predict
from diffcrystal.ranked_evaluation import held_out_validation


def compare(target: Crystal, library, generator, potential, num_atoms: int | None = None) -> dict:
    """One target: the funnel's and the full relaxation's answers, steps and seconds, and whether
    each answer matches the target (``num_atoms``: the cell's atom count given to ``predict``,
    None: composition only)."""
    composition = format_composition(target.composition)
    runs = {}
    for name, funnel in (("funnel", PredictSettings().funnel), ("full", None)):
        with tempfile.TemporaryDirectory() as cache:
            started = time.perf_counter()
            prediction = predict(composition, templates=library, generator=generator, potential=potential,
                                 settings=dataclasses.replace(PredictSettings(), funnel=funnel), cache_dir=cache,
                                 num_atoms=num_atoms)
            runs[name] = (prediction, time.perf_counter() - started)
    funnel, full = runs["funnel"][0], runs["full"][0]
    full_first = full.ranked[0] if full.ranked else None
    funnel_first = funnel.ranked[0] if funnel.ranked else None
    pruned = {o.candidate.label for o in funnel.outcomes if o.status == "pruned"}
    return {
        "composition": composition,
        "num_atoms": num_atoms,
        "seconds": {name: round(seconds, 2) for name, (_, seconds) in runs.items()},
        "steps": {"funnel": funnel.relax_steps, "full": full.relax_steps},
        "first_full": full_first.members if full_first else [],
        "first_funnel": funnel_first.members if funnel_first else [],
        "same_first": bool(full_first and funnel_first and set(full_first.members) & set(funnel_first.members)),
        "missed": bool(full_first and set(full_first.members) <= pruned),
        "first_matches_target": {name: bool(first and compare_with_target(
            Crystal.from_structure(first.structure), target).status == "match")
            for name, first in (("funnel", funnel_first), ("full", full_first))},
        "energy_difference_meV_atom": (round(1e3 * (funnel_first.energy_per_atom - full_first.energy_per_atom), 3)
                                       if full_first and funnel_first else None),
    }


def summarise(rows: list[dict], atom_count_given: bool) -> dict:
    """Misses, agreements and the funnel's share of the full relaxation's seconds and steps."""
    total = {name: sum(r["seconds"][name] for r in rows) for name in ("funnel", "full")}
    steps = {name: sum(r["steps"][name] for r in rows) for name in ("funnel", "full")}
    return {"targets": len(rows), "atom_count_given": atom_count_given, "misses": sum(r["missed"] for r in rows),
            "same_first": sum(r["same_first"] for r in rows),
            "first_matches_target": {name: sum(r["first_matches_target"][name] for r in rows)
                                     for name in ("funnel", "full")},
            "wall_ratio_funnel_to_full": round(total["funnel"] / total["full"], 3),
            "steps_ratio_funnel_to_full": round(steps["funnel"] / max(steps["full"], 1), 3),
            "seconds": total, "steps": steps, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="mp20_csp", help="CSP checkpoint (file or bundled name)")
    parser.add_argument("--every", type=int, default=40, help="take every N-th validation structure")
    parser.add_argument("--limit", type=int, default=10, help="at most M of those")
    parser.add_argument("--potential", default="sevennet-0")
    parser.add_argument("--out", type=Path, required=True, help="JSON file of the comparison")
    parser.add_argument("--atom-count", action="store_true",
                        help="give predict each target cell's atom count (predict --atoms), as evaluate --ranked --atom-count")
    args = parser.parse_args(argv)
    try:
        checkpoint, generator, validation = held_out_validation(args.checkpoint)
        targets = validation[::args.every][:args.limit]
        if not targets:
            raise InputError(f"{checkpoint}: no validation structures to compare on")
        library = load_library(bundled_analogue_table(checkpoint), checkpoint)
        potential = resolve_potential(args.potential)
        rows = []
        for target in targets:
            rows.append(compare(target, library.without({target.label}),
                                generator, potential, target.num_atoms if args.atom_count else None))
            print(json.dumps(rows[-1]), flush=True)
            summary = summarise(rows, args.atom_count)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(args.out, json.dumps(summary, indent=1) + "\n")  # after every target
    except InputError as error:
        print(f"benchmark_rank: error: {error}", file=sys.stderr)
        return 1
    print(f"{len(rows)} targets: {summary['misses']} missed by the funnel, same first structure in "
          f"{summary['same_first']}; funnel/full wall {summary['wall_ratio_funnel_to_full']}, "
          f"steps {summary['steps_ratio_funnel_to_full']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
