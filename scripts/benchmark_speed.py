"""Speed harness: the README's sampling command, denoiser calls vs size, training throughput.

Writes one JSON file per run (``--out``, default ``benchmarks/speed-<host>-<date>.json``):

- ``sample_command``: wall time and peak resident memory of
  ``diffcrystal sample --composition YBa2Cu3O7 --n 100`` run as a user would (a fresh process,
  start-up and file writing included; ``--sample-repeats`` runs, each wall time and their
  median), and the fraction of valid structures it wrote;
- ``denoiser_calls``: forward time per call for each (crystals per batch, atoms per crystal)
  of the sweep (``scripts/benchmark_denoiser.py``), with the default CSP model's network
  (``--checkpoint``) and its parameter count;
- ``training``: forward+backward time of a batch of 128 five-atom cells and the implied
  structures per second.

    python scripts/benchmark_speed.py --threads 2
    python scripts/benchmark_speed.py --skip-sample --device cuda
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_denoiser import main as time_denoiser  # noqa: E402  (script beside this one)

SAMPLE_COMMAND = ["diffcrystal", "sample", "--composition", "YBa2Cu3O7", "--n", "100", "--quiet"]
SWEEP = [(1, 13), (10, 13), (100, 13), (500, 13), (100, 5), (100, 24), (100, 52)]
"""(crystals per batch, atoms per crystal) pairs timed for one denoiser call."""


def hardware(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"{platform.machine()} CPU, {os.cpu_count()} cores"


def time_sample_command(threads: int, repeats: int) -> dict:
    walls = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as folder:
            env = dict(os.environ, OMP_NUM_THREADS=str(threads))
            started = time.perf_counter()
            completed = subprocess.run(SAMPLE_COMMAND + ["--out", folder], env=env, capture_output=True, text=True)
            walls.append(time.perf_counter() - started)
            if completed.returncode != 0:
                raise RuntimeError(f"sample command failed: {completed.stderr.strip()[-500:]}")
            with open(Path(folder) / "summary.csv", newline="") as stream:
                rows = list(csv.DictReader(stream))
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "command": " ".join(SAMPLE_COMMAND),
        "wall_s": [round(wall, 2) for wall in walls],
        "median_wall_s": round(statistics.median(walls), 2),
        "peak_rss_MiB": round(peak_kib / 1024, 1),
        "structures": len(rows),
        "valid_fraction": round(sum(r["valid"] == "True" for r in rows) / max(len(rows), 1), 3),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--skip-sample", action="store_true", help="skip the end-to-end sample command")
    parser.add_argument("--sample-repeats", type=int, default=3, help="runs of the sample command")
    parser.add_argument("--checkpoint", default="mp20_csp", help="generator whose network the sweep times")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    common = ["--threads", str(args.threads), "--device", args.device, "--repeats", str(args.repeats)]
    result = {
        "date": datetime.date.today().isoformat(),
        "hardware": hardware(args.device),
        "device": args.device,
        "threads": args.threads,
        "torch": torch.__version__,
    }
    if not args.skip_sample:
        result["sample_command"] = time_sample_command(args.threads, args.sample_repeats)
    model = ["--checkpoint", args.checkpoint]
    result["denoiser_calls"] = [
        time_denoiser(common + model + ["--batch-size", str(b), "--atoms", str(n)]) for b, n in SWEEP
    ]
    step = time_denoiser(common + model + ["--batch-size", "128", "--atoms", "5", "--train"])
    result["training"] = {
        "batch": "128 crystals x 5 atoms, forward+backward",
        "median_ms": step["median_ms"],
        "structures_per_s": round(128 / (step["median_ms"] / 1e3), 1),
        "params": step["params"],
    }
    out = args.out or Path("benchmarks") / f"speed-{platform.node()}-{result['date']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
