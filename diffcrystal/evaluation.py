"""``evaluate``: sample with a generator against a test set and score it (CDVAE/DiffCSP protocol).

CSP: for each test structure, ``k`` samples with its composition and atom count, scored by
:func:`~diffcrystal.metrics.csp_metrics` (match rate, RMSE, precise share RMSE < 0.1 / 0.05,
@1 / @k, and sample diversity @k) and drawn as an RMSE histogram. With ``baseline`` the k
candidates come from a trivial rule (:mod:`diffcrystal.baselines`) instead of a model and go
through the same scoring and reports. De novo: ``n`` samples scored by
:func:`~diffcrystal.metrics.denovo_metrics` (validity, coverage, property distances). Sample
noise is seeded per batch, so a rerun gives the same figures. The output folder is checked
for writing before anything is read, sampled or matched.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from diffcrystal.analogues import AnalogueLibrary
from diffcrystal.atomic_write import probe_writable
from diffcrystal.baselines import (
    BASELINES,
    BaselineName,
    TrainingGeometries,
    analogue_candidates,
    baseline_predictions,
)
from diffcrystal.data.cache import default_cache_dir
from diffcrystal.data.crystal import Crystal
from diffcrystal.data.readers import read_crystals
from diffcrystal.errors import InputError
from diffcrystal.generator import Generator
from diffcrystal.metrics import COVERAGE_CUTOFFS, compute_fingerprints, csp_metrics, denovo_metrics, write_metrics
from diffcrystal.metrics.fingerprints import cached_fingerprints
from diffcrystal.metrics.rmse_histogram import RMSE_HISTOGRAM_PNG, write_rmse_histogram
from diffcrystal.sampling import batch_generator, plan_requests
from diffcrystal.symmetry import SYMPREC_TIGHT


def analogue_assignments(target: Crystal, k: int, library: AnalogueLibrary) -> list:
    """``k`` Wyckoff assignments for ``target``: those of its nearest analogues of distinct
    structure types with its species (cycled when fewer); when it has none, every atom on 1a
    of P1 (no constraint)."""
    from diffcrystal.spacegroup import WyckoffAssignment

    found = library.candidates_for(target, k)
    return [a.assignment() for a in found] or [WyckoffAssignment.p1(target.atomic_numbers)] * k


def target_assignment(target: Crystal):
    """The target's :class:`~diffcrystal.spacegroup.WyckoffAssignment` at spglib 0.01 Å, or for a
    target without a group every atom on 1a of P1 (no constraint)."""
    from diffcrystal.spacegroup import WyckoffAssignment, assignment_of

    return assignment_of(target, SYMPREC_TIGHT) or WyckoffAssignment.p1(target.atomic_numbers)


@dataclass(frozen=True)
class EvaluationRun:
    """What :func:`evaluate` wrote: the metrics, their files (``histogram_path``: CSP only) and
    the seconds spent producing the candidates (sampling, or the baseline's rule)."""

    metrics: object
    json_path: Path
    markdown_path: Path
    sampling_seconds: float
    histogram_path: Path | None = None


def check_output_folder(out_dir: str | os.PathLike) -> Path:
    """Prove ``out_dir`` writable, or creatable, without creating it (a run that fails later
    leaves no empty folder): write and remove a temporary file in it or in the nearest folder
    above it that exists; raise :class:`InputError` (one line) otherwise. Files already there
    are untouched."""
    out = Path(out_dir)
    existing = next(folder for folder in (out, *out.parents) if folder.exists())
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"{existing} is not a folder")
        probe_writable(existing)
    except OSError as error:
        raise InputError(f"cannot write to output folder {out}: {error.strerror or error}") from None
    return out


