"""Sample diversity @k: how many different structures a target's k samples are.

For each target, its present candidates (missing ones, ``None``, are left out) are grouped by
pymatgen ``StructureMatcher(stol, angle_tol, ltol).group_structures`` with the CSP protocol's
tolerances, so two samples are "the same" exactly when the CSP matcher would pair them. The
number of groups is the target's count of distinct samples; the report gives its mean over
targets and that mean divided by k (1.0: all k samples differ; 1/k: all are one structure).
A target with no candidate at all has no count and is left out of the means (and counted),
and so is one whose grouping raised (the error is counted too).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from diffcrystal.data.crystal import Crystal
from diffcrystal.metrics._parallel import DEFAULT_START_METHOD, parallel_map


@dataclass(frozen=True)
class DiversityResult:
    """Distinct samples per target.

    ``k``: samples per target; ``distinct``: per target, the number of distinct structures
    among its present samples, ``None`` when it had none or the grouping failed;
    ``n_errors``: targets whose grouping raised.
    """

    k: int
    distinct: tuple[int | None, ...]
    n_errors: int

    @property
    def counted(self) -> list[int]:
        return [d for d in self.distinct if d is not None]

    @property
    def mean_distinct(self) -> float | None:
        """Mean number of distinct samples over the targets with a count."""
        return float(np.mean(self.counted)) if self.counted else None

    @property
    def mean_distinct_per_k(self) -> float | None:
        """:attr:`mean_distinct` / k, in (0, 1]."""
        mean = self.mean_distinct
        return None if mean is None else mean / self.k

    def summary(self) -> dict[str, Any]:
        return {
            "diversity_mean_distinct": self.mean_distinct,
            "diversity_mean_distinct_per_k": self.mean_distinct_per_k,
            "diversity_n_targets": len(self.counted),
            "diversity_n_targets_without_samples": len(self.distinct) - len(self.counted) - self.n_errors,
            "diversity_n_errors": self.n_errors,
        }

    def table_rows(self) -> list[tuple[str, str, str]]:
        per_k = self.mean_distinct_per_k
        value = "n/a" if per_k is None else f"{per_k:.3f} of k"
        mean = "n/a" if self.mean_distinct is None else f"{self.mean_distinct:.2f}"
        return [
            (
                f"distinct samples @{self.k}",
                value,
                f"mean {mean} distinct of {self.k}, over {len(self.counted)} targets"
                + (f" ({self.n_errors} grouping errors)" if self.n_errors else ""),
            )
        ]


@dataclass(frozen=True)
class _GroupJob:
    candidates: tuple[Crystal, ...]
    stol: float
    angle_tol: float
    ltol: float


def _count_distinct(job: _GroupJob) -> int | None | str:
    """Number of groups among ``job.candidates``; ``None`` when there are none; the error in
    words when the matcher raised (returned, not raised, so one bad target does not stop the
    rest)."""
    if not job.candidates:
        return None
    from pymatgen.analysis.structure_matcher import StructureMatcher

    try:
        matcher = StructureMatcher(stol=job.stol, angle_tol=job.angle_tol, ltol=job.ltol)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return len(matcher.group_structures([c.to_structure() for c in job.candidates]))
    except Exception as error:  # noqa: BLE001 - counted as a grouping error
        return f"{type(error).__name__}: {error}"


def sample_diversity(
    predictions: Sequence[Sequence[Crystal | None]],
    *,
    stol: float,
    angle_tol: float,
    ltol: float,
    workers: int = 2,
    progress: bool = True,
    start_method: str = DEFAULT_START_METHOD,
) -> DiversityResult:
    """Distinct structures among each target's candidates (see the module docstring).

    ``predictions``: per target, its k candidates (``None`` = missing); ``stol`` (in
    (V/N)^(1/3)), ``angle_tol`` (degrees), ``ltol`` (fraction): the matcher's tolerances.
    """
    k = len(predictions[0]) if predictions else 0
    jobs = [
        _GroupJob(tuple(c for c in candidates if c is not None), stol, angle_tol, ltol) for candidates in predictions
    ]
    results = parallel_map(
        _count_distinct, jobs, workers=workers, progress=progress, description="grouping samples",
        start_method=start_method,
    )
    return DiversityResult(
        k=k,
        distinct=tuple(r if isinstance(r, int) else None for r in results),
        n_errors=sum(isinstance(r, str) for r in results),
    )
