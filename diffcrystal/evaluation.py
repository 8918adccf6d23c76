"""``evaluate``: sample with a generator against a test set and score it (CDVAE/DiffCSP protocol).

CSP: for each test structure, ``k`` samples with its composition and atom count, scored by
:func:`~diffcrystal.metrics.csp_metrics` (match rate and RMSE @1 / @k). De novo: ``n``
samples scored by :func:`~diffcrystal.metrics.denovo_metrics` (validity, coverage,
property distances). Sample noise is seeded per batch, so a rerun gives the same figures.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from diffcrystal.data.cache import default_cache_dir
from diffcrystal.data.crystal import Crystal
from diffcrystal.data.readers import read_crystals
from diffcrystal.errors import InputError
from diffcrystal.generator import Generator
from diffcrystal.metrics import COVERAGE_CUTOFFS, compute_fingerprints, csp_metrics, denovo_metrics, write_metrics
from diffcrystal.metrics.fingerprints import cached_fingerprints
from diffcrystal.sampling import batch_generator, plan_requests


@dataclass(frozen=True)
class EvaluationRun:
    metrics: object
    json_path: Path
    markdown_path: Path
    sampling_seconds: float


def generate_for(
    generator: Generator,
    requests: list[tuple[int, list[int] | None]],
    *,
    num_steps: int,
    batch_size: int,
    seed: int,
    progress: bool = True,
) -> list[Crystal | None]:
    """Sample one crystal per (atom count, species or None) request; ``None`` marks a
    sample that is no crystal (collapsed lattice)."""
    out: list[Crystal | None] = []
    batches = range(0, len(requests), batch_size)
    bar = tqdm(total=len(batches) * num_steps, desc="sampling", unit="step", disable=not progress)
    for index, start in enumerate(batches):
        chunk = requests[start : start + batch_size]
        crystals = generator.sample(
            [n for n, _ in chunk],
            [s for _, s in chunk] if generator.mode == "csp" else None,
            num_steps=num_steps,
            generator=batch_generator(seed, index, generator.device),
            progress=lambda _step: bar.update(1),
        )
        out += [c if isinstance(c, Crystal) else None for c in crystals]
    bar.close()
    return out


def evaluate(
    generator: Generator,
    test_path: str | Path,
    out_dir: str | Path,
    *,
    k: int = 20,
    n: int = 1000,
    limit: int | None = None,
    num_steps: int | None = None,
    batch_size: int = 500,
    seed: int = 0,
    workers: int = 2,
    dataset: str | None = None,
    primitive_targets: bool = False,
    extra: dict | None = None,
    progress: bool = True,
    cache_dir: str | Path | None = None,
) -> EvaluationRun:
    """Sample and score; write ``metrics.json`` and ``metrics.md`` into ``out_dir``.

    ``limit``: use only the first ``limit`` test structures (CSP) or test references (de
    novo). ``dataset``: name for the coverage cutoffs ('perov_5', 'carbon_24', 'mp_20').
    ``primitive_targets``: reduce the test structures to their primitive cells, so that CSP
    samples that many atoms; by default each target keeps its cell as given (DiffCSP's
    protocol: CDVAE files are only Niggli-reduced, which keeps the atom count).
    ``cache_dir``: where the test set's de novo fingerprints are cached (default: the data
    cache folder, :func:`~diffcrystal.data.cache.default_cache_dir`).
    """
    if k < 1 or n < 1:
        raise InputError(f"--k and --n must be at least 1 (got k={k}, n={n})")
    if generator.mode != "csp" and dataset not in COVERAGE_CUTOFFS:
        known = ", ".join(sorted(COVERAGE_CUTOFFS))
        raise InputError(f"de novo coverage needs the dataset's cutoffs: pass --dataset ({known}); got {dataset!r}")
    steps = num_steps or generator.experiment.sampling.num_steps
    loaded = read_crystals(test_path, canonical=primitive_targets, progress=progress)
    targets = loaded.crystals[:limit] if limit else loaded.crystals
    if not targets:
        raise InputError(f"no test structures in {test_path}")
    started = time.perf_counter()
    if generator.mode == "csp":
        requests = [(t.num_atoms, t.atomic_numbers.tolist()) for t in targets for _ in range(k)]
        samples = generate_for(generator, requests, num_steps=steps, batch_size=batch_size, seed=seed, progress=progress)
        elapsed = time.perf_counter() - started
        predictions = [samples[i * k : (i + 1) * k] for i in range(len(targets))]
        metrics = csp_metrics(predictions, targets, workers=workers, progress=progress)
    else:
        requests = plan_requests(generator, n, None, [1], seed)
        samples = generate_for(generator, requests, num_steps=steps, batch_size=batch_size, seed=seed, progress=progress)
        elapsed = time.perf_counter() - started
        test_fingerprints = cached_fingerprints(
            targets,
            cache_dir or default_cache_dir(),
            lambda crystals: compute_fingerprints(crystals, workers=workers, progress=progress),
        )
        metrics = denovo_metrics(
            samples, targets, dataset=dataset, test_fingerprints=test_fingerprints, workers=workers, progress=progress
        )
    record = {
        "test_data": str(test_path),
        "num_test_structures": len(targets),
        "primitive_targets": primitive_targets,
        "num_target_atoms": sum(t.num_atoms for t in targets),
        "skipped_test_rows": len(loaded.skipped),
        "num_steps": steps,
        "k": k if generator.mode == "csp" else None,
        "n": n if generator.mode != "csp" else None,
        "seed": seed,
        "sampling_seconds": round(elapsed, 1),
        **(extra or {}),
    }
    json_path, md_path = write_metrics(metrics, out_dir, extra=record)
    return EvaluationRun(metrics, json_path, md_path, elapsed)
