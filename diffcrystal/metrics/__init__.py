"""Evaluation metrics of generated crystals, following the CDVAE / DiffCSP protocol.

- :mod:`~diffcrystal.metrics.csp`: crystal-structure prediction, match rate and normalised
  RMSE @1 and @k with pymatgen's ``StructureMatcher`` (:func:`csp_metrics`).
- :mod:`~diffcrystal.metrics.denovo`: de novo generation, structural and compositional
  (SMACT) validity, coverage COV-R / COV-P with the CDVAE fingerprints, Wasserstein distances
  of density and number of elements (:func:`denovo_metrics`).
- :mod:`~diffcrystal.metrics.report`: ``metrics.json`` + ``metrics.md`` (:func:`write_metrics`).

Every percentage is reported with the counts behind it. Thresholds are named module constants
with their provenance. Needs the ``metrics`` extra (smact, matminer) for the de novo part.
"""

from diffcrystal.metrics.csp import (
    MATCHER_ANGLE_TOL_DEG,
    MATCHER_LTOL,
    MATCHER_STOL,
    CSPMetrics,
    PairResult,
    TargetResult,
    csp_metrics,
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
from diffcrystal.metrics.fingerprints import Fingerprints
from diffcrystal.metrics.report import write_metrics

__all__ = [
    "COVERAGE_CUTOFFS",
    "MATCHER_ANGLE_TOL_DEG",
    "MATCHER_LTOL",
    "MATCHER_STOL",
    "N_PROPERTY_SAMPLES",
    "CSPMetrics",
    "CoverageCutoffs",
    "CoverageResult",
    "CrystalRecord",
    "DeNovoMetrics",
    "Fingerprints",
    "PairResult",
    "TargetResult",
    "compute_fingerprints",
    "coverage",
    "csp_metrics",
    "cutoffs_for",
    "denovo_metrics",
    "smact_validity",
    "wasserstein",
    "write_metrics",
]