def generate_for(
    generator: Generator,
    requests: list[tuple[int, list[int] | None]],
    *,
    num_steps: int,
    batch_size: int,
    seed: int,
    progress: bool = True,
    assignments: list | None = None,
    initial: list[Crystal] | None = None,
    start: int | None = None,
) -> list[Crystal | None]:
    """Sample one crystal per (atom count, species or None) request; ``None`` marks a
    sample that is no crystal (collapsed lattice). ``assignments``: one
    :class:`~diffcrystal.spacegroup.WyckoffAssignment` per request to sample on its group;
    ``initial`` and ``start``: one starting structure per request, denoised from timestep
    ``start`` (:meth:`~diffcrystal.generator.Generator.sample`)."""
    out: list[Crystal | None] = []
    batches = range(0, len(requests), batch_size)
    bar = tqdm(total=len(batches) * num_steps, desc="sampling", unit="step", disable=not progress)
    for index, first in enumerate(batches):
        chunk = requests[first : first + batch_size]
        crystals = generator.sample(
            [n for n, _ in chunk],
            [s for _, s in chunk] if generator.mode == "csp" else None,
            num_steps=num_steps,
            generator=batch_generator(seed, index, generator.device),
            progress=lambda _step: bar.update(1),
            assignments=None if assignments is None else assignments[first : first + batch_size],
            initial=None if initial is None else initial[first : first + batch_size],
            start=start,
        )
        out += [c if isinstance(c, Crystal) else None for c in crystals]
    bar.close()
    return out


