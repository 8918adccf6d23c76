"""Crystal-structure-prediction (CSP) metrics: match rate and normalised RMSE, @1 and @k.

Protocol (CDVAE ``scripts/compute_metrics.py`` ``RecEval``; DiffCSP ``RecEvalBatch`` for @k):

- every target composition has ``k`` candidate predictions; a candidate is compared with its
  target by pymatgen ``StructureMatcher(stol, angle_tol, ltol)`` (defaults 0.5, 10°, 0.3; every
  other matcher option at pymatgen's default: primitive-cell reduction, volume scaling, no
  supercell search), through ``get_rms_dist(candidate, target)``;
- a candidate that is not structurally valid (:func:`diffcrystal.symmetry.structural_validity`:
  every distance > 0.5 Å, cell volume > 0.1 Å³) counts as a non-match without being compared,
  and so does a missing candidate (``None``, e.g. a failed sample) and a matcher exception;
- **match rate @1** is the fraction of targets whose first candidate matches; **@k** the
  fraction with at least one matching candidate among the k;
- **RMSE** is the matcher's normalised RMS displacement

      rms = sqrt( (1/N) Σ_i |d_i - d̄|² ) / (V/N)^(1/3)

  where ``d_i`` are the Cartesian displacements (Å) between paired sites on the average of the
  two (volume-equalised) lattices, ``d̄`` their mean (the best common origin shift), ``V`` the
  average cell volume and ``N`` the number of sites of the reduced cell; dimensionless. @1
  averages the first candidate's RMS over targets matched @1; @k averages, over targets
  matched @k, the lowest RMS among that target's matching candidates;
- **precise share** @1 / @k: the percentage of *all* targets whose (first / best) matching
  candidate has RMS below each of :data:`PRECISE_RMSE_THRESHOLDS` (0.1 and 0.05). The matcher's
  tolerances are loose (a structure only roughly like the target matches), so the match rate
  alone says little; the precise share says how many targets were actually reproduced;
- **diversity** @k (k > 1): the number of distinct structures among each target's samples
  (:mod:`~diffcrystal.metrics.diversity`), averaged and divided by k.

Differences from the published scripts, on purpose: DiffCSP's ``valid`` flag also requires
SMACT compositional validity of the candidate (and, @1, validity of the target); here only the
candidate's *structural* validity gates the comparison, since in CSP the composition is given.
Our distance test is ``<= 0.5 Å`` invalid (CDVAE: ``< 0.5``) and also counts an atom's
distance to its own periodic images.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from diffcrystal.data.crystal import Crystal
from diffcrystal.metrics._parallel import DEFAULT_START_METHOD, parallel_map
from diffcrystal.metrics.diversity import DiversityResult, sample_diversity
from diffcrystal.symmetry import MIN_DISTANCE_A, structural_validity

MATCHER_STOL = 0.5
"""StructureMatcher site tolerance, in units of (V/N)^(1/3) (CDVAE/DiffCSP protocol)."""

MATCHER_ANGLE_TOL_DEG = 10.0
"""StructureMatcher lattice-angle tolerance in degrees (CDVAE/DiffCSP protocol)."""

MATCHER_LTOL = 0.3
"""StructureMatcher fractional lattice-length tolerance (CDVAE/DiffCSP protocol)."""

PROTOCOL_MAX_VOLUME_PER_ATOM_A3 = math.inf
"""Upper bound on the volume per atom (Å³) used by the metrics' validity test. The published
protocol has none, so the default is ``inf``; pass
:data:`diffcrystal.symmetry.MAX_VOLUME_PER_ATOM_A3` to also reject exploded cells."""

PRECISE_RMSE_THRESHOLDS = (0.1, 0.05)
"""Normalised-RMS thresholds below which a matched target counts as reproduced precisely
(issue 11 of this project; for scale, DiffCSP's published Perov-5 RMSE is 0.076 @1 and 0.013 @20)."""

PairStatus = Literal["match", "no_match", "invalid", "missing", "error"]
"""Outcome of comparing one candidate with its target: ``match`` (the matcher paired them),
``no_match`` (compared, not matched), ``invalid`` (candidate structurally invalid, not
compared), ``missing`` (no candidate, e.g. the sampler failed), ``error`` (the matcher
raised; recorded, counted as a non-match)."""


@dataclass(frozen=True)
class PairResult:
    """One candidate against its target.

    ``rms``: the matcher's normalised RMS displacement (dimensionless), ``max_dist``: the
    largest normalised site displacement; both ``None`` unless ``status == 'match'``.
    ``reason``: why it was invalid, or the matcher's exception, in words.
    """

    status: PairStatus
    rms: float | None = None
    max_dist: float | None = None
    reason: str = ""

    @property
    def matched(self) -> bool:
        return self.status == "match"


@dataclass(frozen=True)
class TargetResult:
    """All ``k`` candidates of one target, in the order given."""

    label: str
    candidates: tuple[PairResult, ...]

    @property
    def matched_at_1(self) -> bool:
        return self.candidates[0].matched

    @property
    def matched_at_k(self) -> bool:
        return any(c.matched for c in self.candidates)

    @property
    def best_index(self) -> int | None:
        """Index of the matching candidate with the lowest RMS (``None`` if none matched)."""
        matched = [(c.rms, i) for i, c in enumerate(self.candidates) if c.matched]
        return min(matched)[1] if matched else None

    @property
    def best_rms(self) -> float | None:
        index = self.best_index
        return None if index is None else self.candidates[index].rms

    @classmethod
    def from_dict(cls, entry: dict[str, Any]) -> "TargetResult":
        """Inverse of :meth:`to_dict` (the derived fields are recomputed, not read)."""
        return cls(
            label=entry["label"],
            candidates=tuple(
                PairResult(c["status"], rms=c["rms"], max_dist=c["max_dist"], reason=c.get("reason", ""))
                for c in entry["candidates"]
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "matched_at_1": self.matched_at_1,
            "matched_at_k": self.matched_at_k,
            "best_index": self.best_index,
            "best_rms": self.best_rms,
            "candidates": [
                {"status": c.status, "rms": c.rms, "max_dist": c.max_dist, "reason": c.reason}
                for c in self.candidates
            ],
        }


CHANGE_COLUMNS = "precise gained / lost | matched gained / lost | RMSE lower / higher"
"""Markdown header cells of :meth:`CSPMetrics.changes_from`'s counts (:func:`change_cells`)."""


def change_cells(changes: dict) -> str:
    """The three Markdown cells of :data:`CHANGE_COLUMNS` for a dict holding
    :meth:`CSPMetrics.changes_from`'s counts; dashes for one without them (the untransformed row)."""
    if "precise_gained" not in changes:
        return "– | – | –"
    return (f"{changes['precise_gained']} / {changes['precise_lost']} | "
            f"{changes['matched_gained']} / {changes['matched_lost']} | "
            f"{changes['rms_lower_of_both_matched']} / {changes['rms_higher_of_both_matched']}")


def _percent(count: int, total: int) -> float | None:
    return 100.0 * count / total if total else None


@dataclass(frozen=True)
class CSPMetrics:
    """CSP match rates and RMSEs with the counts behind them.

    Attributes
    ----------
    n_targets : number of target structures (test compositions).
    k : candidates per target.
    n_matched_at_1, n_matched_at_k : targets matched by the first / by any candidate.
    rmse_at_1, rmse_at_k : mean normalised RMS over matched targets (dimensionless; ``None``
        when nothing matched).
    n_candidates : ``n_targets * k`` pairs; ``n_invalid``, ``n_missing``, ``n_errors`` of them
        counted as non-matches without a successful comparison.
    stol, angle_tol, ltol : the matcher tolerances used.
    per_target : one :class:`TargetResult` per target, in order.
    diversity : distinct samples per target (``None`` when k = 1 or not measured).
    """

    n_targets: int
    k: int
    n_matched_at_1: int
    n_matched_at_k: int
    rmse_at_1: float | None
    rmse_at_k: float | None
    n_candidates: int
    n_invalid: int
    n_missing: int
    n_errors: int
    stol: float
    angle_tol: float
    ltol: float
    per_target: tuple[TargetResult, ...] = field(repr=False)
    diversity: DiversityResult | None = None

    task = "csp"

    @classmethod
    def from_results(
        cls, per_target: Sequence[TargetResult], *, stol: float, angle_tol: float, ltol: float,
        diversity: DiversityResult | None = None,
    ) -> "CSPMetrics":
        """Counts and mean RMSEs of the given per-target results (every target with the same k)."""
        per_target = tuple(per_target)
        if not per_target:
            raise ValueError("no targets to evaluate")
        k = len(per_target[0].candidates)
        if any(len(t.candidates) != k for t in per_target):
            raise ValueError(f"every target needs the same number of candidates (k={k})")
        statuses = [c.status for t in per_target for c in t.candidates]
        return cls(
            n_targets=len(per_target),
            k=k,
            n_matched_at_1=sum(t.matched_at_1 for t in per_target),
            n_matched_at_k=sum(t.matched_at_k for t in per_target),
            rmse_at_1=_mean([t.candidates[0].rms for t in per_target if t.matched_at_1]),
            rmse_at_k=_mean([t.best_rms for t in per_target if t.matched_at_k]),
            n_candidates=len(statuses),
            n_invalid=statuses.count("invalid"),
            n_missing=statuses.count("missing"),
            n_errors=statuses.count("error"),
            stol=stol,
            angle_tol=angle_tol,
            ltol=ltol,
            per_target=per_target,
            diversity=diversity,
        )

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> "CSPMetrics":
        """Rebuild from :meth:`to_dict` output (a ``metrics.json``); summary figures are recomputed
        from the per-target detail."""
        if payload.get("task") != cls.task:
            raise ValueError(f"not CSP metrics (task {payload.get('task')!r})")
        settings = payload["settings"]
        per_target = [TargetResult.from_dict(entry) for entry in payload["per_target"]]
        diversity = None
        if "diversity_per_target" in payload:
            summary = payload["summary"]
            diversity = DiversityResult(summary["k"], tuple(payload["diversity_per_target"]),
                                        summary["diversity_n_errors"])
        return cls.from_results(per_target, stol=settings["stol"], angle_tol=settings["angle_tol_deg"],
                                ltol=settings["ltol"], diversity=diversity)

    def rmse_values(self, at: Literal["1", "k"]) -> list[float]:
        """Normalised RMS of every matched target: of its first candidate (``at='1'``) or its
        best matching one (``at='k'``), in target order."""
        if at == "1":
            return [t.candidates[0].rms for t in self.per_target if t.matched_at_1]
        return [t.best_rms for t in self.per_target if t.matched_at_k]

    def n_precise(self, at: Literal["1", "k"], threshold: float) -> int:
        """Number of targets matched with normalised RMS below ``threshold`` (@1 or @k)."""
        return sum(rms < threshold for rms in self.rmse_values(at))

    def per_sample_rates(self, threshold: float = PRECISE_RMSE_THRESHOLDS[0]) -> dict[str, Any]:
        """Shares (percent) of all candidates that match their target, and with normalised RMS
        below ``threshold`` (the expected @1, with less variance than @1 itself over k draws),
        beside @1 and @k matched and precise, and the invalid count. Needs at least one candidate."""
        rms = self.sample_rms()
        matched = [r for r in rms if r is not None]
        return {
            "n_samples": len(rms),
            "match_per_sample_percent": 100 * len(matched) / len(rms),
            "precise_per_sample_percent": 100 * sum(r < threshold for r in matched) / len(rms),
            "match_at_1_percent": self.match_rate_at_1,
            "precise_at_1_percent": 100 * self.n_precise("1", threshold) / self.n_targets,
            "match_at_k_percent": self.match_rate_at_k,
            "precise_at_k_percent": 100 * self.n_precise("k", threshold) / self.n_targets,
            "n_invalid": self.n_invalid,
        }

    def sample_rms(self) -> list[float | None]:
        """The normalised RMS of every candidate (None: no match), target by target, candidate
        by candidate."""
        return [c.rms for target in self.per_target for c in target.candidates]

    def changes_from(self, before: "CSPMetrics", threshold: float = PRECISE_RMSE_THRESHOLDS[0]) -> dict[str, int]:
        """Candidate by candidate, what changed from ``before`` (the same targets and k, the
        candidates transformed, e.g. symmetrized or relaxed): candidates that became precise
        (RMS below ``threshold``) or matched and the reverse, and of those matched both times,
        how many came nearer their target and how many went farther."""
        after_rms, before_rms = self.sample_rms(), before.sample_rms()
        if len(after_rms) != len(before_rms) or self.n_targets != before.n_targets:
            raise ValueError(f"candidates differ: {len(after_rms)} against {len(before_rms)} before")

        def precise(rms):
            return rms is not None and rms < threshold

        pairs = list(zip(after_rms, before_rms))
        both = [(a, b) for a, b in pairs if a is not None and b is not None]
        return {
            "precise_gained": sum(precise(a) and not precise(b) for a, b in pairs),
            "precise_lost": sum(precise(b) and not precise(a) for a, b in pairs),
            "matched_gained": sum(a is not None and b is None for a, b in pairs),
            "matched_lost": sum(b is not None and a is None for a, b in pairs),
            "rms_lower_of_both_matched": sum(a < b for a, b in both),
            "rms_higher_of_both_matched": sum(a > b for a, b in both),
        }

    @property
    def match_rate_at_1(self) -> float | None:
        """Percentage of targets matched by their first candidate (``None`` if no targets)."""
        return _percent(self.n_matched_at_1, self.n_targets)

    @property
    def match_rate_at_k(self) -> float | None:
        """Percentage of targets matched by at least one of their k candidates."""
        return _percent(self.n_matched_at_k, self.n_targets)

    def summary(self) -> dict[str, Any]:
        """Flat, JSON-ready summary (no per-target detail)."""
        return {
            "n_targets": self.n_targets,
            "k": self.k,
            "n_matched_at_1": self.n_matched_at_1,
            "match_rate_at_1_percent": self.match_rate_at_1,
            "rmse_at_1": self.rmse_at_1,
            "n_matched_at_k": self.n_matched_at_k,
            "match_rate_at_k_percent": self.match_rate_at_k,
            "rmse_at_k": self.rmse_at_k,
            **{
                key: value
                for at in ("1", "k")
                for threshold in PRECISE_RMSE_THRESHOLDS
                for key, value in (
                    (f"n_rmse_below_{threshold}_at_{at}", self.n_precise(at, threshold)),
                    (f"rmse_below_{threshold}_at_{at}_percent", _percent(self.n_precise(at, threshold), self.n_targets)),
                )
            },
            "n_candidates": self.n_candidates,
            "n_invalid": self.n_invalid,
            "n_missing": self.n_missing,
            "n_errors": self.n_errors,
            **(self.diversity.summary() if self.diversity else {}),
        }

    def settings(self) -> dict[str, Any]:
        return {"stol": self.stol, "angle_tol_deg": self.angle_tol, "ltol": self.ltol}

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready: task, summary, settings and per-target detail."""
        return {
            "task": self.task,
            "summary": self.summary(),
            "settings": self.settings(),
            "per_target": [t.to_dict() for t in self.per_target],
            **({"diversity_per_target": list(self.diversity.distinct)} if self.diversity else {}),
        }

    def table_rows(self) -> list[tuple[str, str, str]]:
        """(metric, value, counts) rows for the markdown report."""

        def rate(n: int) -> str:
            pct = _percent(n, self.n_targets)
            return "n/a" if pct is None else f"{pct:.2f} %"

        def rmse(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.4f}"

        def precise(at: Literal["1", "k"], label: str) -> list[tuple[str, str, str]]:
            counts = [(threshold, self.n_precise(at, threshold)) for threshold in PRECISE_RMSE_THRESHOLDS]
            return [(f"RMSE < {t} {label}", rate(n), f"{n} / {self.n_targets} targets") for t, n in counts]

        k = self.k
        at_k = [
            (f"match rate @{k}", rate(self.n_matched_at_k), f"{self.n_matched_at_k} / {self.n_targets} targets"),
            (f"RMSE @{k}", rmse(self.rmse_at_k), f"best of {k}, mean over {self.n_matched_at_k} matched"),
            *precise("k", f"@{k}"),
        ]
        return [
            ("match rate @1", rate(self.n_matched_at_1), f"{self.n_matched_at_1} / {self.n_targets} targets"),
            ("RMSE @1", rmse(self.rmse_at_1), f"mean over {self.n_matched_at_1} matched"),
            *precise("1", "@1"),
            *(at_k if k > 1 else []),
            *(self.diversity.table_rows() if self.diversity else []),
            ("invalid candidates", str(self.n_invalid), f"of {self.n_candidates} (counted as non-matches)"),
            ("missing candidates", str(self.n_missing), f"of {self.n_candidates}"),
            ("matcher errors", str(self.n_errors), f"of {self.n_candidates} (counted as non-matches)"),
        ]


@dataclass(frozen=True)
class PairJob:
    """One candidate and its target with the matcher settings: a picklable work item for
    :func:`compare_pair` in worker processes."""

    candidate: Crystal | None
    target: Crystal
    stol: float
    angle_tol: float
    ltol: float
    min_distance_A: float
    max_volume_per_atom_A3: float


def compare_pair(job: PairJob) -> PairResult:
    """Compare one candidate with its target; never raises (errors become data)."""
    if job.candidate is None:
        return PairResult("missing", reason="no candidate")
    try:
        validity = structural_validity(
            job.candidate,
            min_distance_A=job.min_distance_A,
            max_volume_per_atom_A3=job.max_volume_per_atom_A3,
        )
    except Exception as error:  # noqa: BLE001 - a broken candidate is a non-match, recorded
        return PairResult("invalid", reason=f"validity check failed: {type(error).__name__}: {error}")
    if not validity.valid:
        return PairResult("invalid", reason=validity.reason)
    from pymatgen.analysis.structure_matcher import StructureMatcher

    try:
        matcher = StructureMatcher(stol=job.stol, angle_tol=job.angle_tol, ltol=job.ltol)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = matcher.get_rms_dist(job.candidate.to_structure(), job.target.to_structure())
    except Exception as error:  # noqa: BLE001 - recorded, counted as a non-match
        return PairResult("error", reason=f"{type(error).__name__}: {error}")
    if found is None:
        return PairResult("no_match")
    rms, max_dist = found
    return PairResult("match", rms=float(rms), max_dist=float(max_dist))


def compare_with_target(candidate: Crystal | None, target: Crystal, *, stol: float = MATCHER_STOL,
                        angle_tol: float = MATCHER_ANGLE_TOL_DEG, ltol: float = MATCHER_LTOL,
                        min_distance_A: float = MIN_DISTANCE_A,
                        max_volume_per_atom_A3: float = PROTOCOL_MAX_VOLUME_PER_ATOM_A3) -> PairResult:
    """One candidate against its target with the protocol's matcher (as :func:`csp_metrics`
    compares each pair), in this process; never raises."""
    return compare_pair(PairJob(candidate, target, stol, angle_tol, ltol, min_distance_A, max_volume_per_atom_A3))


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def csp_metrics(
    predictions: Sequence[Sequence[Crystal | None]],
    targets: Sequence[Crystal],
    *,
    stol: float = MATCHER_STOL,
    angle_tol: float = MATCHER_ANGLE_TOL_DEG,
    ltol: float = MATCHER_LTOL,
    workers: int = 2,
    progress: bool = True,
    min_distance_A: float = MIN_DISTANCE_A,
    max_volume_per_atom_A3: float = PROTOCOL_MAX_VOLUME_PER_ATOM_A3,
    start_method: str = DEFAULT_START_METHOD,
    measure_diversity: bool = False,
) -> CSPMetrics:
    """Match rate and normalised RMSE @1 and @k of CSP predictions against their targets.

    Parameters
    ----------
    predictions : ``n_targets`` sequences of ``k`` candidates each (same ``k`` for all); the
        first candidate is the one scored @1. ``None`` marks a missing candidate.
    targets : the ``n_targets`` reference structures, in the same order.
    stol, angle_tol, ltol : StructureMatcher tolerances (site tolerance in (V/N)^(1/3),
        degrees, fraction of length).
    workers : processes comparing pairs in parallel (``<= 1``: in this process).
    progress : show a tqdm progress bar.
    min_distance_A, max_volume_per_atom_A3 : structural-validity thresholds (Å, Å³ per atom).
    start_method : multiprocessing start method of the workers.
    measure_diversity : when k > 1, also count the distinct structures among each target's
        candidates (:func:`~diffcrystal.metrics.diversity.sample_diversity`, same tolerances).

    Returns
    -------
    CSPMetrics
        See the module docstring for the definitions.

    Raises
    ------
    ValueError
        If the lengths disagree, there are no targets, or a target has no candidates or a
        different number of them than the first.
    """
    if len(predictions) != len(targets):
        raise ValueError(
            f"got {len(predictions)} prediction lists for {len(targets)} targets; "
            "give one list of k candidates per target"
        )
    if not targets:
        raise ValueError("no targets to evaluate")
    k = len(predictions[0])
    for index, candidates in enumerate(predictions):
        if len(candidates) == 0 or len(candidates) != k:
            raise ValueError(
                f"target {index} has {len(candidates)} candidates, expected k={k} (>= 1) "
                "for every target; mark failed samples with None"
            )
    jobs = [
        PairJob(candidate, target, stol, angle_tol, ltol, min_distance_A, max_volume_per_atom_A3)
        for candidates, target in zip(predictions, targets)
        for candidate in candidates
    ]
    results = parallel_map(
        compare_pair,
        jobs,
        workers=workers,
        progress=progress,
        description="matching structures",
        start_method=start_method,
    )
    per_target = tuple(
        TargetResult(
            label=target.label or str(index),
            candidates=tuple(results[index * k : (index + 1) * k]),
        )
        for index, target in enumerate(targets)
    )
    diversity = None
    if measure_diversity and k > 1:
        diversity = sample_diversity(
            predictions, stol=stol, angle_tol=angle_tol, ltol=ltol, workers=workers, progress=progress,
            start_method=start_method,
        )
    return CSPMetrics.from_results(per_target, stol=stol, angle_tol=angle_tol, ltol=ltol, diversity=diversity)


def merge_csp_metrics(parts: Sequence[CSPMetrics]) -> CSPMetrics:
    """One :class:`CSPMetrics` over the targets of all ``parts``, in order, as if they had been
    scored together: for an evaluation run in chunks of the test set (``evaluate --offset``).

    The parts must share k and the matcher tolerances. Diversity is kept only when every part
    measured it.
    """
    if not parts:
        raise ValueError("nothing to merge")
    first = parts[0]
    for part in parts[1:]:
        if (part.k, part.stol, part.angle_tol, part.ltol) != (first.k, first.stol, first.angle_tol, first.ltol):
            raise ValueError(
                f"cannot merge k={part.k}, tolerances ({part.stol}, {part.angle_tol}, {part.ltol}) with "
                f"k={first.k}, tolerances ({first.stol}, {first.angle_tol}, {first.ltol})"
            )
    diversity = None
    if all(part.diversity is not None for part in parts):
        diversity = DiversityResult(
            first.k,
            tuple(d for part in parts for d in part.diversity.distinct),
            sum(part.diversity.n_errors for part in parts),
        )
    return CSPMetrics.from_results(
        [t for part in parts for t in part.per_target], stol=first.stol, angle_tol=first.angle_tol,
        ltol=first.ltol, diversity=diversity,
    )
