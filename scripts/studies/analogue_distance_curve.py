"""How near must a chemical analogue be? Match rate of the analogue baseline by distance.

    python scripts/studies/analogue_distance_curve.py \\
        --metrics benchmarks/baseline_analogue_mp20_k1_full/metrics.json.gz \\
        --data ../shared/data/mp_20/test.csv --out benchmarks/analogue_distance_curve_mp20.json

For every target of an ``evaluate --baseline analogue --k 1`` run (``--metrics``), the
Mendeleev distance of the analogue that run used (:meth:`AnalogueLibrary.candidates_for`:
the target's atom count first, then the nearest) is recomputed from the analogue table
(``--table``, default the one bundled with ``mp20_csp``), and the targets are binned by it:
per bin the number of targets, the share matched @1 and the share reproduced precisely
(RMSE < 0.1). Targets without an analogue of their formula type form their own row. Prints
a markdown table and writes it as JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from diffcrystal.analogues import AnalogueLibrary
from diffcrystal.checkpoint import bundled_analogue_table, resolve_checkpoint
from diffcrystal.data.readers import read_crystals
from diffcrystal.errors import InputError
from diffcrystal.metrics.report import read_metrics_json

PRECISE_RMSE = 0.1
DEFAULT_EDGES = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0, math.inf)


def distance_bins(distances: list[float | None], matched: list[bool], rms: list[float | None],
                  edges: tuple[float, ...]) -> list[dict]:
    """Rows ``{"bin", "targets", "matched", "precise"}`` for ``[edges[i], edges[i+1])`` and
    one ``"none"`` row for targets without an analogue (distance None)."""
    rows = []
    for low, high in zip(edges, edges[1:]):
        members = [i for i, d in enumerate(distances) if d is not None and low <= d < high]
        rows.append(_row(f"[{low:g}, {high:g})", members, matched, rms))
    rows.append(_row("no analogue", [i for i, d in enumerate(distances) if d is None], matched, rms))
    return rows


def _row(name: str, members: list[int], matched: list[bool], rms: list[float | None]) -> dict:
    hits = sum(matched[i] for i in members)
    precise = sum(rms[i] is not None and rms[i] < PRECISE_RMSE for i in members)
    share = (lambda count: round(100 * count / len(members), 2) if members else None)
    return {"bin": name, "targets": len(members), "matched_pct": share(hits), "precise_pct": share(precise)}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", type=Path, required=True, help="metrics.json (or .json.gz) of an analogue baseline run, k = 1")
    parser.add_argument("--data", type=Path, required=True, help="the test set that run used")
    parser.add_argument("--table", type=Path, help="analogue table (default: mp20_csp's)")
    parser.add_argument("--edges", type=float, nargs="+", default=list(DEFAULT_EDGES), help="bin edges (Mendeleev units)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    try:
        metrics = read_metrics_json(args.metrics)
    except InputError as error:
        raise SystemExit(str(error)) from None
    if metrics["extra"].get("method") != "baseline analogue" or metrics["extra"].get("k") != 1:
        raise SystemExit(f"{args.metrics} is not an analogue baseline run with k = 1")
    table = args.table or bundled_analogue_table(resolve_checkpoint("mp20_csp", mode="csp"))
    library = AnalogueLibrary.from_table(table)
    targets = {c.label: c for c in read_crystals(args.data, canonical=bool(metrics["extra"]["primitive_targets"])).crystals}
    distances, matched, rms = [], [], []
    for row in metrics["per_target"]:
        found = library.candidates_for(targets[row["label"]], 1)
        distances.append(found[0].distance if found else None)
        matched.append(bool(row["matched_at_1"]))
        first = row["candidates"][0] if row["candidates"] else {}
        rms.append(first.get("rms") if row["matched_at_1"] else None)
    rows = distance_bins(distances, matched, rms, tuple(args.edges))
    print("| Mendeleev distance of the analogue | targets | matched @1 | precise (RMSE < 0.1) |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['bin']} | {r['targets']} | {r['matched_pct']} % | {r['precise_pct']} % |")
    if args.out:
        args.out.write_text(json.dumps({"metrics": str(args.metrics), "table": str(table), "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
