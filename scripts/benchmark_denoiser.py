"""Time one denoiser forward pass (and optionally forward + backward) on a synthetic batch.

The default batch is the product target: 100 crystals x 13 atoms (``diffcrystal sample
--composition YBa2Cu3O7 --n 100``), random cubic-ish lattices, under ``torch.no_grad``.
Prints one JSON object with mean / median / min wall milliseconds, median process CPU
milliseconds (all threads; robust to other jobs on a shared machine), parameter count and device.

    python scripts/benchmark_denoiser.py --threads 2 --batch-size 100 --atoms 13 --repeats 20
    python scripts/benchmark_denoiser.py --threads 2 --batch-size 128 --atoms 5 --train
    python scripts/benchmark_denoiser.py --config l_max=2 --config num_layers=4
    python scripts/benchmark_denoiser.py --checkpoint mp20_csp   # a trained generator's network
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import fields

import torch
from torch_geometric.data import Batch, Data

from diffcrystal.data import keys
from diffcrystal.models import Denoiser, DenoiserConfig


def parse_config_overrides(items: list[str]) -> dict:
    """``["l_max=2", "predict_species=true"]`` -> typed dict using DenoiserConfig field types."""
    types = {f.name: f.type for f in fields(DenoiserConfig)}
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--config expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        if key not in types:
            raise ValueError(f"unknown DenoiserConfig key {key!r}; valid keys: {sorted(types)}")
        kind = str(types[key])
        if "bool" in kind:
            out[key] = value.lower() in ("1", "true", "yes")
        elif "float" in kind:
            out[key] = float(value)
        else:
            out[key] = int(value)
    return out


def synthetic_batch(batch_size: int, atoms: int, device: torch.device, dtype: torch.dtype, seed: int = 0) -> Batch:
    """``batch_size`` crystals of ``atoms`` atoms: lattice ~ (V/N = 15 Å³) cube + noise."""
    gen = torch.Generator().manual_seed(seed)
    edge = (15.0 * atoms) ** (1.0 / 3.0)
    data = []
    for _ in range(batch_size):
        lattice = edge * (torch.eye(3) + 0.1 * torch.randn(3, 3, generator=gen))
        data.append(
            Data(
                **{
                    keys.LATTICE: lattice[None].to(dtype),
                    keys.FRAC_COORDS: torch.rand(atoms, 3, generator=gen).to(dtype),
                    keys.ATOMIC_NUMBERS: torch.randint(1, 101, (atoms,), generator=gen),
                    keys.TIME: torch.rand(1, generator=gen).to(dtype),
                },
                num_nodes=atoms,
            )
        )
    return Batch.from_data_list(data).to(device)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=100, help="crystals per batch")
    parser.add_argument("--atoms", type=int, default=13, help="atoms per crystal")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls (after warm-up)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (CPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--train", action="store_true", help="time forward + backward instead")
    parser.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                        help="DenoiserConfig field override (repeatable)")
    parser.add_argument("--checkpoint", metavar="FILE|NAME",
                        help="time this generator's network (its config and weights) instead")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    if args.checkpoint:
        if args.config:
            parser.error("--config and --checkpoint exclude each other")
        from diffcrystal.checkpoint import resolve_checkpoint
        from diffcrystal.generator import Generator

        generator = Generator.from_checkpoint(resolve_checkpoint(args.checkpoint, mode="csp"))
        model, config = generator.denoiser, generator.experiment.model
        # a low-noise expert is a second copy of the network; each sampling call runs one of them
        model = getattr(model, "base", model).to(device=device, dtype=dtype)
    else:
        config = DenoiserConfig.from_dict(parse_config_overrides(args.config))
        model = Denoiser(config).to(device=device, dtype=dtype)
    batch = synthetic_batch(args.batch_size, args.atoms, device, dtype)

    def call() -> None:
        if args.train:
            out = model(batch)
            loss = sum(v.pow(2).mean() for v in out.values())
            loss.backward()
        else:
            with torch.no_grad():
                model(batch)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        call()
    times, cpu_times = [], []
    for _ in range(args.repeats):
        sync()
        start, cpu_start = time.perf_counter(), time.process_time()
        call()
        sync()
        times.append(1e3 * (time.perf_counter() - start))
        cpu_times.append(1e3 * (time.process_time() - cpu_start))
    result = {
        "mode": "forward+backward" if args.train else "forward (no_grad)",
        "batch_size": args.batch_size,
        "atoms": args.atoms,
        "repeats": args.repeats,
        "mean_ms": round(statistics.mean(times), 2),
        "median_ms": round(statistics.median(times), 2),
        "min_ms": round(min(times), 2),
        # process CPU time summed over threads: less sensitive than wall time to other jobs
        # on a shared machine (wall ~ cpu / threads when the cores are free)
        "median_cpu_ms": round(statistics.median(cpu_times), 2),
        "params": sum(p.numel() for p in model.parameters()),
        "device": str(device),
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "config": config.to_dict(),
        "checkpoint": args.checkpoint,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
