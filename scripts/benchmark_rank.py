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

``--folder SAMPLES`` compares the settings of ``diffcrystal rank`` on a sample folder instead
(the README's 100 YBa2Cu3O7 samples): every input relaxed to the end, the default funnel, and
with ``--student MODEL`` the funnel after the student's pre-relaxation (``--keep``, ``--stages``,
``--fraction``, ``--margin`` change the funnel; the setting's name then says how). ``--keep-outputs DIR``
keeps each setting's ``rank`` output, and a later run compares new settings with a kept full
relaxation (``--reference DIR/full``) without repeating it; with ``--reuse`` every setting
already kept in DIR is read, not run again. For each: wall and CPU seconds, teacher and
student steps, and whether its first five crystals are the full relaxation's first five
(StructureMatcher, energies within ``--tolerance`` meV/atom; counted position by position and
in any order), how many of its first five positions are as low in energy as the full
relaxation's (within the tolerance, whatever the crystal), and its costs as ratios to the full
relaxation:

    OMP_NUM_THREADS=1 python scripts/benchmark_rank.py --folder runs/ybco100 \
        --student runs/student_ybco/model --out benchmarks/rank_settings_ybco100.json
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
from diffcrystal.potential.funnel import FunnelSettings
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


TOP = 5
"""Crystals at the top of a ranking that a faster setting must reproduce."""


def _cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (the relaxation workers)."""
    import resource

    return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


COSTS_NAME = "costs.json"
"""A kept setting's costs, beside its ``rank`` output (``--keep-outputs``)."""


def rank_setting(folder: Path, potential, funnel, student: str | None, workers: int,
                 keep: Path | None = None) -> tuple[dict, list]:
    """``rank`` of ``folder`` under one setting, into a fresh relaxation cache and output folder
    (``keep``: this new folder, kept with a ``costs.json``; None: a temporary one): its costs and
    its ranked entries."""
    import os

    from diffcrystal.potential.rank import relax_and_rank
    from diffcrystal.potential.results import RelaxSettings

    with tempfile.TemporaryDirectory() as scratch:
        os.environ["DIFFCRYSTAL_CACHE"] = str(Path(scratch) / "cache")
        started, cpu = time.perf_counter(), _cpu_seconds()
        report = relax_and_rank([folder], keep or Path(scratch) / "out", potential, RelaxSettings(prerelax=student),
                                workers=workers, progress=False, funnel=funnel)
        seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
    relaxed = [r for r in report.results if r.status != "duplicate"]
    costs = {"seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1),
             "teacher_steps": sum(r.steps for r in relaxed), "student_steps": sum(r.prerelax_steps for r in relaxed),
             "statuses": {status: sum(r.status == status for r in report.results)
                          for status in sorted({r.status for r in report.results})}}
    if keep is not None:
        atomic_write_text(keep / COSTS_NAME, json.dumps(costs, indent=1) + "\n")
    return costs, report.entries


def read_setting(out_dir: Path) -> tuple[dict, list]:
    """A setting kept by ``--keep-outputs``: its costs and its first :data:`TOP` ranked crystals
    (``ranked.csv`` and the relaxed CIFs), as :func:`rank_setting` returns them."""
    import csv

    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    from diffcrystal.potential.rank import RANKED_NAME, RELAXED_FOLDER, RankedEntry
    from diffcrystal.potential.results import RelaxResult

    if not (out_dir / COSTS_NAME).is_file() or not (out_dir / RANKED_NAME).is_file():
        raise InputError(f"{out_dir}: not a setting kept by --keep-outputs (no {COSTS_NAME} or {RANKED_NAME})")
    with open(out_dir / RANKED_NAME, newline="") as handle:
        rows = list(csv.DictReader(handle))[:TOP]
    entries = [RankedEntry(RelaxResult(row["id"], "converged", row["potential"],
                                       energy_per_atom=float(row["energy_per_atom_eV"]),
                                       atoms=AseAtomsAdaptor.get_atoms(
                                           Structure.from_file(out_dir / RELAXED_FOLDER / f"{row['id']}.cif"))))
               for row in rows]
    return json.loads((out_dir / COSTS_NAME).read_text()), entries


def top_agreement(full: list, other: list, tolerance_meV: float) -> dict:
    """Over the full ranking's first :data:`TOP`, two counts of the same crystal (StructureMatcher
    of the two best structures) with energies within ``tolerance_meV``: position by position
    (``same_top``), and anywhere among the other's first :data:`TOP` (``same_set``: the top five
    are the same five, in any order; two crystals closer in energy than the tolerance may swap).
    And ``as_low``: the positions whose energy is at most ``tolerance_meV`` above the full
    ranking's at the same position, whatever the crystal: a setting that relaxes a candidate into
    a lower minimum than the full relaxation found counts there, as a chemist would count it."""
    from diffcrystal.potential.rank import default_matcher

    matcher, same, differences = default_matcher(), 0, []

    def agree(mine, theirs) -> bool:
        difference = 1e3 * abs(mine.best.energy_per_atom - theirs.best.energy_per_atom)
        return difference <= tolerance_meV and bool(matcher.fit(mine.best.structure, theirs.best.structure))

    for mine, theirs in zip(full[:TOP], other[:TOP]):
        differences.append(round(1e3 * abs(mine.best.energy_per_atom - theirs.best.energy_per_atom), 3))
        same += agree(mine, theirs)
    same_set = sum(any(agree(mine, theirs) for theirs in other[:TOP]) for mine in full[:TOP])
    as_low = sum(1e3 * (theirs.best.energy_per_atom - mine.best.energy_per_atom) <= tolerance_meV
                 for mine, theirs in zip(full[:TOP], other[:TOP]))
    return {"same_top": same, "same_set": same_set, "as_low": as_low, "of": min(TOP, len(full)),
            "energy_differences_meV_atom": differences}


def funnel_of(args: argparse.Namespace) -> FunnelSettings:
    """``predict``'s funnel with the options given (``--keep``, ``--stages``, ``--fraction``,
    ``--margin``) in place of its defaults."""
    given = {"keep_at_least": args.keep, "stage_steps": args.stages, "keep_fraction": args.fraction,
             "margin": args.margin}
    return dataclasses.replace(PredictSettings().funnel, **{k: v for k, v in given.items() if v is not None})


def funnel_tag(funnel: FunnelSettings) -> str:
    """How ``funnel`` differs from ``predict``'s (``[stages=1,keep=8]``), or "" when it does not:
    a setting's name, and so its folder under ``--keep-outputs``, says what it ran."""
    default = PredictSettings().funnel
    names = {"stage_steps": "stages", "keep_at_least": "keep", "keep_fraction": "fraction", "margin": "margin"}
    parts = []
    for field, name in names.items():
        value = getattr(funnel, field)
        if value != getattr(default, field):
            parts.append(f"{name}={','.join(map(str, value)) if isinstance(value, tuple) else f'{value:g}'}")
    return f"[{','.join(parts)}]" if parts else ""


def compare_settings(args: argparse.Namespace) -> dict:
    """The folder mode: full, funnel and (with a student) funnel + student, as ratios to full."""
    potential = resolve_potential(args.potential)
    funnel = funnel_of(args)
    tag = funnel_tag(funnel)
    settings = [("full", None, None), (f"funnel{tag}", funnel, None)]
    if args.student:
        settings.append((f"funnel{tag}+student", funnel, args.student))
    runs, entries = {}, {}
    report = {"folder": str(args.folder), "potential": potential.label, "student": args.student,
              "funnel": dataclasses.asdict(funnel), "workers": args.workers, "tolerance_meV_atom": args.tolerance,
              "settings": runs}
    if args.keep_outputs is not None:
        args.keep_outputs.mkdir(parents=True, exist_ok=True)
    for name, funnel, student in settings:
        keep = None if args.keep_outputs is None else args.keep_outputs / name
        kept = args.reference if name == "full" and args.reference is not None else (
            keep if args.reuse and keep is not None and (keep / COSTS_NAME).is_file() else None)
        if kept is not None:
            runs[name], entries[name] = read_setting(kept)
            runs[name]["read_from"] = str(kept)
        else:
            runs[name], entries[name] = rank_setting(args.folder, potential, funnel, student, args.workers, keep)
        runs[name].update(top_agreement(entries["full"], entries[name], args.tolerance))
        for cost in ("seconds", "cpu_seconds", "teacher_steps"):
            runs[name][f"{cost}_ratio"] = round(runs[name][cost] / max(runs["full"][cost], 1e-9), 3)
        print(f"{name}: {json.dumps(runs[name])}", flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, json.dumps(report, indent=1) + "\n")  # after every setting
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="mp20_csp", help="CSP checkpoint (file or bundled name)")
    parser.add_argument("--every", type=int, default=40, help="take every N-th validation structure")
    parser.add_argument("--limit", type=int, default=10, help="at most M of those")
    parser.add_argument("--potential", default="sevennet-0")
    parser.add_argument("--out", type=Path, required=True, help="JSON file of the comparison")
    parser.add_argument("--atom-count", action="store_true",
                        help="give predict each target cell's atom count (predict --atoms), as evaluate --ranked --atom-count")
    parser.add_argument("--folder", type=Path, help="compare rank's settings on this sample folder instead")
    parser.add_argument("--student", help="with --folder: a fitted student model for the third setting")
    parser.add_argument("--workers", type=int, default=2, help="with --folder: relaxation worker processes")
    parser.add_argument("--keep", type=int, help="with --folder: the funnel's top K (default: predict's)")
    parser.add_argument("--stages", type=lambda text: tuple(int(s) for s in text.split(",")), metavar="S1,S2",
                        help="with --folder: the funnel's stage steps (default: predict's)")
    parser.add_argument("--fraction", type=float, help="with --folder: the share each funnel stage keeps "
                        "(default: predict's)")
    parser.add_argument("--margin", type=float, help="with --folder: the funnel's margin, eV/atom (default: predict's)")
    parser.add_argument("--keep-outputs", type=Path, metavar="DIR",
                        help="with --folder: keep each setting's rank output (and its costs) in DIR/<setting>")
    parser.add_argument("--reference", type=Path, metavar="DIR",
                        help="with --folder: read the full relaxation from a folder kept by --keep-outputs "
                             "instead of running it again")
    parser.add_argument("--reuse", action="store_true",
                        help="with --keep-outputs: read a setting already kept there instead of running it again")
    parser.add_argument("--tolerance", type=float, default=2.0,
                        help="with --folder: energy agreement of the top crystals (meV/atom)")
    args = parser.parse_args(argv)
    try:
        if args.folder is not None:
            report = compare_settings(args)
            for name, run in report["settings"].items():
                print(f"{name}: {run['seconds']} s wall, {run['cpu_seconds']} s CPU, {run['teacher_steps']} teacher "
                      f"steps ({run['teacher_steps_ratio']} of full), top {run['of']}: {run['same_top']} the same in place, "
                      f"{run['same_set']} in any order, {run['as_low']} positions as low in energy")
            return 0
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
