"""De novo generation metrics: validity, coverage (COV-R / COV-P), property distances.

Protocol of CDVAE (``scripts/compute_metrics.py`` ``GenEval``, ``scripts/eval_utils.py``), also
used by DiffCSP, FlowMM and MatterGen's benchmarks:

- **Structural validity**: every interatomic distance > 0.5 Å and cell volume > 0.1 Å³
  (:func:`diffcrystal.symmetry.structural_validity`; no upper volume bound by default).
- **Compositional validity** (:func:`~diffcrystal.charge_neutrality.smact_validity`, the exact rule is in its docstring):
  SMACT charge neutrality with the Pauling electronegativity test.
- A generated crystal is **valid** when both hold. Percentages are over all generated
  crystals (a missing one, ``None``, is invalid).
- **Coverage** (:func:`coverage`), over every generated crystal whose fingerprints could be
  computed (valid or not, as in CDVAE): with ``D_s`` / ``D_c`` the Euclidean distances between
  structure / standardised composition fingerprints (:mod:`diffcrystal.metrics.fingerprints`),
  COV-R is the fraction of *test* crystals whose nearest generated structure fingerprint is
  within the structure cutoff *and* whose nearest generated composition fingerprint is within
  the composition cutoff (the two nearest may be different crystals, exactly as CDVAE
  computes it); COV-P the same from the generated side, over *all* generated crystals
  (fingerprinted or not) as denominator. Cutoffs per dataset: :data:`COVERAGE_CUTOFFS`.
- **Property distances**: 1-D Wasserstein (earth mover's) distances between the density
  (g/cm³) and the number of distinct elements of valid generated crystals (a random subset of
  :data:`N_PROPERTY_SAMPLES` when there are more) and of all test crystals.
- **Unique and novel** shares of the valid generated crystals, when training crystals are
  given (:mod:`diffcrystal.metrics.novelty`; not part of CDVAE's protocol).

Differences from CDVAE, on purpose: CDVAE also calls a crystal invalid when its CrystalNN
fingerprint fails; here that is counted separately (``n_fingerprint_failed``). CDVAE stops
when fewer than 1000 generated crystals are valid; here all valid ones are used and their
number is reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.spatial.distance import cdist
from scipy.stats import wasserstein_distance

from diffcrystal.charge_neutrality import smact_validity
from diffcrystal.data.crystal import Crystal
from diffcrystal.metrics.novelty import NoveltyResult, uniqueness_and_novelty
from diffcrystal.metrics._parallel import DEFAULT_START_METHOD, parallel_map
from diffcrystal.metrics.csp import PROTOCOL_MAX_VOLUME_PER_ATOM_A3
from diffcrystal.metrics.fingerprints import Fingerprints, fingerprint_or_error, stack_fingerprints
from diffcrystal.symmetry import MIN_DISTANCE_A, structural_validity


@dataclass(frozen=True)
class CoverageCutoffs:
    """Coverage thresholds: ``structure`` on the structure-fingerprint distance, ``composition``
    on the standardised composition-fingerprint distance (both dimensionless)."""

    structure: float
    composition: float


COVERAGE_CUTOFFS: dict[str, CoverageCutoffs] = {
    "perov_5": CoverageCutoffs(structure=0.2, composition=4.0),
    "carbon_24": CoverageCutoffs(structure=0.2, composition=4.0),
    "mp_20": CoverageCutoffs(structure=0.4, composition=10.0),
}
"""Coverage cutoffs per dataset (CDVAE ``COV_Cutoffs``: ``perovskite``, ``carbon``, ``mp20``),
keyed by the dataset folder names of ``../shared/data`` and the CDVAE/DiffCSP ``data/`` tree."""

N_PROPERTY_SAMPLES = 1000
"""Valid generated crystals drawn (without replacement) for the Wasserstein distances
(CDVAE ``GenEval(n_samples=1000)``)."""


def cutoffs_for(dataset: str) -> CoverageCutoffs:
    """The coverage cutoffs of ``dataset``; ``ValueError`` listing the known names otherwise."""
    try:
        return COVERAGE_CUTOFFS[dataset]
    except KeyError:
        known = ", ".join(sorted(COVERAGE_CUTOFFS))
        raise ValueError(
            f"no coverage cutoffs for dataset {dataset!r}; known: {known} "
            "(or pass struct_cutoff and comp_cutoff explicitly)"
        ) from None


# --------------------------------------------------------------------------- coverage


def _percent(count: int, total: int) -> float | None:
    return 100.0 * count / total if total else None


@dataclass(frozen=True)
class CoverageResult:
    """COV-R / COV-P with their counts and the mean minimum distances (AMSD/AMCD).

    ``n_recalled`` of ``n_test`` test crystals are covered by the generated set, ``n_precise``
    of ``n_generated`` generated crystals by the test set (only ``n_generated_fingerprinted``
    of them could be compared). AMSD / AMCD: mean over the crystals of the minimum structure
    / composition fingerprint distance to the other set (recall: over test crystals).
    """

    n_test: int
    n_recalled: int
    n_generated: int
    n_generated_fingerprinted: int
    n_precise: int
    struct_cutoff: float
    comp_cutoff: float
    amsd_recall: float | None
    amsd_precision: float | None
    amcd_recall: float | None
    amcd_precision: float | None

    @property
    def cov_recall(self) -> float | None:
        """COV-R in percent."""
        return _percent(self.n_recalled, self.n_test)

    @property
    def cov_precision(self) -> float | None:
        """COV-P in percent."""
        return _percent(self.n_precise, self.n_generated)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cov_recall_percent": self.cov_recall,
            "n_recalled": self.n_recalled,
            "n_test": self.n_test,
            "cov_precision_percent": self.cov_precision,
            "n_precise": self.n_precise,
            "n_generated": self.n_generated,
            "n_generated_fingerprinted": self.n_generated_fingerprinted,
            "struct_cutoff": self.struct_cutoff,
            "comp_cutoff": self.comp_cutoff,
            "amsd_recall": self.amsd_recall,
            "amsd_precision": self.amsd_precision,
            "amcd_recall": self.amcd_recall,
            "amcd_precision": self.amcd_precision,
        }


def coverage(
    gen_struct_fps: np.ndarray,
    gen_comp_fps: np.ndarray,
    test_struct_fps: np.ndarray,
    test_comp_fps: np.ndarray,
    *,
    struct_cutoff: float,
    comp_cutoff: float,
    n_generated: int | None = None,
) -> CoverageResult:
    """COV-R and COV-P (CDVAE ``compute_cov``) from fingerprint arrays.

    Parameters
    ----------
    gen_struct_fps, gen_comp_fps : (G, Ds), (G, Dc) fingerprints of the generated crystals that
        have them (composition ones already standardised).
    test_struct_fps, test_comp_fps : (T, Ds), (T, Dc) the same for the test crystals.
    struct_cutoff, comp_cutoff : a crystal is covered when its minimum structure distance to
        the other set is ``<= struct_cutoff`` and its minimum composition distance ``<=
        comp_cutoff`` (minima taken separately, as CDVAE does).
    n_generated : COV-P denominator: all generated crystals, fingerprinted or not
        (default ``G``).

    >>> fp = np.eye(3)
    >>> coverage(fp, fp, fp, fp, struct_cutoff=0.1, comp_cutoff=0.1).cov_recall
    100.0
    """
    gs = np.asarray(gen_struct_fps, dtype=np.float64)
    gc = np.asarray(gen_comp_fps, dtype=np.float64)
    ts = np.asarray(test_struct_fps, dtype=np.float64)
    tc = np.asarray(test_comp_fps, dtype=np.float64)
    if gs.shape[0] != gc.shape[0] or ts.shape[0] != tc.shape[0]:
        raise ValueError("structure and composition fingerprints must have the same rows")
    n_gen = gs.shape[0] if n_generated is None else n_generated
    if n_gen < gs.shape[0]:
        raise ValueError(f"n_generated={n_gen} is below the {gs.shape[0]} fingerprinted crystals")
    if gs.shape[0] == 0 or ts.shape[0] == 0:
        return CoverageResult(
            ts.shape[0], 0, n_gen, gs.shape[0], 0, struct_cutoff, comp_cutoff, None, None, None, None
        )
    struct_dist = cdist(gs, ts)  # (G, T)
    comp_dist = cdist(gc, tc)  # (G, T)
    # CDVAE tests the two *minimum* distances separately (nearest in structure, nearest in
    # composition, possibly different partners); we follow it exactly.
    s_recall, s_precision = struct_dist.min(axis=0), struct_dist.min(axis=1)
    c_recall, c_precision = comp_dist.min(axis=0), comp_dist.min(axis=1)
    recalled = (s_recall <= struct_cutoff) & (c_recall <= comp_cutoff)
    precise = (s_precision <= struct_cutoff) & (c_precision <= comp_cutoff)
    return CoverageResult(
        n_test=ts.shape[0],
        n_recalled=int(recalled.sum()),
        n_generated=n_gen,
        n_generated_fingerprinted=gs.shape[0],
        n_precise=int(precise.sum()),
        struct_cutoff=struct_cutoff,
        comp_cutoff=comp_cutoff,
        amsd_recall=float(s_recall.mean()),
        amsd_precision=float(s_precision.mean()),
        amcd_recall=float(c_recall.mean()),
        amcd_precision=float(c_precision.mean()),
    )


# --------------------------------------------------------------------------- per crystal


@dataclass(frozen=True)
class CrystalRecord:
    """What the de novo metrics know about one crystal: validity (with the structural
    ``reason`` when invalid), density in g/cm³ and number of distinct elements (``None`` for a
    missing crystal) and whether its fingerprints were computed (``fingerprint_error`` if not)."""

    struct_valid: bool
    comp_valid: bool
    reason: str
    density_g_cm3: float | None
    n_elements: int | None
    fingerprint_error: str = ""

    @property
    def valid(self) -> bool:
        return self.struct_valid and self.comp_valid

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "struct_valid": self.struct_valid,
            "comp_valid": self.comp_valid,
            "reason": self.reason,
            "density_g_cm3": self.density_g_cm3,
            "n_elements": self.n_elements,
            "fingerprint_error": self.fingerprint_error,
        }


@dataclass(frozen=True)
class _Job:
    crystal: Crystal | None
    fingerprint: bool
    min_distance_A: float
    max_volume_per_atom_A3: float


def _analyse(job: _Job):
    """(CrystalRecord, fingerprint_or_error result or None); never raises on bad structures."""
    crystal = job.crystal
    if crystal is None:
        record = CrystalRecord(False, False, "no structure", None, None)
        return record, ((None, None, "no structure") if job.fingerprint else None)
    try:
        validity = structural_validity(
            crystal, min_distance_A=job.min_distance_A, max_volume_per_atom_A3=job.max_volume_per_atom_A3
        )
        struct_valid, reason = validity.valid, validity.reason
    except Exception as error:  # noqa: BLE001 - recorded as invalid
        struct_valid, reason = False, f"validity check failed: {type(error).__name__}: {error}"
    try:
        comp_valid = smact_validity(crystal.atomic_numbers)
        comp_reason = "" if comp_valid else "composition fails SMACT"
    except Exception as error:  # noqa: BLE001 - e.g. an element SMACT has no data for
        comp_valid, comp_reason = False, f"SMACT check failed: {type(error).__name__}: {error}"
    if comp_reason:
        reason = (reason + "; " if reason else "") + comp_reason
    density = float(crystal.to_structure().density)
    n_elements = int(np.unique(crystal.atomic_numbers).size)
    fp = fingerprint_or_error(crystal) if job.fingerprint else None
    record = CrystalRecord(struct_valid, comp_valid, reason, density, n_elements, fp[2] if fp else "")
    return record, fp


def _analyse_all(crystals, *, fingerprint, workers, progress, description, start_method, **validity):
    jobs = [_Job(c, fingerprint, **validity) for c in crystals]
    out = parallel_map(
        _analyse, jobs, workers=workers, progress=progress, description=description, start_method=start_method
    )
    records = tuple(r for r, _ in out)
    fps = stack_fingerprints([f for _, f in out]) if fingerprint else None
    return records, fps


# --------------------------------------------------------------------------- de novo


@dataclass(frozen=True)
class DeNovoMetrics:
    """De novo metrics with the counts behind every percentage.

    Attributes
    ----------
    n_generated : generated crystals (missing ones included).
    n_struct_valid, n_comp_valid, n_valid : of them, structurally / compositionally / both
        valid.
    n_fingerprint_failed : generated crystals without fingerprints (not in coverage).
    coverage : :class:`CoverageResult`, or ``None`` when coverage was not computed.
    wdist_density : Wasserstein distance of densities (g/cm³) between ``n_property_generated``
        valid generated crystals and ``n_property_test`` test crystals; ``None`` when either
        set is empty. ``wdist_num_elems`` : the same for the number of distinct elements.
    dataset : name whose coverage cutoffs were used (``None`` if given explicitly).
    per_structure : one :class:`CrystalRecord` per generated crystal, in order.
    """

    n_generated: int
    n_struct_valid: int
    n_comp_valid: int
    n_valid: int
    n_fingerprint_failed: int
    coverage: CoverageResult | None
    wdist_density: float | None
    wdist_num_elems: float | None
    n_property_generated: int
    n_property_test: int
    dataset: str | None
    per_structure: tuple[CrystalRecord, ...] = field(repr=False)
    novelty: NoveltyResult | None = None
    """Unique and novel counts of the valid generated crystals (``None``: no training data)."""

    task = "denovo"

    @property
    def struct_validity(self) -> float | None:
        """Structural validity in percent."""
        return _percent(self.n_struct_valid, self.n_generated)

    @property
    def comp_validity(self) -> float | None:
        """Compositional validity in percent."""
        return _percent(self.n_comp_valid, self.n_generated)

    @property
    def validity(self) -> float | None:
        """Both valid, in percent."""
        return _percent(self.n_valid, self.n_generated)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "n_generated": self.n_generated,
            "n_struct_valid": self.n_struct_valid,
            "struct_validity_percent": self.struct_validity,
            "n_comp_valid": self.n_comp_valid,
            "comp_validity_percent": self.comp_validity,
            "n_valid": self.n_valid,
            "validity_percent": self.validity,
            "n_fingerprint_failed": self.n_fingerprint_failed,
            "wdist_density": self.wdist_density,
            "wdist_num_elems": self.wdist_num_elems,
            "n_property_generated": self.n_property_generated,
            "n_property_test": self.n_property_test,
        }
        if self.coverage is not None:
            out.update(self.coverage.to_dict())
        if self.novelty is not None:
            out.update(self.novelty.to_dict())
        return out

    def settings(self) -> dict[str, Any]:
        return {"dataset": self.dataset}

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "summary": self.summary(),
            "settings": self.settings(),
            "per_structure": [r.to_dict() for r in self.per_structure],
        }

    def table_rows(self) -> list[tuple[str, str, str]]:
        def pct(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.2f} %"

        def num(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.4f}"

        n = self.n_generated
        rows = [
            ("structural validity", pct(self.struct_validity), f"{self.n_struct_valid} / {n} generated"),
            ("compositional validity", pct(self.comp_validity), f"{self.n_comp_valid} / {n} generated"),
            ("validity (both)", pct(self.validity), f"{self.n_valid} / {n} generated"),
        ]
        cov = self.coverage
        if cov is not None:
            cut = f"cutoffs struct {cov.struct_cutoff:g}, comp {cov.comp_cutoff:g}"
            rows += [
                ("COV-R", pct(cov.cov_recall), f"{cov.n_recalled} / {cov.n_test} test; {cut}"),
                (
                    "COV-P",
                    pct(cov.cov_precision),
                    f"{cov.n_precise} / {cov.n_generated} generated "
                    f"({cov.n_generated_fingerprinted} fingerprinted); {cut}",
                ),
            ]
        sets = f"{self.n_property_generated} valid generated vs {self.n_property_test} test"
        rows += [
            ("Wasserstein density (g/cm³)", num(self.wdist_density), sets),
            ("Wasserstein #elements", num(self.wdist_num_elems), sets),
        ]
        nov = self.novelty
        if nov is not None:
            among = f"of {nov.n_considered} valid generated"
            rows += [
                ("unique", pct(nov.percent(nov.n_unique)), f"{nov.n_unique} distinct {among}"),
                ("novel", pct(nov.percent(nov.n_novel)), f"{nov.n_novel} {among}; none of {nov.n_train} training crystals matches"),
                ("unique and novel", pct(nov.percent(nov.n_unique_and_novel)), f"{nov.n_unique_and_novel} {among}"),
            ]
        return rows


def wasserstein(a: Sequence[float], b: Sequence[float]) -> float | None:
    """1-D Wasserstein distance between the empirical distributions of ``a`` and ``b``
    (scipy), in the unit of the values; ``None`` when either is empty."""
    if len(a) == 0 or len(b) == 0:
        return None
    return float(wasserstein_distance(np.asarray(a, float), np.asarray(b, float)))


def denovo_metrics(
    generated: Sequence[Crystal | None],
    test: Sequence[Crystal],
    *,
    dataset: str | None = None,
    struct_cutoff: float | None = None,
    comp_cutoff: float | None = None,
    compute_coverage: bool = True,
    test_fingerprints: Fingerprints | None = None,
    n_property_samples: int | None = N_PROPERTY_SAMPLES,
    seed: int = 0,
    workers: int = 2,
    progress: bool = True,
    min_distance_A: float = MIN_DISTANCE_A,
    max_volume_per_atom_A3: float = PROTOCOL_MAX_VOLUME_PER_ATOM_A3,
    start_method: str = DEFAULT_START_METHOD,
    train: Sequence[Crystal] | None = None,
) -> DeNovoMetrics:
    """Validity, coverage and property Wasserstein distances of generated crystals.

    Parameters
    ----------
    generated : generated crystals; ``None`` marks a failed sample (invalid).
    test : the reference (test-split) crystals.
    dataset : key of :data:`COVERAGE_CUTOFFS` giving the cutoffs; ``struct_cutoff`` /
        ``comp_cutoff`` override it. Coverage needs cutoffs from one or the other.
    compute_coverage : compute fingerprints and COV-R / COV-P (needs matminer).
    test_fingerprints : precomputed :func:`compute_fingerprints` of ``test`` (a cache).
    n_property_samples : draw at most this many valid generated crystals (seeded by ``seed``)
        for the Wasserstein distances; ``None``: all of them.
    workers, progress, start_method : parallelism and progress bar.
    train : training crystals; when given, the unique and novel shares of the valid generated
        crystals (:mod:`diffcrystal.metrics.novelty`).
    min_distance_A, max_volume_per_atom_A3 : structural-validity thresholds (Å, Å³/atom).
    """
    if not test:
        raise ValueError("no test crystals to compare with")
    if compute_coverage:
        base = cutoffs_for(dataset) if dataset is not None else None
        s_cut = struct_cutoff if struct_cutoff is not None else (base.structure if base else None)
        c_cut = comp_cutoff if comp_cutoff is not None else (base.composition if base else None)
        if s_cut is None or c_cut is None:
            raise ValueError(
                "coverage needs cutoffs: pass dataset= (one of "
                f"{', '.join(sorted(COVERAGE_CUTOFFS))}) or struct_cutoff= and comp_cutoff="
            )
    if test_fingerprints is not None and len(test_fingerprints) != len(test):
        raise ValueError(
            f"test_fingerprints has {len(test_fingerprints)} rows for {len(test)} test crystals"
        )
    validity = {"min_distance_A": min_distance_A, "max_volume_per_atom_A3": max_volume_per_atom_A3}
    common = {"workers": workers, "progress": progress, "start_method": start_method}
    records, gen_fps = _analyse_all(
        generated, fingerprint=compute_coverage, description="generated crystals", **common, **validity
    )
    need_test_fps = compute_coverage and test_fingerprints is None
    test_records, test_fps = _analyse_all(
        test, fingerprint=need_test_fps, description="test crystals", **common, **validity
    )
    if compute_coverage and test_fingerprints is not None:
        test_fps = test_fingerprints

    cov = None
    n_fp_failed = 0
    if compute_coverage:
        assert gen_fps is not None and test_fps is not None
        n_fp_failed = int((~gen_fps.ok).sum())
        cov = coverage(
            gen_fps.structure[gen_fps.ok],
            gen_fps.composition[gen_fps.ok],
            test_fps.structure[test_fps.ok],
            test_fps.composition[test_fps.ok],
            struct_cutoff=s_cut,
            comp_cutoff=c_cut,
            n_generated=len(generated),
        )

    novelty = None
    if train is not None:
        valid_crystals = [c for c, r in zip(generated, records) if r.valid and c is not None]
        novelty = uniqueness_and_novelty(valid_crystals, train)
    valid = [r for r in records if r.valid]
    if n_property_samples is not None and len(valid) > n_property_samples:
        rng = np.random.default_rng(seed)
        chosen = rng.choice(len(valid), size=n_property_samples, replace=False)
        valid = [valid[i] for i in sorted(chosen)]
    return DeNovoMetrics(
        n_generated=len(generated),
        n_struct_valid=sum(r.struct_valid for r in records),
        n_comp_valid=sum(r.comp_valid for r in records),
        n_valid=sum(r.valid for r in records),
        n_fingerprint_failed=n_fp_failed,
        coverage=cov,
        wdist_density=wasserstein([r.density_g_cm3 for r in valid], [r.density_g_cm3 for r in test_records]),
        wdist_num_elems=wasserstein([r.n_elements for r in valid], [r.n_elements for r in test_records]),
        n_property_generated=len(valid),
        n_property_test=len(test_records),
        dataset=dataset,
        per_structure=records,
        novelty=novelty,
    )


def compute_fingerprints(
    crystals: Sequence[Crystal | None],
    *,
    workers: int = 2,
    progress: bool = True,
    start_method: str = DEFAULT_START_METHOD,
) -> Fingerprints:
    """CDVAE fingerprints of ``crystals`` (e.g. to cache a test set's for
    :func:`denovo_metrics`'s ``test_fingerprints``)."""
    results = parallel_map(
        fingerprint_or_error,
        list(crystals),
        workers=workers,
        progress=progress,
        description="fingerprints",
        start_method=start_method,
    )
    return stack_fingerprints(results)


__all__ = [
    "COVERAGE_CUTOFFS",
    "N_PROPERTY_SAMPLES",
    "CoverageCutoffs",
    "CoverageResult",
    "CrystalRecord",
    "DeNovoMetrics",
    "compute_fingerprints",
    "coverage",
    "cutoffs_for",
    "denovo_metrics",
    "smact_validity",
    "wasserstein",
]
