"""Successive-halving relaxation: spend the potential's calls on candidates that can still win.

Ranking many candidates needs only the best few relaxed to convergence. The funnel relaxes
every candidate for a short stage of FIRE steps, ranks them by their score at that point,
continues the better part for the next stage, and so on; after the last stage the survivors
are relaxed to convergence (``fmax``; the last run gets ``max_steps`` minus the stages' steps). Candidates dropped
on the way are reported with status ``pruned``, their energy at pruning and the stage that
dropped them.

Stage ``s`` (of :attr:`FunnelSettings.stage_steps`) continues each live candidate from where
the previous stage left it, for ``stage_steps[s]`` more steps (a fresh FIRE state; a structure
converged on the way stops there and is never pruned). The live candidates are then ordered by
``energy_per_atom + offset`` (``offset``: a per-candidate penalty in eV/atom that the caller's
ranking score adds, e.g. for a far-fetched chemical analogue; 0 by default) and the best
``max(keep_at_least, ceil(keep_fraction * live))`` continue, and with them any candidate within
``margin`` eV/atom of the last one kept (a candidate that close after a few steps can still
overtake it). With ``keep_fraction`` 1 nothing is pruned and the funnel equals a plain
relaxation cut into pieces; :attr:`FunnelReport.stages` then holds what every candidate did in
every stage, from which any stricter funnel on the same stages can be replayed exactly
(:func:`replay_funnel`): a stage's outcome depends only on its own input structure.

With a pre-relaxing student (``RelaxSettings.prerelax``) every candidate is relaxed by it once,
before the first stage; the stages and the last run are the main potential's alone.

Every stage goes through :func:`~diffcrystal.potential.relax_cache.relax_cached`, keyed on the
stage's input structure and step budget, so an interrupted funnel resumes from its last
finished stage (``diffcrystal predict --resume``) and a repeated one costs nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

from diffcrystal.errors import InputError
from diffcrystal.potential.calculators import Potential, resolve_potential
from diffcrystal.data.crystal import Crystal
from diffcrystal.potential.relax import DEFAULT_WORKERS, relax_many
from diffcrystal.potential.results import RelaxResult, RelaxSettings

DEFAULT_STAGE_STEPS = (10, 20)
"""FIRE steps of the pruning stages (each continuing the last): measured on MP-20 validation
targets in docs/benchmarks.md, "Relaxation funnel"."""

DEFAULT_KEEP_FRACTION = 0.5
"""Share of the live candidates each stage keeps (successive halving)."""

DEFAULT_KEEP_AT_LEAST = 5
"""Candidates always kept through every stage and relaxed to convergence (the top K)."""

DEFAULT_MARGIN_EV_ATOM = 0.05
"""Candidates this close (eV/atom, with offsets) to the last one a stage keeps continue too.
With top K 5 and templates at their predicted volume: no miss on 40 MP-20 validation targets
at 0.64 of the potential steps of keeping everything (docs/benchmarks.md, "The funnel replayed")."""


@dataclass(frozen=True)
class FunnelSettings:
    """``stage_steps``: FIRE steps of each pruning stage; ``keep_fraction`` (0, 1]: share of
    the live candidates a stage keeps; ``keep_at_least``: never fewer than this many continue;
    ``margin`` (eV/atom): candidates within it of the last one kept continue as well."""

    stage_steps: tuple[int, ...] = DEFAULT_STAGE_STEPS
    keep_fraction: float = DEFAULT_KEEP_FRACTION
    keep_at_least: int = DEFAULT_KEEP_AT_LEAST
    margin: float = DEFAULT_MARGIN_EV_ATOM

    def __post_init__(self) -> None:
        object.__setattr__(self, "stage_steps", tuple(int(s) for s in self.stage_steps))
        if any(s < 1 for s in self.stage_steps):
            raise InputError(f"funnel stages need at least 1 step each, got {list(self.stage_steps)}")
        if not 0 < self.keep_fraction <= 1:
            raise InputError(f"the funnel's keep fraction must be in (0, 1], got {self.keep_fraction}")
        if self.keep_at_least < 1:
            raise InputError(f"the funnel must keep at least 1 candidate, got {self.keep_at_least}")
        if not (self.margin >= 0 and math.isfinite(self.margin)):
            raise InputError(f"the funnel's margin must be >= 0 eV/atom, got {self.margin}")


@dataclass(frozen=True)
class StageRecord:
    """Where one candidate stood after one funnel stage: ``energy_per_atom`` (eV/atom, no
    offset), relaxation ``status`` and ``steps`` spent since the start."""

    energy_per_atom: float
    status: str
    steps: int


@dataclass
class FunnelReport:
    """Per candidate the final :class:`RelaxResult` (``pruned`` ones carry their energy at
    pruning) and its :class:`StageRecord` after each stage it ran (``stages``), and the number
    of potential steps the funnel spent (``steps_total``) against what relaxing everything to
    the end would have needed at most (``steps_cap``)."""

    results: list[RelaxResult]
    steps_total: int
    steps_cap: int
    stages: list[list[StageRecord]]


def stage_survivors(scores: dict[int, float], settings: FunnelSettings) -> list[int]:
    """Keys of ``scores`` (``energy_per_atom + offset`` of each live candidate, eV/atom) that
    continue, best first: the finite ones ranked ``max(keep_at_least, ceil(keep_fraction * n))``
    or better, and any within ``margin`` of the last of those."""
    finite = sorted((i for i, s in scores.items() if math.isfinite(s)), key=lambda i: (scores[i], i))
    keep = max(settings.keep_at_least, math.ceil(settings.keep_fraction * len(finite)))
    if keep >= len(finite):
        return finite
    cut = scores[finite[keep - 1]] + settings.margin
    return finite[:keep] + [i for i in finite[keep:] if scores[i] <= cut]


def relax_funnel(items: Sequence[tuple[str, object]], potential: str | Potential, settings: RelaxSettings = RelaxSettings(),
                 funnel: FunnelSettings = FunnelSettings(), offsets: Sequence[float] | None = None,
                 workers: int = DEFAULT_WORKERS, progress: bool = True, device: str = "cpu",
                 cache_dir=None) -> FunnelReport:
    """Relax ``(label, Atoms | Crystal)`` pairs through the funnel (module docstring); one result
    per item in input order. ``settings``: the final ``fmax`` and the total step cap
    ``max_steps``; ``offsets``: per-item score penalties in eV/atom (None: 0); ``potential``:
    a name or a resolved :class:`Potential` (loaded once for every stage)."""
    from ase import Atoms

    from diffcrystal.potential.relax_cache import relax_cached

    offsets = [0.0] * len(items) if offsets is None else list(offsets)
    if len(offsets) != len(items):
        raise InputError(f"{len(offsets)} funnel offsets for {len(items)} candidates")
    staged = sum(funnel.stage_steps)
    if settings.max_steps <= staged:
        raise InputError(f"the step cap ({settings.max_steps}) must exceed the funnel's stages "
                         f"({'+'.join(map(str, funnel.stage_steps))} = {staged} steps)")
    current: list[tuple[str, object]] = [(label, item.to_atoms() if isinstance(item, Crystal) else item)
                                         for label, item in items]
    results: list[RelaxResult | None] = [None] * len(items)
    used = [0] * len(items)
    stages: list[list[StageRecord]] = [[] for _ in items]
    live = list(range(len(items)))
    steps_total = 0
    potential = resolve_potential(potential, device)

    def run(indices: list[int], max_steps: int) -> list[RelaxResult]:
        nonlocal steps_total
        done, _ = relax_cached([current[i] for i in indices], potential, replace(settings, max_steps=max_steps),
                               workers=workers, progress=progress, device=device, cache_dir=cache_dir)
        for i, result in zip(indices, done):
            steps_total += result.steps
            used[i] += result.steps
            result.steps = used[i]
            results[i] = result
            stages[i].append(StageRecord(result.energy_per_atom, result.status, used[i]))
        return done

    unreadable = [i for i, (_, item) in enumerate(current) if not isinstance(item, Atoms)]
    if unreadable:  # e.g. a CIF that did not parse: its failed result says why
        for i, result in zip(unreadable, relax_many([current[i] for i in unreadable], potential, settings,
                                                    workers=1, progress=False)):
            results[i] = result
        live = [i for i in live if i not in set(unreadable)]
    prerelaxed: dict[int, RelaxResult] = {}
    if settings.prerelax is not None and live:
        student = resolve_potential(settings.prerelax, device)
        settings = replace(settings, prerelax=None)  # what run() relaxes with from here on
        done, _ = relax_cached([current[i] for i in live], student, settings, workers=workers,
                               progress=progress, device=device, cache_dir=cache_dir)
        for i, result in zip(live, done):
            prerelaxed[i] = result
            if result.atoms is not None:
                current[i] = (current[i][0], result.atoms)
    for stage, steps in enumerate(funnel.stage_steps):
        if not live:
            break
        still_running = []
        for i, result in zip(live, run(live, steps)):
            if result.status == "not_converged" and result.atoms is not None:
                current[i] = (current[i][0], result.atoms)
                still_running.append(i)
        scores = {i: results[i].energy_per_atom + offsets[i] for i in still_running}
        kept = set(stage_survivors(scores, funnel))
        cut = max((scores[i] for i in kept), default=math.nan)
        for i in still_running:
            if i not in kept:
                result = results[i]
                result.status = "pruned"
                result.reason = (f"pruned after stage {stage + 1} of {len(funnel.stage_steps)} ({used[i]} steps): "
                                 f"{result.energy_per_atom + offsets[i]:.4f} eV/atom with its offset, "
                                 f"outside the best {len(kept)} of {len(still_running)} (cut at {cut:.4f})")
        live = [i for i in still_running if i in kept]
    if live:
        run(live, settings.max_steps - staged)
        for i in live:  # the last run is the relaxation to the end, not a stage
            stages[i].pop()
    for i, done in prerelaxed.items():
        results[i].prerelax_status, results[i].prerelax_steps = done.status, done.steps
    return FunnelReport(results, steps_total, settings.max_steps * len(items), stages)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Replay:
    """A funnel replayed on recorded stages: per candidate the stage that pruned it (0-based;
    None: relaxed to the end) and the potential steps spent on it (``steps``: a pruned one's up
    to its pruning, the others' from the recording)."""

    pruned_at: list[int | None]
    steps: list[int]


def replay_funnel(stages: Sequence[Sequence[StageRecord]], final_steps: Sequence[int], offsets: Sequence[float],
                  settings: FunnelSettings) -> Replay:
    """What ``settings`` would have pruned, from the ``stages`` of a keep-everything funnel
    (``keep_fraction`` 1) on the same ``stage_steps``, with each candidate's ``final_steps``
    and score ``offsets`` (eV/atom). Exact, since a stage's outcome depends only on its input."""
    if not len(stages) == len(final_steps) == len(offsets):
        raise InputError(f"{len(stages)} recorded candidates, {len(final_steps)} step counts, {len(offsets)} offsets")
    pruned_at: list[int | None] = [None] * len(stages)
    live = [i for i, recorded in enumerate(stages) if recorded]
    for stage in range(len(settings.stage_steps)):
        still_running = [i for i in live if len(stages[i]) > stage and stages[i][stage].status == "not_converged"]
        kept = set(stage_survivors({i: stages[i][stage].energy_per_atom + offsets[i] for i in still_running}, settings))
        for i in still_running:
            if i not in kept:
                pruned_at[i] = stage
        live = [i for i in still_running if i in kept]
    steps = [int(total) if at is None else stages[i][at].steps
             for i, (at, total) in enumerate(zip(pruned_at, final_steps))]
    return Replay(pruned_at, steps)

