"""Throughput of ``diffcrystal screen`` with 1 and 2 local Dask workers, and Dask's overhead per task.

For each worker count, a fresh ``LocalCluster`` (started and timed apart) screens the same
compositions into an empty folder with an empty relaxation cache, so no run reads another's
relaxations; the wall time includes each worker loading the potential and templates once.
Each worker's first task (which loads the potential and the templates) is timed apart from
the later ones (Dask's task stream). The overhead per task is the round trip of a task that does nothing (``abs``): one at a time
(latency) and many submitted at once (scheduler throughput).

    OMP_NUM_THREADS=1 python scripts/benchmark_screen.py --potential emt --out benchmarks/screen_emt.json

The default compositions are binaries of the elements ASE's EMT describes (for ``--potential
emt``); ``--compositions FILE`` takes any list ``screen`` reads.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from distributed import get_task_stream

from diffcrystal.cli.predict import add_predict_arguments, settings_from
from diffcrystal.errors import InputError
from diffcrystal.screening import read_compositions, screen, start_client

EMT_COMPOSITIONS = ["CuAu", "NiAl", "AgPd", "PtNi", "Cu3Au", "Pt3Al", "NiAl3", "Ni3Al", "PdCu", "AgAu",
                    "PtCu", "Pd3Ag", "CuNi", "AlCu", "Ag3Pt", "AuPd", "Ni2Al3", "CuPt3", "PdAl", "AgNi"]
"""Compositions of Al, Ni, Cu, Pd, Ag, Pt, Au (EMT's metals); ``--n`` takes the first N."""


def round_trip_seconds(client, tasks: int) -> dict:
    """Seconds per no-op task: submitted one by one and waited for, and submitted all at once."""
    client.submit(abs, -1, pure=False).result()  # the first call sets up the connection
    started = time.perf_counter()
    for i in range(tasks):
        client.submit(abs, -i, pure=False).result()
    one_by_one = (time.perf_counter() - started) / tasks
    started = time.perf_counter()
    client.gather(client.map(abs, [-i for i in range(tasks)], pure=False))
    batched = (time.perf_counter() - started) / tasks
    return {"one_by_one_ms": round(1e3 * one_by_one, 3), "submitted_together_ms": round(1e3 * batched, 3)}


def time_screen(compositions: list[str], workers: int, options: dict, tasks: int) -> dict:
    """One worker count: cluster start-up, the screen's wall time and statuses, no-op overhead."""
    started = time.perf_counter()
    client = start_client(workers)
    start_up = time.perf_counter() - started
    try:
        overhead = round_trip_seconds(client, tasks)
        with tempfile.TemporaryDirectory() as folder, get_task_stream(client) as stream:
            started = time.perf_counter()
            table = screen(compositions, client, out=Path(folder) / "screen", cache_dir=Path(folder) / "cache",
                           **options)
            seconds = time.perf_counter() - started
        tasks = task_seconds(stream.data)
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()
    return {"workers": workers, "cluster_start_s": round(start_up, 2), "screen_s": round(seconds, 2),
            "compositions_per_minute": round(60 * len(compositions) / seconds, 2),
            "statuses": table["status"].value_counts().to_dict(), "tasks": tasks, "noop_task": overhead}


def task_seconds(stream: list[dict]) -> dict:
    """Mean compute seconds of each worker's first task (it loads the potential and templates)
    and of the later ones, from Dask's task stream."""
    first, later, seen = [], [], set()
    for task in sorted(stream, key=lambda t: t["startstops"][0]["start"]):
        for part in task["startstops"]:
            if part["action"] == "compute":
                (later if task["worker"] in seen else first).append(part["stop"] - part["start"])
                seen.add(task["worker"])
    mean = lambda values: round(sum(values) / len(values), 2) if values else None  # noqa: E731
    return {"first_on_worker_s": mean(first), "later_s": mean(later), "count": len(first) + len(later)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compositions", type=Path, default=None, help="list of compositions (default: EMT binaries)")
    parser.add_argument("--n", type=int, default=6, help="screen the first N compositions (default 6)")
    parser.add_argument("--worker-counts", default="1,2", help="local worker counts to compare (default 1,2)")
    parser.add_argument("--noop-tasks", type=int, default=200, help="no-op tasks timed per worker count")
    parser.add_argument("--out", type=Path, required=True, help="JSON file of the figures")
    add_predict_arguments(parser)
    parser.set_defaults(sources="template")
    args = parser.parse_args(argv)
    try:
        compositions = read_compositions(args.compositions) if args.compositions else EMT_COMPOSITIONS
        if args.n < 1:
            raise InputError(f"--n must be >= 1, got {args.n}")
        compositions = compositions[:args.n]
        try:
            counts = [int(n) for n in args.worker_counts.split(",")]
        except ValueError:
            raise InputError(f"--worker-counts must be whole numbers separated by commas, "
                             f"got {args.worker_counts!r}") from None
        if min(counts) < 1:
            raise InputError(f"--worker-counts must be >= 1, got {args.worker_counts!r}")
        options = {"checkpoint": args.checkpoint, "templates": args.templates, "potential": args.potential,
                   "settings": settings_from(args), "hull": args.hull, "device": args.device}
        runs = []
        for workers in counts:
            runs.append(time_screen(compositions, workers, options, args.noop_tasks))
            print(json.dumps(runs[-1]), flush=True)
    except InputError as error:
        print(f"benchmark_screen: error: {error}", file=sys.stderr)
        return 1
    summary = {"compositions": compositions, "potential": args.potential, "sources": args.sources, "runs": runs}
    if len(runs) > 1:
        summary["speed_up"] = {f"{r['workers']}_vs_{runs[0]['workers']}": round(runs[0]["screen_s"] / r["screen_s"], 3)
                               for r in runs[1:]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1) + "\n")
    for run in runs:
        print(f"{run['workers']} workers: {len(compositions)} compositions in {run['screen_s']} s "
              f"({run['compositions_per_minute']}/min; cluster start {run['cluster_start_s']} s; a worker's first "
              f"task {run['tasks']['first_on_worker_s']} s, later ones {run['tasks']['later_s']} s); no-op task "
              f"{run['noop_task']['one_by_one_ms']} ms one by one, {run['noop_task']['submitted_together_ms']} ms "
              "submitted together")
    for name, ratio in summary.get("speed_up", {}).items():
        print(f"speed-up {name.replace('_', ' ')}: {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
