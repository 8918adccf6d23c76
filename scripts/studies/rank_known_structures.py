"""Do a model's samples of known crystals survive relaxation and rank first?

For each built-in experimental structure (``scripts/match_known_structure.py``): sample ``--n``
crystals of its formula with the reference's formula units, relax and rank them with one
potential (:func:`diffcrystal.potential.relax_and_rank`), and relax the experimental
structure with the same potential and settings. Reported per structure:

- ``matched_before``: samples matching the experimental structure before relaxation
  (DiffCSP's matcher: stol 0.5, ltol 0.3, angle_tol 10°);
- ``distinct_converged``: distinct converged crystals in ``ranked.csv``;
- ``first_match_rank``: rank (1 = lowest energy per atom) of the first of them that matches the
  relaxed experimental structure (same matcher), ``None`` when none does;
- ``top_minus_experimental_meV_atom``: energy per atom of the top-ranked crystal minus the
  relaxed experimental one's; below zero the potential prefers a candidate to experiment.

    python scripts/studies/rank_known_structures.py --checkpoint mp20_csp --n 20 --potential sevennet-0 \\
        --workers 1 --out benchmarks/known_ranking_mp20_csp.json [--formulas NaCl CaF2]

Runs in ``--work`` (default: a temporary folder); prints a Markdown table and writes the JSON.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import tempfile
import time
from pathlib import Path

from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.io.ase import AseAtomsAdaptor

from diffcrystal.cli.main import main as diffcrystal
from diffcrystal.potential import RelaxSettings, relax_and_rank, relax_many

def _known_structures_module():
    path = Path(__file__).resolve().parents[1] / "match_known_structure.py"
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def formula_units(formula: str, reference) -> int:
    """Formula units in the reference's primitive cell (the cell CSP samples)."""
    from pymatgen.core import Composition

    return reference.num_atoms // int(Composition(formula).num_atoms)


def rank_one(formula: str, args: argparse.Namespace, work: Path, known) -> dict:
    reference = known.reference_crystal(formula)
    z = formula_units(formula, reference)
    samples = work / formula / "samples"
    command = ["sample", "--composition", formula, "--formula-units", str(z),
               "--n", str(args.n), "--seed", str(args.seed), "--out", str(samples), "--quiet"]
    if args.checkpoint:
        command += ["--checkpoint", args.checkpoint]
    if diffcrystal(command) != 0:
        raise RuntimeError(f"sampling {formula} failed")
    before = _matches_before(known, samples, formula)

    settings = RelaxSettings()
    started = time.perf_counter()
    report = relax_and_rank([samples], work / formula / "ranked", args.potential, settings,
                            workers=args.workers, progress=False)
    (experimental,) = relax_many([("experimental", reference.to_atoms())], args.potential, settings,
                                 workers=1, progress=False)
    seconds = time.perf_counter() - started
    if experimental.atoms is None or not experimental.converged:
        raise RuntimeError(f"the experimental {formula} did not relax: {experimental.reason}")

    matcher = StructureMatcher(stol=0.5, ltol=0.3, angle_tol=10)
    target = AseAtomsAdaptor.get_structure(experimental.atoms)
    first_match = next((i + 1 for i, entry in enumerate(report.entries)
                        if matcher.fit(AseAtomsAdaptor.get_structure(entry.best.atoms), target)), None)
    top = report.entries[0].best if report.entries else None
    return {
        "formula": formula,
        "formula_units": z,
        "samples": args.n,
        "matched_before": before["n_matched"],
        "converged": sum(r.status == "converged" for r in report.results),
        "distinct_converged": len(report.entries),
        "first_match_rank": first_match,
        "top_space_group": top.space_group if top else None,
        "top_minus_experimental_meV_atom": (
            round(1000 * (top.energy_per_atom - experimental.energy_per_atom), 1) if top else None),
        "relax_wall_s": round(seconds, 1),
    }


def _matches_before(known, samples: Path, formula: str) -> dict:
    out = samples / "match.json"
    known.main([str(samples), "--reference", formula, "--workers", "1", "--out", str(out)])
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> list[dict]:
    known = _known_structures_module()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="generator (default: the bundled CSP one)")
    parser.add_argument("--formulas", nargs="+", default=list(known.KNOWN_STRUCTURES),
                        choices=list(known.KNOWN_STRUCTURES))
    parser.add_argument("--n", type=int, default=20, help="samples per structure")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--potential", default="sevennet-0")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--work", type=Path, default=None, help="keep samples and rankings here")
    parser.add_argument("--out", type=Path, required=True, help="JSON file of the results")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        rows = [rank_one(formula, args, work, known) for formula in args.formulas]
    record = {"checkpoint": args.checkpoint or "default", "potential": args.potential, "n": args.n,
              "seed": args.seed, "structures": rows}
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print("| structure | Z | matched before relaxation | converged | distinct | rank of the match "
          "| top minus experimental (meV/atom) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['formula']} | {r['formula_units']} | {r['matched_before']} | {r['converged']} "
              f"| {r['distinct_converged']} | {r['first_match_rank'] or '–'} "
              f"| {r['top_minus_experimental_meV_atom']} |")
    return rows


if __name__ == "__main__":
    main()
