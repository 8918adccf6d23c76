"""``sample_to_folder``: the library behind ``diffcrystal sample``.

Requests are generated in batches; batch ``b`` draws its noise from a generator seeded by
``(seed, b)``, so the same seed gives the same structures, and a resumed run produces exactly
the structures the interrupted run had not finished.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from pymatgen.core import Element
from tqdm.auto import tqdm

from diffcrystal.checkpoint import file_sha256
from diffcrystal.data.composition import Composition, format_composition, multiply, to_atomic_numbers
from diffcrystal.data.crystal import Crystal, CrystalError
from diffcrystal.errors import InputError
from diffcrystal.generator import Generator
from diffcrystal.overview import write_sample_overview
from diffcrystal.sample_writer import SampleRecord, SampleWriter

log = logging.getLogger(__name__)

MAX_SAMPLE_ATOMS = 200
"""Largest cell (atoms) the sampler accepts: the denoiser's in-cell graph grows as N²."""

RUN_RECORD_NAME = "run.json"


@dataclass
class SampleRun:
    """What a sampling run produced."""

    out_dir: Path
    records: list[SampleRecord]

    @property
    def num_valid(self) -> int:
        return sum(r.valid for r in self.records)

    def space_group_counts(self) -> Counter:
        return Counter(
            f"{r.spacegroup_symbol} ({r.spacegroup_number})" if r.spacegroup_number else "none found"
            for r in self.records
        )


def batch_generator(seed: int, batch_index: int, device: torch.device) -> torch.Generator:
    """The noise generator of batch ``batch_index`` of a run seeded with ``seed``."""
    state = np.random.SeedSequence([seed, batch_index]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(state) & ((1 << 63) - 1))


def plan_requests(
    generator: Generator,
    n: int,
    composition: Composition | None,
    formula_units: list[int],
    seed: int,
) -> list[tuple[int, list[int] | None]]:
    """(atom count, species or None) for each of the ``n`` requested crystals.

    CSP: the composition times Z, cycling through ``formula_units``. De novo: atom counts drawn
    from the training histogram with a generator seeded by ``seed``.
    """
    if composition is not None:
        if generator.mode != "csp":
            raise InputError("this checkpoint generates de novo; drop --composition or pass a CSP checkpoint")
        plans = []
        for z in formula_units:
            species = to_atomic_numbers(multiply(composition, z))
            if len(species) > MAX_SAMPLE_ATOMS:
                raise InputError(
                    f"{format_composition(composition)} x {z} has {len(species)} atoms; at most "
                    f"{MAX_SAMPLE_ATOMS} atoms per cell are supported"
                )
            plans.append((len(species), species))
        unseen = sorted(set(composition) - set(generator.statistics.species))
        if unseen:
            names = ", ".join(Element.from_Z(z).symbol for z in unseen)
            log.warning("the checkpoint never saw %s in training; expect poor structures", names)
        largest = max(p[0] for p in plans)
        if largest > generator.statistics.max_atoms:
            log.warning(
                "%d atoms per cell is more than the largest training cell (%d atoms); expect poor structures",
                largest,
                generator.statistics.max_atoms,
            )
        return [plans[i % len(plans)] for i in range(n)]
    if generator.mode == "csp":
        raise InputError("this checkpoint predicts structures for a given composition: pass --composition")
    histogram = generator.statistics.num_atoms_histogram
    sizes = torch.tensor(list(histogram), dtype=torch.long)
    weights = torch.tensor(list(histogram.values()), dtype=torch.double)
    draws = torch.multinomial(weights, n, replacement=True, generator=torch.Generator().manual_seed(seed))
    return [(int(sizes[i]), None) for i in draws.tolist()]


def check_options(generator: Generator, n: int, num_steps: int, batch_size: int) -> None:
    """Refuse a request the sampler cannot run (:class:`InputError` naming the option)."""
    if n < 1:
        raise InputError(f"--n must be at least 1, got {n}")
    if batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {batch_size}")
    if num_steps < 1 or num_steps > generator.joint.num_timesteps:
        raise InputError(f"--steps must be in 1..{generator.joint.num_timesteps}, got {num_steps}")


def generate_batches(
    generator: Generator,
    plans: list[tuple[int, list[int] | None]],
    *,
    num_steps: int,
    batch_size: int,
    seed: int,
    first_batch: int = 0,
    progress: bool = True,
) -> Iterator[tuple[int, list[Crystal | CrystalError]]]:
    """Sample ``plans`` (from :func:`plan_requests`) batch by batch, from ``first_batch`` on.

    Batch ``b`` holds ``plans[b * batch_size:(b + 1) * batch_size]`` and draws its noise from
    :func:`batch_generator` ``(seed, b)``. Yields ``(index of its first plan, crystals)``.
    """
    num_batches = -(-len(plans) // batch_size)
    bar = tqdm(total=(num_batches - first_batch) * num_steps, desc="sampling", unit="step", disable=not progress)
    try:
        for batch_index in range(first_batch, num_batches):
            start = batch_index * batch_size
            batch_plans = plans[start:start + batch_size]
            crystals = generator.sample(
                [p[0] for p in batch_plans],
                [p[1] for p in batch_plans] if generator.mode == "csp" else None,
                num_steps=num_steps,
                generator=batch_generator(seed, batch_index, generator.device),
                progress=lambda _step: bar.update(1),
            )
            yield start, crystals
            bar.set_postfix(done=start + len(batch_plans))
    finally:
        bar.close()


def sample_to_folder(
    generator: Generator,
    *,
    n: int,
    out_dir: str | Path,
    composition: Composition | None = None,
    formula_units: list[int] = (1,),
    num_steps: int,
    batch_size: int = 100,
    seed: int = 0,
    resume: bool = False,
    checkpoint_path: str | Path | None = None,
    progress: bool = True,
) -> SampleRun:
    """Generate ``n`` crystals into ``out_dir`` (CIFs, ``samples.extxyz``, ``summary.csv``,
    ``run.json``, and at the end ``overview.png``). See :class:`~diffcrystal.sample_writer.SampleWriter` for the layout."""
    check_options(generator, n, num_steps, batch_size)
    plans = plan_requests(generator, n, composition, list(formula_units), seed)
    writer = SampleWriter(out_dir, resume=resume)
    record = {
        "checkpoint": str(checkpoint_path) if checkpoint_path else None,
        "checkpoint_sha256": file_sha256(checkpoint_path) if checkpoint_path else None,
        "mode": generator.mode,
        "composition": format_composition(composition) if composition is not None else None,
        "formula_units": list(formula_units),
        "n": n,
        "num_steps": num_steps,
        "batch_size": batch_size,
        "seed": seed,
        "experiment": generator.experiment.to_dict(),
    }
    (writer.out_dir / RUN_RECORD_NAME).write_text(json.dumps(record, indent=2))

    first_batch = writer.num_done // batch_size
    if writer.num_done % batch_size:
        raise InputError(
            f"{out_dir} holds {writer.num_done} samples, not a multiple of --batch-size {batch_size}; "
            "resume with the batch size of the original run"
        )
    batches = generate_batches(generator, plans, num_steps=num_steps, batch_size=batch_size, seed=seed,
                               first_batch=first_batch, progress=progress)
    for start, crystals in batches:
        writer.write_batch(crystals, [f"{i:06d}" for i in range(start, start + len(crystals))])
    write_sample_overview(writer.out_dir)
    return SampleRun(writer.out_dir, writer.records)
