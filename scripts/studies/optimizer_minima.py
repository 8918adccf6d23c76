"""Where FIRE and BFGS take ``predict``'s candidates: teacher steps, energies and matches.

``predict`` relaxes with FIRE (the batched engine's optimizer). On sampled YBa2Cu3O7 cells BFGS
took about as many steps and often ended in lower minima, so the optimizer may decide which
crystal a candidate becomes. This study measures it where the answer is known: for every N-th
validation structure of the CSP checkpoint (held out of its training, never the test files)
it gathers ``predict``'s candidates with the atom count given and the target's own entry left
out of the templates (as ``scripts/studies/student_candidates.py`` does), relaxes each one to
the end with each optimizer (SevenNet-0, Fréchet cell filter, ``predict``'s fmax and step cap,
no funnel), and compares every relaxed structure with its target (the CSP protocol's
StructureMatcher):

    OMP_NUM_THREADS=1 python scripts/studies/optimizer_minima.py --every 20 --limit 30 \\
        --out runs/optimizer_minima

``<out>/records.jsonl`` holds one line per candidate (resumable: finished targets are skipped);
the summary (``<out>/summary.json``, printed) gives per source and optimizer the share
converged, mean teacher steps, the share of candidates that match their target and match it
precisely (RMSE < 0.1), and per candidate the energy difference BFGS − FIRE (eV/atom) and
whether both ended as the same crystal.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from diffcrystal.errors import InputError

OPTIMIZERS = ("FIRE", "BFGS")
DEFAULT_COUNTS = {"template": 2, "analogue_diffusion": 2, "free_diffusion": 2}
"""Candidates per source and target: the sources ``predict`` combines, two of each."""
PRECISE_RMS = 0.1
"""Normalised RMSE below which a match counts as precise (the project's precise share)."""


def candidate_record(target, candidate, results: dict, crystal_of, compare_with_target, same_crystal) -> dict:
    """One candidate's outcome under every optimizer: status, steps, energy (eV/atom) and its
    match with the target; ``same_crystal``: whether the optimizers' final structures match."""
    record = {"target": target.label, "candidate": candidate.label, "source": candidate.source}
    finals = {}
    for name, result in results.items():
        final = crystal_of(result)
        pair = compare_with_target(final, target)
        finals[name] = final
        record[name] = {"status": result.status, "steps": result.steps,
                        "energy_per_atom": None if final is None else float(result.energy_per_atom),
                        "match": pair.status, "rms": pair.rms}
    first, *others = OPTIMIZERS
    record["same_crystal"] = all(finals[first] is not None and finals[o] is not None
                                 and same_crystal(finals[first], finals[o]) for o in others)
    return record


def summary(records: list[dict]) -> dict:
    """Per source (and ``all``) and optimizer: candidates, share converged, mean steps, share
    matched and precise (%), and the paired BFGS − FIRE energy difference (eV/atom)."""
    out = {}
    for source in sorted({r["source"] for r in records}) + ["all"]:
        chosen = [r for r in records if source in ("all", r["source"])]
        row: dict = {"candidates": len(chosen)}
        for name in OPTIMIZERS:
            outcomes = [r[name] for r in chosen]
            row[name] = {
                "converged_pct": round(100 * np.mean([o["status"] == "converged" for o in outcomes]), 1),
                "mean_steps": round(float(np.mean([o["steps"] for o in outcomes])), 1),
                "matched_pct": round(100 * np.mean([o["match"] == "match" for o in outcomes]), 1),
                "precise_pct": round(100 * np.mean([o["match"] == "match" and o["rms"] < PRECISE_RMS
                                                    for o in outcomes]), 1)}
        both = [r["BFGS"]["energy_per_atom"] - r["FIRE"]["energy_per_atom"] for r in chosen
                if r["BFGS"]["energy_per_atom"] is not None and r["FIRE"]["energy_per_atom"] is not None]
        row["bfgs_minus_fire_eV_per_atom"] = {
            "pairs": len(both), "mean": round(float(np.mean(both)), 4) if both else None,
            "median": round(float(np.median(both)), 4) if both else None,
            "bfgs_lower_by_10meV_pct": round(100 * np.mean([d < -0.01 for d in both]), 1) if both else None,
            "fire_lower_by_10meV_pct": round(100 * np.mean([d > 0.01 for d in both]), 1) if both else None}
        row["same_crystal_pct"] = round(100 * np.mean([r["same_crystal"] for r in chosen]), 1)
        out[source] = row
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="mp20_csp", help="CSP checkpoint (default: %(default)s)")
    parser.add_argument("--every", type=int, default=20, help="take every N-th validation structure (default: 20)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many targets")
    parser.add_argument("--potential", default="sevennet-0", help="teacher potential (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="sampler seed (default: 0)")
    parser.add_argument("--out", type=Path, required=True, help="folder for records.jsonl and summary.json")
    args = parser.parse_args(argv)
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from tqdm.auto import tqdm

    from diffcrystal.data.crystal import Crystal
    from diffcrystal.metrics.csp import compare_with_target
    from diffcrystal.prediction import PREDICT_FMAX_EV_A, PREDICT_MAX_STEPS, PredictSettings, gather_candidates, load_library
    from diffcrystal.potential import RelaxSettings, relax_many, resolve_potential
    from diffcrystal.ranked_evaluation import held_out_validation

    def crystal_of(result) -> Crystal | None:
        return None if result.atoms is None or result.status == "exploded" else Crystal.from_atoms(result.atoms)

    matcher = StructureMatcher()

    def same_crystal(a: Crystal, b: Crystal) -> bool:
        return bool(matcher.fit(a.to_structure(), b.to_structure()))

    try:
        if args.every < 1:
            raise InputError(f"--every must be >= 1, got {args.every}")
        checkpoint, generator, validation = held_out_validation(args.checkpoint)
        library = load_library(None, checkpoint)
        potential = resolve_potential(args.potential)
        targets = validation[::args.every][:args.limit]
        settings = PredictSettings(counts=dict(DEFAULT_COUNTS), seed=args.seed)
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / "records.jsonl"
        records = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        done = {r["target"] for r in records}
        for target in tqdm(targets, desc="targets", unit="target"):
            if target.label in done:
                continue
            candidates, _, _ = gather_candidates(target.composition, generator, library.without({target.label}),
                                                 settings, num_atoms=target.num_atoms)
            structures = [(c.label, c.crystal.to_atoms()) for c in candidates]
            results = {name: relax_many(structures, potential,
                                        RelaxSettings(fmax=PREDICT_FMAX_EV_A, max_steps=PREDICT_MAX_STEPS,
                                                      optimizer=name, engine="ase"),
                                        workers=1, progress=False)
                       for name in OPTIMIZERS}
            new = [candidate_record(target, c, {name: results[name][i] for name in OPTIMIZERS},
                                    crystal_of, compare_with_target, same_crystal)
                   for i, c in enumerate(candidates)]
            with path.open("a") as handle:  # a whole target at a time, so a resume never splits one
                handle.writelines(json.dumps(r) + "\n" for r in new)
            records += new
        report = {"targets": len({r["target"] for r in records}), "every": args.every, "seed": args.seed,
                  "fmax": PREDICT_FMAX_EV_A, "max_steps": PREDICT_MAX_STEPS, "potential": potential.label,
                  "by_source": summary(records)}
        (args.out / "summary.json").write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report, indent=2))
    except (InputError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # guard required: relaxation workers may be spawned processes
    sys.exit(main())
