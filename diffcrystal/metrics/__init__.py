"""Evaluation metrics of generated crystals, following the CDVAE / DiffCSP protocol.

- :mod:`~diffcrystal.metrics.csp`: crystal-structure prediction, match rate, normalised
  RMSE and the precise share (RMSE < 0.1 / 0.05) @1 and @k with pymatgen's
  ``StructureMatcher`` (:func:`csp_metrics`).
- :mod:`~diffcrystal.metrics.polymorph`: polymorph-aware CSP metrics METRe and cRMSE, every
  sample compared with every reference of its composition, each serving at most one
  (:func:`polymorph_metrics`).
- :mod:`~diffcrystal.metrics.diversity`: distinct structures among a target's k samples
  (:func:`sample_diversity`).
- :mod:`~diffcrystal.metrics.rmse_histogram`: PNG histogram of the matched targets' RMSE
  (:func:`write_rmse_histogram`).
- :mod:`~diffcrystal.metrics.denovo`: de novo generation, structural and compositional
  (SMACT) validity, coverage COV-R / COV-P with the CDVAE fingerprints, Wasserstein distances
  of density and number of elements (:func:`denovo_metrics`).
- :mod:`~diffcrystal.metrics.report`: ``metrics.json`` + ``metrics.md`` (:func:`write_metrics`),
  read back also gzipped (:func:`read_metrics_json`).

Every percentage is reported with the counts behind it. Thresholds are named module constants
with their provenance. Needs the ``metrics`` extra (smact, matminer) for the de novo part.
"""

from diffcrystal.metrics.csp import (
    MATCHER_ANGLE_TOL_DEG,
    MATCHER_LTOL,
    MATCHER_STOL,
    PRECISE_RMSE_THRESHOLDS,
    CSPMetrics,
    PairResult,
    TargetResult,
    csp_metrics,
    merge_csp_metrics,
)
from diffcrystal.metrics.denovo import (
    COVERAGE_CUTOFFS,
    N_PROPERTY_SAMPLES,
    CoverageCutoffs,
    CoverageResult,
    CrystalRecord,
    DeNovoMetrics,
    compute_fingerprints,
    coverage,
    cutoffs_for,
    denovo_metrics,
    smact_validity,
    wasserstein,
)
from diffcrystal.metrics.diversity import DiversityResult, sample_diversity
from diffcrystal.metrics.fingerprints import Fingerprints
from diffcrystal.metrics.polymorph import PolymorphMetrics, assign_references, polymorph_metrics
from diffcrystal.metrics.report import read_metrics_json, write_metrics
from diffcrystal.metrics.rmse_histogram import write_rmse_histogram

__all__ = [
    "COVERAGE_CUTOFFS",
    "MATCHER_ANGLE_TOL_DEG",
    "MATCHER_LTOL",
    "MATCHER_STOL",
    "N_PROPERTY_SAMPLES",
    "PRECISE_RMSE_THRESHOLDS",
    "CSPMetrics",
    "CoverageCutoffs",
    "CoverageResult",
    "CrystalRecord",
    "DeNovoMetrics",
    "DiversityResult",
    "Fingerprints",
    "PairResult",
    "PolymorphMetrics",
    "TargetResult",
    "assign_references",
    "compute_fingerprints",
    "coverage",
    "csp_metrics",
    "merge_csp_metrics",
    "polymorph_metrics",
    "read_metrics_json",
    "cutoffs_for",
    "denovo_metrics",
    "sample_diversity",
    "smact_validity",
    "wasserstein",
    "write_metrics",
    "write_rmse_histogram",
]
