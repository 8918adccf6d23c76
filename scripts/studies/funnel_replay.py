"""How many candidates can the relaxation funnel prune without losing the answer? Record once, replay any funnel.

``collect`` runs ``predict`` on held-out MP-20 validation structures (each left out of the
templates, the cell's atom count given) with a funnel that keeps everything (``keep_fraction``
1, the default stages), so every candidate is relaxed to the end and its energy, status and
steps after each stage are recorded, with its score offset and the final ranked groups. One JSON
line per target, appended as each finishes (an interrupted run resumes where it stopped):

    OMP_NUM_THREADS=1 python scripts/studies/funnel_replay.py collect --every 20 --limit 40 \\
        --out runs/funnel_replay/records.jsonl

``replay`` then applies each funnel setting (``--keep`` × ``--fraction`` × ``--margin``) to
those records with :func:`~diffcrystal.potential.funnel.replay_funnel`, exactly (a stage's
outcome depends only on its own input), and reports per setting the *misses* (targets whose
first ranked structure the funnel would prune: every member of the first group pruned), the
answer's energy above the full answer's when missed, whether the answer matches the target,
and the share of potential steps against relaxing everything:

    python scripts/studies/funnel_replay.py replay runs/funnel_replay/records.jsonl \\
        --keep 3 5 8 --fraction 0.5 --margin 0 0.02 0.05 --out runs/funnel_replay/report.json
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

from diffcrystal.atomic_write import atomic_write_text
from diffcrystal.errors import InputError
from diffcrystal.potential.funnel import FunnelSettings, StageRecord, replay_funnel

MATCHED_GROUPS = 5
"""Ranked groups whose match with the target ``collect`` records (the answers a funnel can give
when it prunes the first ones are rarely further down)."""


def collect_target(target, library, generator, potential, cache_dir: str, rescale_templates: bool = False) -> dict:
    """One validation target through ``predict`` with a keep-everything funnel: the record
    ``replay`` reads (``rescale_templates``: templates at their predicted volume)."""
    from diffcrystal.data.composition import format_composition
    from diffcrystal.data.crystal import Crystal
    from diffcrystal.metrics.csp import compare_with_target
    from diffcrystal.prediction import PredictSettings, predict

    settings = dataclasses.replace(PredictSettings(), funnel=FunnelSettings(keep_fraction=1.0),
                                   rescale_templates=rescale_templates)
    started = time.perf_counter()
    prediction = predict(format_composition(target.composition), templates=library, generator=generator,
                         potential=potential, settings=settings, cache_dir=cache_dir, num_atoms=target.num_atoms)
    candidates = [{"label": o.candidate.label, "offset": o.offset, "status": o.status,
                   "energy_per_atom": o.result.energy_per_atom, "steps": o.result.steps,
                   "stages": [[s.energy_per_atom, s.status, s.steps] for s in o.stages]}
                  for o in prediction.outcomes if o.result is not None]
    ranked = [{"members": r.members, "score": r.score,
               "matches_target": (compare_with_target(Crystal.from_structure(r.structure), target).status == "match"
                                  if r.rank <= MATCHED_GROUPS else None)}
              for r in prediction.ranked]
    return {"target": target.label, "composition": format_composition(target.composition),
            "num_atoms": target.num_atoms, "stage_steps": list(settings.funnel.stage_steps),
            "rescale_templates": rescale_templates,
            "seconds": round(time.perf_counter() - started, 2), "steps": prediction.relax_steps,
            "candidates": candidates, "ranked": ranked}


def collect(args: argparse.Namespace) -> int:
    from diffcrystal.checkpoint import bundled_analogue_table
    from diffcrystal.potential.calculators import resolve_potential
    from diffcrystal.prediction import load_library
    from diffcrystal.ranked_evaluation import held_out_validation

    checkpoint, generator, validation = held_out_validation(args.checkpoint)
    targets = validation[args.offset::args.every][:args.limit]
    if not targets:
        raise InputError(f"{checkpoint}: no validation structures at offset {args.offset}, every {args.every}")
    done = {json.loads(line)["target"] for line in args.out.read_text().splitlines()} if args.out.is_file() else set()
    library = load_library(bundled_analogue_table(checkpoint), checkpoint)
    potential = resolve_potential(args.potential)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for number, target in enumerate(targets, 1):
        if target.label in done:
            continue
        with tempfile.TemporaryDirectory() as cache:
            record = collect_target(target, library.without({target.label}), generator, potential, cache,
                                    args.rescale_templates)
        with args.out.open("a") as handle:  # one whole line per finished target
            handle.write(json.dumps(record) + "\n")
        print(f"[{number}/{len(targets)}] {record['composition']}: {len(record['candidates'])} candidates, "
              f"{record['steps']} steps, {record['seconds']:.0f} s", flush=True)
    return 0


def read_records(path: Path) -> list[dict]:
    """The JSON lines of ``collect`` (plain or gzip)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def replay_target(record: dict, funnel: FunnelSettings) -> dict:
    """One target under ``funnel``: missed or not, the answer's energy above the full answer's
    (meV/atom), whether the answer matches the target, and the steps spent and recorded."""
    if tuple(record["stage_steps"]) != funnel.stage_steps:
        raise InputError(f"{record['target']} was recorded on stages {record['stage_steps']}, "
                         f"not the replayed {list(funnel.stage_steps)}")
    candidates = record["candidates"]
    replay = replay_funnel([[StageRecord(*s) for s in c["stages"]] for c in candidates],
                           [c["steps"] for c in candidates], [c["offset"] for c in candidates], funnel)
    pruned = {c["label"] for c, at in zip(candidates, replay.pruned_at) if at is not None}
    surviving = [group for group in record["ranked"] if not set(group["members"]) <= pruned]
    full, answer = (record["ranked"][0] if record["ranked"] else None), (surviving[0] if surviving else None)
    return {"missed": bool(full is not None and answer is not full),
            "energy_above_full_meV_atom": (1e3 * (answer["score"] - full["score"]) if full and answer else None),
            "answer_matches_target": bool(answer and answer["matches_target"]),
            "full_matches_target": bool(full and full["matches_target"]),
            "steps": sum(replay.steps), "steps_recorded": sum(c["steps"] for c in candidates)}


