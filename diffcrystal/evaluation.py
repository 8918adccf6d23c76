"""``evaluate``: sample with a generator against a test set and score it (CDVAE/DiffCSP protocol).

CSP: for each test structure, ``k`` samples with its composition and atom count, scored by
:func:`~diffcrystal.metrics.csp_metrics` (match rate, RMSE, precise share RMSE < 0.1 / 0.05,
@1 / @k, and sample diversity @k) and drawn as an RMSE histogram. With ``baseline`` the k
candidates come from a trivial rule (:mod:`diffcrystal.baselines`) instead of a model and go
through the same scoring and reports. De novo: ``n`` samples scored by
:func:`~diffcrystal.metrics.denovo_metrics` (validity, coverage, property distances). Sample
noise is seeded per batch, so a rerun gives the same figures. The output folder is checked
for writing before anything is read, sampled or matched.

:func:`evaluate` composes the steps: :func:`check_request`, :func:`read_targets` and
:func:`read_training`, one ``*_candidates`` function per way of producing the candidates
(baseline, plain CSP, on the target's group, on its analogues' groups, refined analogues, de
novo), :func:`score`, and the files.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class Candidates:
    """The structures an evaluation scores and how they were made.

    ``predictions``: CSP, per target its k candidates (``None``: no crystal, or none found); de
    novo, the n samples. ``record``: fields for ``metrics.json``; ``notes``: sentences for
    ``metrics.md``.
    """

    predictions: list
    record: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def check_request(
    generator: Generator | None,
    *,
    k: int,
    n: int,
    offset: int,
    limit: int | None,
    dataset: str | None,
    baseline: BaselineName | None,
    train_data: Sequence[str | Path],
    spacegroup_from_target: bool,
    spacegroup_from_analogues: bool,
    refine_analogues: int | None,
) -> None:
    """Refuse, with a one-line :class:`InputError`, a combination of :func:`evaluate`'s options
    that cannot run, before anything is read or sampled."""
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
    if (spacegroup_from_analogues or refining) and not train_data:
        raise InputError(f"{chosen[0]} needs training structures: pass --train-data PATH")


# ---------------------------------------------------------------------- reading
def read_targets(
    test_path: str | Path, *, offset: int, limit: int | None, primitive: bool, workers: int, progress: bool,
    every: int = 1,
) -> tuple[list[Crystal], int]:
    """Every ``every``-th test structure of ``test_path`` from ``offset`` on, at most ``limit`` of
    them (primitive cells with ``primitive``), and the number of rows of the file that could not
    be read."""
    loaded = read_crystals(test_path, canonical=primitive, workers=workers, progress=progress)
    targets = loaded.crystals[offset::every][:limit]
    if not targets:
        raise InputError(f"no test structures in {test_path} after skipping the first {offset}"
                         if offset else f"no test structures in {test_path}")
    return targets, len(loaded.skipped)


def read_training(paths: Sequence[str | Path], *, canonical: bool, workers: int, progress: bool) -> list[Crystal]:
    """The structures of every dataset file in ``paths``, in order (canonical cells with ``canonical``)."""
    return [
        crystal
        for path in paths
        for crystal in read_crystals(path, canonical=canonical, workers=workers, progress=progress).crystals
    ]


def _sources(paths: Sequence[str | Path]) -> list[str]:
    return [str(p) for p in paths]


def _per_target(samples: list, k: int) -> list[list]:
    return [samples[i : i + k] for i in range(0, len(samples), k)]


# ---------------------------------------------------------------------- candidates
def baseline_candidates(
    baseline: BaselineName, targets: list[Crystal], k: int, train_crystals: list[Crystal],
    train_data: Sequence[str | Path], seed: int,
) -> Candidates:
    """``k`` candidates per target from the rule ``baseline`` (:mod:`diffcrystal.baselines`) on
    the geometries of ``train_crystals`` (read from ``train_data``)."""
    predictions = baseline_predictions(baseline, targets, k, TrainingGeometries.from_crystals(train_crystals), seed)
    unserved = sum(candidates[0] is None for candidates in predictions)
    notes = [f"Method: baseline `{baseline}` (no model, see diffcrystal.baselines); geometry from "
             f"{', '.join(_sources(train_data))}."]
    if baseline == "train":
        notes.append(f"Targets without a training structure of their atom count: {unserved} of {len(targets)}, "
                     "counted unmatched (their candidates are missing).")
    record = {"train_data": _sources(train_data), "num_targets_without_candidates": unserved}
    return Candidates(predictions, record, notes)


def csp_candidates(generator: Generator, targets: list[Crystal], k: int, **sampler) -> Candidates:
    """``k`` samples per target with its species and atom count. ``sampler``: the
    ``num_steps``, ``batch_size``, ``seed`` and ``progress`` of :func:`generate_for`."""
    requests = [(t.num_atoms, t.atomic_numbers.tolist()) for t in targets for _ in range(k)]
    return Candidates(_per_target(generate_for(generator, requests, **sampler), k))


def _group_candidates(generator: Generator, assignments: list, k: int, **sampler) -> list[list]:
    requests = [(a.num_atoms, a.atomic_numbers()) for a in assignments]
    return _per_target(generate_for(generator, requests, assignments=assignments, **sampler), k)


def target_group_candidates(generator: Generator, targets: list[Crystal], k: int, **sampler) -> Candidates:
    """``k`` samples per target on its own space group and Wyckoff assignment
    (:func:`target_assignment`); ``sampler`` as in :func:`csp_candidates`."""
    assignments = [target_assignment(t) for t in targets]
    predictions = _group_candidates(generator, [a for a in assignments for _ in range(k)], k, **sampler)
    unconstrained = sum(a.spacegroup == 1 for a in assignments)
    record = {"spacegroup_from_target": True, "spacegroup_symprec_A": SYMPREC_TIGHT,
              "num_targets_in_p1": unconstrained}
    note = (f"Space group and Wyckoff assignment of each target given (spglib at {SYMPREC_TIGHT} Å); "
            f"samples drawn in the conventional cell on that group; {unconstrained} of {len(targets)} "
            "targets are P1 (or have no group) and were sampled unconstrained.")
    return Candidates(predictions, record, [note])


def analogue_group_candidates(
    generator: Generator, targets: list[Crystal], k: int, library: AnalogueLibrary,
    train_data: Sequence[str | Path], **sampler,
) -> Candidates:
    """``k`` samples per target on the space groups and Wyckoff assignments of its nearest
    analogues in ``library`` (read from ``train_data``; :func:`analogue_assignments`);
    ``sampler`` as in :func:`csp_candidates`."""
    per_target = [analogue_assignments(t, k, library) for t in targets]
    predictions = _group_candidates(generator, [a for found in per_target for a in found], k, **sampler)
    unconstrained = sum(found[0].spacegroup == 1 for found in per_target)
    record = {"spacegroup_from_analogues": True, "spacegroup_symprec_A": SYMPREC_TIGHT,
              "analogue_train_data": _sources(train_data), "num_targets_in_p1": unconstrained}
    note = (f"Space group and Wyckoff assignment of each target's nearest chemical analogues in "
            f"{', '.join(_sources(train_data))} (spglib at {SYMPREC_TIGHT} Å); {unconstrained} of "
            f"{len(targets)} targets have no analogue or a P1 one and were sampled unconstrained.")
    return Candidates(predictions, record, [note])


def refined_analogue_candidates(
    generator: Generator, targets: list[Crystal], k: int, library: AnalogueLibrary,
    train_data: Sequence[str | Path], start: int, *, num_steps: int, batch_size: int, seed: int, progress: bool,
) -> Candidates:
    """``k`` samples per target, each one of its nearest analogues in ``library`` (species
    substituted) noised to timestep ``start`` and denoised in ``num_steps * start / T`` steps
    (the stride of the full walk); a target without an analogue gets ``k`` samples from the
    prior in ``num_steps`` steps, seeded by ``seed + 1``."""
    starts = [analogue_candidates(t, k, library) for t in targets]
    without = [i for i, found in enumerate(starts) if found[0] is None]
    seeded = [c for found in starts if found[0] is not None for c in found]
    num_timesteps = generator.joint.num_timesteps
    refine_steps = max(1, round(num_steps * start / num_timesteps))  # same stride
    refined = iter(generate_for(generator, [(c.num_atoms, c.atomic_numbers.tolist()) for c in seeded],
                                num_steps=refine_steps, batch_size=batch_size, seed=seed, progress=progress,
                                initial=seeded, start=start))
    unseeded = iter(generate_for(generator, [(targets[i].num_atoms, targets[i].atomic_numbers.tolist())
                                             for i in without for _ in range(k)],
                                 num_steps=num_steps, batch_size=batch_size, seed=seed + 1, progress=progress))
    predictions = [[next(unseeded if found[0] is None else refined) for _ in range(k)] for found in starts]
    record = {"refine_analogues_from_timestep": start, "refine_steps": refine_steps,
              "analogue_train_data": _sources(train_data), "num_targets_without_analogue": len(without)}
    note = (f"Each sample starts from one of the target's nearest chemical analogues in "
            f"{', '.join(_sources(train_data))} (species substituted), noised to t = {start} of {num_timesteps} "
            f"and denoised by the model; {len(without)} of {len(targets)} targets have no analogue and were "
            "sampled from the prior.")
    return Candidates(predictions, record, [note])


def denovo_candidates(
    generator: Generator, n: int, *, num_steps: int, batch_size: int, seed: int, progress: bool
) -> Candidates:
    """``n`` de novo samples, atom counts drawn as ``diffcrystal sample`` draws them
    (:func:`~diffcrystal.sampling.plan_requests`); the options as in :func:`generate_for`."""
    requests = plan_requests(generator, n, None, [1], seed)
    return Candidates(generate_for(generator, requests, num_steps=num_steps, batch_size=batch_size, seed=seed,
                                   progress=progress))


# ---------------------------------------------------------------------- scoring
def score(
    candidates: Candidates, targets: list[Crystal], *, csp: bool, dataset: str | None,
    train_crystals: list[Crystal], workers: int, progress: bool, cache_dir: str | Path | None,
):
    """CSP: :func:`~diffcrystal.metrics.csp_metrics` of the candidates against ``targets``, with
    sample diversity. De novo: :func:`~diffcrystal.metrics.denovo_metrics` against ``targets``
    (their fingerprints cached in ``cache_dir``), unique and novel shares against
    ``train_crystals`` when given."""
    if csp:
        return csp_metrics(candidates.predictions, targets, workers=workers, progress=progress, measure_diversity=True)
    test_fingerprints = cached_fingerprints(
        targets,
        cache_dir or default_cache_dir(),
        lambda crystals: compute_fingerprints(crystals, workers=workers, progress=progress),
    )
    return denovo_metrics(
        candidates.predictions, targets, dataset=dataset, test_fingerprints=test_fingerprints, workers=workers,
        progress=progress, train=train_crystals or None,
    )


def evaluate(
    generator: Generator | None,
    test_path: str | Path,
    out_dir: str | Path,
    *,
    k: int = 20,
    n: int = 1000,
    limit: int | None = None,
    offset: int = 0,
    every: int = 1,
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
    :func:`~diffcrystal.metrics.merge_csp_metrics` (``scripts/merge_csp_metrics.py``); ``every``:
    take every ``every``-th test structure from ``offset`` on (the targets of
    ``evaluate --ranked --every``, so baselines run on the same ones). ``dataset``: name for the
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
    check_request(generator, k=k, n=n, offset=offset, limit=limit, dataset=dataset, baseline=baseline,
                  train_data=train_data, spacegroup_from_target=spacegroup_from_target,
                  spacegroup_from_analogues=spacegroup_from_analogues, refine_analogues=refine_analogues)
    check_output_folder(out_dir)
    targets, skipped = read_targets(test_path, offset=offset, limit=limit, every=every, primitive=primitive_targets,
                                    workers=workers, progress=progress)
    csp = baseline is not None or generator.mode == "csp"
    steps = None if baseline else (num_steps or generator.experiment.sampling.num_steps)
    from_analogues = spacegroup_from_analogues or refine_analogues is not None
    # CSP geometries in the targets' cells; de novo novelty against the canonical cells the model trained on
    train_crystals = read_training(train_data if baseline or from_analogues or not csp else (),
                                   canonical=primitive_targets or not csp, workers=workers, progress=progress)
    library = AnalogueLibrary.from_crystals(train_crystals) if from_analogues else None
    sampler = {"num_steps": steps, "batch_size": batch_size, "seed": seed, "progress": progress}
    started = time.perf_counter()
    if baseline:
        candidates = baseline_candidates(baseline, targets, k, train_crystals, train_data, seed)
    elif not csp:
        candidates = denovo_candidates(generator, n, **sampler)
    elif spacegroup_from_target:
        candidates = target_group_candidates(generator, targets, k, **sampler)
    elif spacegroup_from_analogues:
        candidates = analogue_group_candidates(generator, targets, k, library, train_data, **sampler)
    elif refine_analogues is not None:
        candidates = refined_analogue_candidates(generator, targets, k, library, train_data, refine_analogues,
                                                 **sampler)
    else:
        candidates = csp_candidates(generator, targets, k, **sampler)
    elapsed = time.perf_counter() - started
    metrics = score(candidates, targets, csp=csp, dataset=dataset, train_crystals=train_crystals, workers=workers,
                    progress=progress, cache_dir=cache_dir)
    method = f"baseline {baseline}" if baseline else "model"
    record = {
        "method": method,
        "test_data": str(test_path),
        "num_test_structures": len(targets),
        "test_offset": offset,
        "test_every": every,
        "primitive_targets": primitive_targets,
        "num_target_atoms": sum(t.num_atoms for t in targets),
        "skipped_test_rows": skipped,
        "num_steps": steps,
        "k": k if csp else None,
        "n": n if not csp else None,
        "seed": seed,
        "sampling_seconds": round(elapsed, 1),
        **candidates.record,
        **({"novelty_train_data": _sources(train_data)} if not csp and train_data else {}),
        **(extra or {}),
    }
    title = f"diffcrystal {metrics.task} metrics ({method})"
    json_path, md_path = write_metrics(metrics, out_dir, extra=record, title=title, notes=candidates.notes)
    histogram = write_rmse_histogram(metrics, Path(out_dir) / RMSE_HISTOGRAM_PNG, title=title) if csp else None
    return EvaluationRun(metrics, json_path, md_path, elapsed, histogram)