def evaluate(
    generator: Generator | None,
    test_path: str | Path,
    out_dir: str | Path,
    *,
    k: int = 20,
    n: int = 1000,
    limit: int | None = None,
    offset: int = 0,
    num_steps: int | None = None,
    batch_size: int = 500,
    seed: int = 0,
    workers: int = 2,
    dataset: str | None = None,
    primitive_targets: bool = False,
    baseline: BaselineName | None = None,
    train_data: Sequence[str | Path] = (),
    extra: dict | None = None,
    progress: bool = True,
    cache_dir: str | Path | None = None,
    spacegroup_from_target: bool = False,
    spacegroup_from_analogues: bool = False,
    refine_analogues: int | None = None,
) -> EvaluationRun:
    """Sample (or apply a baseline) and score; write ``metrics.json``, ``metrics.md`` and,
    in CSP, ``rmse_histogram.png`` into ``out_dir``.

    ``generator``: the model (``None`` with a ``baseline``). ``limit``: use only the first
    ``limit`` test structures (CSP) or test references (de novo) after skipping the first
    ``offset``; chunks of one test set scored this way merge with
    :func:`~diffcrystal.metrics.merge_csp_metrics` (``scripts/merge_csp_metrics.py``). ``dataset``: name for the
    coverage cutoffs ('perov_5', 'carbon_24', 'mp_20'). ``primitive_targets``: reduce the
    test structures (and a baseline's training structures) to their primitive cells, so that
    CSP samples that many atoms; by default each keeps its cell as given (DiffCSP's protocol:
    CDVAE files are only Niggli-reduced, which keeps the atom count). ``baseline``: 'prototype'
    or 'train' (:mod:`diffcrystal.baselines`), whose geometry comes from ``train_data`` (one
    or more dataset files); de novo, ``train_data`` gives the unique and novel shares
    (:mod:`~diffcrystal.metrics.novelty`). ``workers``: processes for reading and matching. ``cache_dir``:
    where the test set's de novo fingerprints are cached (default: the data cache folder,
    :func:`~diffcrystal.data.cache.default_cache_dir`).
    ``spacegroup_from_target``: CSP given each target's space group and Wyckoff assignment
    (DiffCSP++'s setting, arXiv:2402.03992), read by spglib at
    :data:`~diffcrystal.symmetry.SYMPREC_TIGHT` (0.01 Å); each of its k samples is drawn in the
    group's conventional cell, kept on the group by
    :class:`~diffcrystal.spacegroup.SpaceGroupConstraint`. A target spglib finds no group
    for is sampled unconstrained (counted in ``metrics.json``).
    ``spacegroup_from_analogues``: the same, but each target's group and Wyckoff assignment
    come from its nearest chemical analogues in ``train_data`` (:mod:`diffcrystal.analogues`;
    the k nearest of distinct structure types, cycled when fewer), so nothing of the target
    but its composition and atom count is used; a target without an analogue of its formula
    type is sampled unconstrained (counted).
    ``refine_analogues``: CSP starting from each target's nearest analogues in ``train_data``
    (the k nearest of distinct structure types, species substituted: the ``analogue``
    baseline's candidates), noised to this timestep and denoised by the model (SDEdit) with
    the stride of the full walk (``num_steps * start / T`` steps); a target without an
    analogue is sampled from the prior (counted).
    """
    if k < 1 or n < 1:
        raise InputError(f"--k and --n must be at least 1 (got k={k}, n={n})")
    if offset < 0 or (limit is not None and limit < 1):
        raise InputError(f"--offset must be >= 0 and --limit >= 1 (got offset={offset}, limit={limit})")
    if baseline is not None:
        if baseline not in BASELINES:
            raise InputError(f"unknown baseline {baseline!r}; choose one of {', '.join(BASELINES)}")
        if not train_data:
            raise InputError(f"--baseline {baseline} needs training structures: pass --train-data PATH")
    elif generator is None:
        raise InputError("evaluate needs a generator or a --baseline")
    elif generator.mode != "csp" and dataset not in COVERAGE_CUTOFFS:
        known = ", ".join(sorted(COVERAGE_CUTOFFS))
        raise InputError(f"de novo coverage needs the dataset's cutoffs: pass --dataset ({known}); got {dataset!r}")
    refining = refine_analogues is not None
    modes = {"--spacegroup-from-target": spacegroup_from_target,
             "--spacegroup-from-analogues": spacegroup_from_analogues, "--refine-analogues": refining}
    chosen = [flag for flag, used in modes.items() if used]
    if len(chosen) > 1:
        raise InputError(f"choose one of {', '.join(modes)}")
    if chosen and (baseline is not None or generator.mode != "csp"):
        raise InputError(f"{chosen[0]} needs a CSP checkpoint (no --baseline)")
    if refining and not 1 <= refine_analogues <= generator.joint.num_timesteps:
        raise InputError(f"--refine-analogues takes a timestep in 1..{generator.joint.num_timesteps}, "
                         f"got {refine_analogues}")
    from_analogues = spacegroup_from_analogues or refining
    if from_analogues and not train_data:
        raise InputError(f"{chosen[0]} needs training structures: pass --train-data PATH")
    check_output_folder(out_dir)
    loaded = read_crystals(test_path, canonical=primitive_targets, workers=workers, progress=progress)
    targets = loaded.crystals[offset : offset + limit if limit else None]
    if not targets:
        raise InputError(f"no test structures in {test_path} after skipping the first {offset}"
                         if offset else f"no test structures in {test_path}")
    csp = baseline is not None or generator.mode == "csp"
    steps = None if baseline else (num_steps or generator.experiment.sampling.num_steps)
    # CSP geometries in the targets' cells; de novo novelty against the canonical cells the model trained on
    train_crystals = [
        crystal
        for path in (train_data if baseline or from_analogues or not csp else ())
        for crystal in read_crystals(path, canonical=primitive_targets or not csp, workers=workers,
                                     progress=progress).crystals
    ]
    library = AnalogueLibrary.from_crystals(train_crystals) if from_analogues else None
    started = time.perf_counter()
    if baseline:
        training = TrainingGeometries.from_crystals(train_crystals)
        predictions = baseline_predictions(baseline, targets, k, training, seed)
    elif csp and (spacegroup_from_target or spacegroup_from_analogues):
        if spacegroup_from_target:
            assignments = [target_assignment(t) for t in targets for _ in range(k)]
        else:
            assignments = [a for t in targets for a in analogue_assignments(t, k, library)]
        requests = [(a.num_atoms, a.atomic_numbers()) for a in assignments]
        samples = generate_for(generator, requests, num_steps=steps, batch_size=batch_size, seed=seed,
                               progress=progress, assignments=assignments)
        predictions = [samples[i * k : (i + 1) * k] for i in range(len(targets))]
    elif csp and refining:
        starts = [analogue_candidates(t, k, library) for t in targets]
        without = [i for i, found in enumerate(starts) if found[0] is None]
        seeded = [c for found in starts if found[0] is not None for c in found]
        refine_steps = max(1, round(steps * refine_analogues / generator.joint.num_timesteps))  # same stride
        refined = iter(generate_for(generator, [(c.num_atoms, c.atomic_numbers.tolist()) for c in seeded],
                                    num_steps=refine_steps, batch_size=batch_size, seed=seed, progress=progress,
                                    initial=seeded, start=refine_analogues))
        unseeded = iter(generate_for(generator, [(targets[i].num_atoms, targets[i].atomic_numbers.tolist())
                                                 for i in without for _ in range(k)],
                                     num_steps=steps, batch_size=batch_size, seed=seed + 1, progress=progress))
        predictions = [[next(unseeded if found[0] is None else refined) for _ in range(k)] for found in starts]
    elif csp:
        requests = [(t.num_atoms, t.atomic_numbers.tolist()) for t in targets for _ in range(k)]
        samples = generate_for(generator, requests, num_steps=steps, batch_size=batch_size, seed=seed, progress=progress)
        predictions = [samples[i * k : (i + 1) * k] for i in range(len(targets))]
    else:
        requests = plan_requests(generator, n, None, [1], seed)
        samples = generate_for(generator, requests, num_steps=steps, batch_size=batch_size, seed=seed, progress=progress)
    elapsed = time.perf_counter() - started
    if csp:
        metrics = csp_metrics(predictions, targets, workers=workers, progress=progress, measure_diversity=True)
    else:
        test_fingerprints = cached_fingerprints(
            targets,
            cache_dir or default_cache_dir(),
            lambda crystals: compute_fingerprints(crystals, workers=workers, progress=progress),
        )
        metrics = denovo_metrics(
            samples, targets, dataset=dataset, test_fingerprints=test_fingerprints, workers=workers,
            progress=progress, train=train_crystals or None,
        )
    method = f"baseline {baseline}" if baseline else "model"
    notes, baseline_record, constraint_record = [], {}, {}
    if spacegroup_from_analogues:
        unconstrained = sum(assignments[i * k].spacegroup == 1 for i in range(len(targets)))
        constraint_record = {"spacegroup_from_analogues": True, "spacegroup_symprec_A": SYMPREC_TIGHT,
                             "analogue_train_data": [str(p) for p in train_data],
                             "num_targets_in_p1": unconstrained}
        notes.append(f"Space group and Wyckoff assignment of each target's nearest chemical analogues in "
                     f"{', '.join(str(p) for p in train_data)} (spglib at {SYMPREC_TIGHT} Å); {unconstrained} of "
                     f"{len(targets)} targets have no analogue or a P1 one and were sampled unconstrained.")
    if refining:
        constraint_record = {"refine_analogues_from_timestep": refine_analogues, "refine_steps": refine_steps,
                             "analogue_train_data": [str(p) for p in train_data],
                             "num_targets_without_analogue": len(without)}
        notes.append(f"Each sample starts from one of the target's nearest chemical analogues in "
                     f"{', '.join(str(p) for p in train_data)} (species substituted), noised to t = "
                     f"{refine_analogues} of {generator.joint.num_timesteps} and denoised by the model; "
                     f"{len(without)} of {len(targets)} targets have no analogue and were sampled from the prior.")
    if spacegroup_from_target:
        unconstrained = sum(target_assignment(t).spacegroup == 1 for t in targets)
        constraint_record = {"spacegroup_from_target": True, "spacegroup_symprec_A": SYMPREC_TIGHT,
                           "num_targets_in_p1": unconstrained}
        notes.append(f"Space group and Wyckoff assignment of each target given (spglib at {SYMPREC_TIGHT} Å); "
                     f"samples drawn in the conventional cell on that group; {unconstrained} of {len(targets)} "
                     "targets are P1 (or have no group) and were sampled unconstrained.")
    if baseline:
        unserved = sum(candidates[0] is None for candidates in predictions)
        baseline_record = {"train_data": [str(p) for p in train_data], "num_targets_without_candidates": unserved}
        notes.append(f"Method: baseline `{baseline}` (no model, see diffcrystal.baselines); geometry from "
                     f"{', '.join(str(p) for p in train_data)}.")
        if baseline == "train":
            notes.append(f"Targets without a training structure of their atom count: {unserved} of {len(targets)}, "
                         "counted unmatched (their candidates are missing).")
    record = {
        "method": method,
        "test_data": str(test_path),
        "num_test_structures": len(targets),
        "test_offset": offset,
        "primitive_targets": primitive_targets,
        "num_target_atoms": sum(t.num_atoms for t in targets),
        "skipped_test_rows": len(loaded.skipped),
        "num_steps": steps,
        "k": k if csp else None,
        "n": n if not csp else None,
        "seed": seed,
        "sampling_seconds": round(elapsed, 1),
        **baseline_record,
        **constraint_record,
        **({"novelty_train_data": [str(p) for p in train_data]} if not csp and train_data else {}),
        **(extra or {}),
    }
    title = f"diffcrystal {metrics.task} metrics ({method})"
    json_path, md_path = write_metrics(metrics, out_dir, extra=record, title=title, notes=notes)
    histogram = write_rmse_histogram(metrics, Path(out_dir) / RMSE_HISTOGRAM_PNG, title=title) if csp else None
    return EvaluationRun(metrics, json_path, md_path, elapsed, histogram)