def replay(args: argparse.Namespace) -> int:
    records = [r for path in args.records for r in read_records(path)]
    if not records:
        raise InputError("no records to replay")
    rows = []
    for keep, fraction, margin in itertools.product(args.keep, args.fraction, args.margin):
        funnel = FunnelSettings(keep_fraction=fraction, keep_at_least=keep, margin=margin)
        targets = [replay_target(r, funnel) for r in records]
        missed = [t for t in targets if t["missed"]]
        rows.append({"keep": keep, "fraction": fraction, "margin_eV_atom": margin, "targets": len(targets),
                     "misses": len(missed), "miss_percent": round(100 * len(missed) / len(targets), 2),
                     "missed_energy_above_full_meV_atom": sorted(round(t["energy_above_full_meV_atom"], 2)
                                                                 for t in missed if t["energy_above_full_meV_atom"] is not None),
                     "answer_matches_target": sum(t["answer_matches_target"] for t in targets),
                     "full_matches_target": sum(t["full_matches_target"] for t in targets),
                     "steps_ratio": round(sum(t["steps"] for t in targets) / sum(t["steps_recorded"] for t in targets), 3)})
        row = rows[-1]
        print(f"keep {keep} fraction {fraction} margin {margin:.3f}: {row['misses']}/{row['targets']} missed "
              f"({row['miss_percent']} %), matches {row['answer_matches_target']} (full {row['full_matches_target']}), "
              f"steps {row['steps_ratio']}")
    if args.out:
        report = {"records": [str(p) for p in args.records], "targets": len(records),
                  "seconds_recorded": round(sum(r["seconds"] for r in records), 1), "settings": rows}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, json.dumps(report, indent=1) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    gather = commands.add_parser("collect", help="record every candidate's stages on validation targets")
    gather.add_argument("--checkpoint", default="mp20_csp", help="CSP checkpoint (file or bundled name)")
    gather.add_argument("--every", type=int, default=20, help="take every N-th validation structure")
    gather.add_argument("--offset", type=int, default=0, help="starting from this one")
    gather.add_argument("--limit", type=int, default=40, help="at most M of those")
    gather.add_argument("--potential", default="sevennet-0")
    gather.add_argument("--out", type=Path, required=True, help="JSON lines, appended per target")
    gather.add_argument("--rescale-templates", action="store_true",
                        help="templates start at the volume predicted for the new species")
    again = commands.add_parser("replay", help="apply funnel settings to recorded targets")
    again.add_argument("records", type=Path, nargs="+", help="JSON lines of collect (.gz read too)")
    again.add_argument("--keep", type=int, nargs="+", default=[3, 5], help="top K values to replay")
    again.add_argument("--fraction", type=float, nargs="+", default=[0.5], help="keep fractions to replay")
    again.add_argument("--margin", type=float, nargs="+", default=[0.0], help="margins to replay (eV/atom)")
    again.add_argument("--out", type=Path, help="JSON report")
    args = parser.parse_args(argv)
    try:
        return collect(args) if args.command == "collect" else replay(args)
    except InputError as error:
        print(f"funnel_replay: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
