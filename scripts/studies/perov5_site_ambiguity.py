"""How much of a Perov-5 target does its composition decide? The A/B site ceiling of CSP @1.

Perov-5 (Castelli et al., Energy Environ. Sci. 5, 9034 (2012); CDVAE's split) holds one
5-atom ABX3 perovskite for every *ordered* pair (A, B) of 52 cations and 7 anion sets
(52 x 52 x 7 = 18,928 rows). ABX3 and BAX3 have the same composition but different
structures: A sits in the 12-fold cuboctahedral site, B in the anion octahedron. A predictor
given only the composition therefore cannot know which cation takes which site; with both
orderings in the data, it is a fair coin for every target whose two cations differ.

For each test structure the script finds the B cation (the one with the shortest cation-anion
distance, the octahedral site) and the A cation, then reports

- how many targets have one cation on both sites (A = B: no ambiguity);
- how many share their composition with a training structure, and whether that training
  structure has the *same* or the *opposite* site assignment (a model that reproduces its
  training twin is wrong on the opposite ones);
- how many test structures match themselves with the A and B species swapped (StructureMatcher
  at DiffCSP's tolerances, stol 0.5, ltol 0.3, angle_tol 10 degrees), i.e. how often the wrong
  ordering can still count as a match, and at what RMSE;
- the resulting ceiling of @1 for any composition-only predictor that gets the geometry exactly
  right and picks the ordering at random: precise share ``(n_same + n_two / 2) / n`` and
  match rate ``(n_same + n_two / 2 * (1 + swap_match_share)) / n``.

With ``--metrics`` (``metrics.json`` or ``metrics.json.gz`` of ``diffcrystal evaluate`` on the same test file), each
evaluation's @1 match rate and precise share are broken down by those categories.

    python scripts/studies/perov5_site_ambiguity.py --train ../shared/data/perov_5/train.csv \\
        --test ../shared/data/perov_5/test.csv \\
        --metrics benchmarks/perov5_csp_v3_perov5_k1_full/metrics.json.gz \\
        --out benchmarks/perov5_site_ambiguity.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure
from tqdm import tqdm

from diffcrystal.atomic_write import atomic_write_text
from diffcrystal.data.readers import read_crystals
from diffcrystal.errors import InputError
from diffcrystal.metrics.csp import MATCHER_ANGLE_TOL_DEG, MATCHER_LTOL, MATCHER_STOL
from diffcrystal.metrics.report import read_metrics_json

ANIONS = frozenset({"N", "O", "F", "S"})
"""The anions of Perov-5's seven anion sets (O3, O2N, ON2, N3, O2F, OFN, O2S)."""

PRECISE_RMSE = 0.1
CATEGORIES = ("same_cation", "train_same_sites", "train_opposite_sites", "composition_unseen")


def site_assignment(structure: Structure) -> tuple[str, str]:
    """(A, B): the cation farthest from its nearest anion (cuboctahedral A site) and the
    nearest (octahedral B site). Needs exactly two cation sites and at least one anion."""
    cations = [i for i, site in enumerate(structure) if site.specie.symbol not in ANIONS]
    anions = [i for i, site in enumerate(structure) if site.specie.symbol in ANIONS]
    if len(cations) != 2 or not anions:
        raise InputError(
            f"{structure.composition.reduced_formula}: not an ABX3 perovskite cell "
            f"({len(cations)} cation and {len(anions)} anion sites)"
        )
    nearest = [min(structure.get_distance(i, j) for j in anions) for i in cations]
    a_site, b_site = (cations[1], cations[0]) if nearest[0] < nearest[1] else (cations[0], cations[1])
    return structure[a_site].specie.symbol, structure[b_site].specie.symbol


def swapped(structure: Structure, a: str, b: str) -> Structure:
    """The same geometry with the A and B species exchanged."""
    result = structure.copy()
    result.replace_species({a: b, b: a})
    return result


def read_structures(path: str) -> list[tuple[str, Structure]]:
    """(label, structure) of every entry, cells as given in the file."""
    result = read_crystals(path, canonical=False)
    if result.skipped:
        print(f"warning: {len(result.skipped)} entries of {path} skipped "
              f"(first: {result.skipped[0]})", file=sys.stderr)
    return [(crystal.label, crystal.to_structure()) for crystal in result.crystals]


def categorise(train, test) -> list[dict]:
    """One record per test structure: label, formula, A, B and category."""
    train_sites: dict[str, set[tuple[str, str]]] = {}
    for _, structure in tqdm(train, desc="training sites", unit="structure"):
        train_sites.setdefault(structure.composition.reduced_formula, set()).add(site_assignment(structure))
    records = []
    for label, structure in tqdm(test, desc="test sites", unit="structure"):
        formula = structure.composition.reduced_formula
        a, b = site_assignment(structure)
        seen = train_sites.get(formula, set())
        if a == b:
            category = "same_cation"
        elif not seen:
            category = "composition_unseen"
        elif (a, b) in seen:
            category = "train_same_sites"
        else:
            category = "train_opposite_sites"
        records.append({"label": label, "formula": formula, "A": a, "B": b, "category": category})
    return records


def swap_matches(test, records, matcher: StructureMatcher) -> list[float | None]:
    """RMSE of each two-cation test structure against its A/B-swapped self (None: no match)."""
    rmses = []
    for (_, structure), record in tqdm(list(zip(test, records)), desc="swap test", unit="structure"):
        if record["category"] == "same_cation":
            continue
        found = matcher.get_rms_dist(structure, swapped(structure, record["A"], record["B"]))
        rmses.append(None if found is None else float(found[0]))
    return rmses


def breakdown(metrics_path: Path, records: list[dict]) -> dict:
    """@1 match rate and precise share of one evaluation, per category (percent)."""
    payload = read_metrics_json(metrics_path)
    by_label = {record["label"]: record["category"] for record in records}
    counts = {category: Counter() for category in ("all",) + CATEGORIES}
    for target in payload["per_target"]:
        if target["label"] not in by_label:
            raise InputError(f"{metrics_path}: target {target['label']} is not in the test file")
        first = target["candidates"][0] if target["candidates"] else {"rms": None}
        for category in ("all", by_label[target["label"]]):
            counts[category]["n"] += 1
            counts[category]["matched"] += first["rms"] is not None
            counts[category]["precise"] += first["rms"] is not None and first["rms"] < PRECISE_RMSE
    return {
        category: {
            "n": c["n"],
            "match_percent": 100 * c["matched"] / c["n"],
            "precise_percent": 100 * c["precise"] / c["n"],
        }
        for category, c in counts.items() if c["n"]
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", required=True, help="training file (CDVAE CSV or any reader format)")
    parser.add_argument("--test", required=True, help="test file")
    parser.add_argument("--metrics", nargs="*", default=[], help="metrics.json (or .json.gz) of evaluations on --test")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args(argv)
    try:
        train, test = read_structures(args.train), read_structures(args.test)
        records = categorise(train, test)
        matcher = StructureMatcher(stol=MATCHER_STOL, ltol=MATCHER_LTOL, angle_tol=MATCHER_ANGLE_TOL_DEG)
        swap_rmses = swap_matches(test, records, matcher)
        evaluations = {path: breakdown(Path(path), records) for path in args.metrics}
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    n = len(records)
    counts = Counter(record["category"] for record in records)
    n_same, n_two = counts["same_cation"], n - counts["same_cation"]
    matched_swaps = [r for r in swap_rmses if r is not None]
    swap_share = len(matched_swaps) / len(swap_rmses) if swap_rmses else 0.0
    summary = {
        "n_test": n,
        "categories": {category: counts[category] for category in CATEGORIES},
        "swap_match_percent": 100 * swap_share,
        "swap_match_min_rmse": min(matched_swaps) if matched_swaps else None,
        "swap_match_median_rmse": float(np.median(matched_swaps)) if matched_swaps else None,
        "ceiling_precise_at_1_percent": 100 * (n_same + n_two / 2) / n,
        "ceiling_match_at_1_percent": 100 * (n_same + n_two / 2 * (1 + swap_share)) / n,
        "evaluations": evaluations,
    }
    print(f"{n} test structures: " + ", ".join(f"{k} {v}" for k, v in summary["categories"].items()))
    print(f"A/B-swapped targets that still match themselves: {summary['swap_match_percent']:.1f} % "
          f"(min RMSE {summary['swap_match_min_rmse']})")
    print(f"@1 ceiling of a composition-only predictor with exact geometry: precise "
          f"{summary['ceiling_precise_at_1_percent']:.2f} %, match {summary['ceiling_match_at_1_percent']:.2f} %")
    for path, table in evaluations.items():
        print(path)
        for category, row in table.items():
            print(f"  {category:22s} n {row['n']:5d}  match {row['match_percent']:6.2f} %  "
                  f"precise {row['precise_percent']:6.2f} %")
    if args.out:
        atomic_write_text(Path(args.out), json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
