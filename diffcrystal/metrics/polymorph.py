"""Polymorph-aware CSP metrics METRe and cRMSE (Martirossyan et al., "All that structure
matches does not glitter", arXiv:2509.12178, as evaluated by OMatG).

Why: test sets such as perov-5 and MP-20 hold several polymorphs of one composition. The usual
match rate (:mod:`~diffcrystal.metrics.csp`) compares the structures generated for the i-th
test entry with the i-th reference only, so a model that reproduces polymorph B when asked for
the composition of entry i (reference: polymorph A) scores a miss, and the RMSE, averaged over
matched entries only, improves when a model matches fewer of them.

Definitions
-----------
References ``r_1 .. r_N`` are the test structures; the generated structures ``g_1 .. g_M`` are
all samples of all references, pooled. A pair ``(r_i, g_j)`` *matches* when the CSP matcher
pairs them (:func:`~diffcrystal.metrics.csp.compare_with_target`: pymatgen
``StructureMatcher(stol, angle_tol, ltol)`` behind the structural-validity gate); its
normalised RMS displacement is ``ρ_ij`` (dimensionless, in units of ``(V/N_sites)^(1/3)``),
and ``ρ_ij <= stol`` because the matcher only accepts pairs whose every site lies within
``stol``. Only pairs of one reduced composition are compared (others never match), so all
polymorphs of a composition, i.e. references with the same reduced formula, share every
structure generated with that composition ("match everyone to reference").

An assignment ``σ`` pairs some references with matching generated structures, each generated
structure serving at most one reference. With ``|σ|`` matched references:

- **METRe** = ``100 % · |σ| / N``: the percentage of references matched;
- **cRMSE** = ``(1/N) [ Σ_{i matched} ρ_iσ(i) + (N − |σ|) · stol ]``: the mean RMS over *all*
  references, an unmatched one counting as ``stol``, the largest RMS a match can have; unlike
  the RMSE over matched references it cannot improve by matching fewer.

``σ`` is optimal: the most matched references and, among assignments with that many, the
smallest ``Σ ρ``. It is found exactly, per composition, by scipy's ``linear_sum_assignment``
(Hungarian-type) on the cost ``ρ_ij − B`` for a matching pair and ``0`` otherwise, with
``B = (N + 1) · stol + 1``, so one more match always outweighs any change of ``Σ ρ``.

Sources and assumptions
-----------------------
Only the paper's abstract (which introduces METRe and cRMSE as fixes of the match rate) could
be read here, not its definitions section. The definitions above follow a port of OMatG's
evaluation (PaddlePaddle ``ppmat``, functions ``metre_rmsds`` / ``corr_rmsd``: every generated
structure against every reference of its reduced composition; the mean RMS over all
references with ``stol`` for an unmatched one) and this project's requirement that a
generated structure serve at most one reference. *Assumed*: that requirement itself (the port
lets one generated structure count for several references; ``one_to_one=False`` computes
that reading, each reference taking its best match, to compare with numbers made that way);
the tie-break by ``Σ ρ`` among assignments with the most matches; cRMSE as a mean of RMS values
(as the CDVAE/DiffCSP RMSE), not the root of a mean of squares; compositions compared reduced
(OMatG's ``check_reduced``); METRe as a percentage, like every rate of this package.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import linear_sum_assignment

from diffcrystal.data.crystal import Crystal
from diffcrystal.errors import InputError
from diffcrystal.metrics._parallel import DEFAULT_START_METHOD, parallel_map
from diffcrystal.metrics.csp import (
    MATCHER_ANGLE_TOL_DEG,
    MATCHER_LTOL,
    MATCHER_STOL,
    PROTOCOL_MAX_VOLUME_PER_ATOM_A3,
    PairJob,
    compare_pair,
)
from diffcrystal.symmetry import MIN_DISTANCE_A


def _check_rms_matrix(rms: ArrayLike, stol: float) -> np.ndarray:
    """``rms`` as a float array (n_references, n_generated); one-line error if it cannot be one."""
    if not (isinstance(stol, (int, float)) and math.isfinite(stol) and stol > 0):
        raise InputError(f"stol must be a positive number, got {stol!r}")
    matrix = np.asarray(rms, dtype=float)
    if matrix.ndim != 2:
        raise InputError(f"RMS matrix must be 2-D (references x generated), got shape {matrix.shape}")
    found = matrix[~np.isnan(matrix)]
    if found.size and (found.min() < 0 or found.max() > stol):
        raise InputError(
            f"RMS values must lie in [0, stol={stol}] (NaN: no match), got range "
            f"[{found.min():.6g}, {found.max():.6g}]"
        )
    return matrix


def assign_references(rms: ArrayLike, *, stol: float, one_to_one: bool = True) -> tuple[int | None, ...]:
    """The generated structure assigned to each reference, or ``None`` (see the module docstring).

    Parameters
    ----------
    rms : (n_references, n_generated) normalised RMS of each matching pair (dimensionless,
        in [0, stol]); NaN where the pair does not match.
    stol : the matcher's site tolerance (units of (V/N)^(1/3)), the cap of a match's RMS.
    one_to_one : each generated structure serves at most one reference (default). ``False``:
        each reference takes its best-matching generated structure, shared or not.

    Returns
    -------
    One entry per reference: the column of its generated structure, ``None`` if unmatched.
    With ``one_to_one`` the assignment matches the most references and, among those, has the
    smallest summed RMS.
    """
    matrix = _check_rms_matrix(rms, stol)
    n_references, n_generated = matrix.shape
    matches = ~np.isnan(matrix)
    if not one_to_one:
        return tuple(
            int(np.nanargmin(row)) if found.any() else None for row, found in zip(matrix, matches)
        )
    if n_generated == 0 or not matches.any():
        return (None,) * n_references
    match_bonus = (n_references + 1) * stol + 1.0
    cost = np.where(matches, np.nan_to_num(matrix) - match_bonus, 0.0)
    assigned: list[int | None] = [None] * n_references
    for row, column in zip(*linear_sum_assignment(cost)):
        if matches[row, column]:
            assigned[int(row)] = int(column)
    return tuple(assigned)


@dataclass(frozen=True)
class PolymorphMetrics:
    """METRe and cRMSE with the counts behind them.

    Attributes
    ----------
    n_references : test structures N.
    n_matched : references with an assigned generated structure.
    crmse : mean normalised RMS over all references, ``stol`` for an unmatched one
        (dimensionless).
    stol : the matcher's site tolerance used as the cap.
    one_to_one : whether a generated structure served at most one reference.
    assigned : per reference, the index of its generated structure (``None``: unmatched); in
        :func:`polymorph_metrics` an index into the generated structures flattened in order
        (``[g for samples in generated for g in samples]``), in :meth:`from_rms_matrix` a column.
    assigned_rms : per reference, the RMS of that pair (``None``: unmatched).
    n_generated : generated structures, ``None`` entries included.
    n_missing : ``None`` entries (failed samples), never matched.
    n_invalid : generated structures failing the structural-validity gate, never matched.
    n_errors : pairs whose comparison raised, counted as non-matches.
    n_without_reference : generated structures whose reduced composition no reference has,
        so never compared.
    """

    n_references: int
    n_matched: int
    crmse: float
    stol: float
    one_to_one: bool
    assigned: tuple[int | None, ...]
    assigned_rms: tuple[float | None, ...]
    n_generated: int
    n_missing: int = 0
    n_invalid: int = 0
    n_errors: int = 0
    n_without_reference: int = 0

    @property
    def metre(self) -> float:
        """Percentage of references matched (METRe)."""
        return 100.0 * self.n_matched / self.n_references

    @classmethod
    def from_rms_matrix(cls, rms: ArrayLike, *, stol: float, one_to_one: bool = True) -> "PolymorphMetrics":
        """METRe and cRMSE of one (n_references, n_generated) matrix of normalised RMS values, NaN
        where a pair does not match (pairs of different compositions included)."""
        matrix = _check_rms_matrix(rms, stol)
        if matrix.shape[0] == 0:
            raise InputError("no references to evaluate")
        assigned = assign_references(matrix, stol=stol, one_to_one=one_to_one)
        assigned_rms = tuple(None if j is None else float(matrix[i, j]) for i, j in enumerate(assigned))
        return cls._from_assignment(assigned, assigned_rms, stol=stol, one_to_one=one_to_one,
                                    n_generated=matrix.shape[1])

    @classmethod
    def _from_assignment(cls, assigned: tuple[int | None, ...], assigned_rms: tuple[float | None, ...], *,
                         stol: float, one_to_one: bool, n_generated: int, **counts: int) -> "PolymorphMetrics":
        capped = [stol if rms is None else rms for rms in assigned_rms]
        return cls(
            n_references=len(assigned),
            n_matched=sum(j is not None for j in assigned),
            crmse=float(np.mean(capped)),
            stol=stol,
            one_to_one=one_to_one,
            assigned=assigned,
            assigned_rms=assigned_rms,
            n_generated=n_generated,
            **counts,
        )


def polymorph_metrics(
    references: Sequence[Crystal],
    generated: Sequence[Sequence[Crystal | None]],
    *,
    stol: float = MATCHER_STOL,
    angle_tol: float = MATCHER_ANGLE_TOL_DEG,
    ltol: float = MATCHER_LTOL,
    one_to_one: bool = True,
    workers: int = 2,
    progress: bool = True,
    min_distance_A: float = MIN_DISTANCE_A,
    max_volume_per_atom_A3: float = PROTOCOL_MAX_VOLUME_PER_ATOM_A3,
    start_method: str = DEFAULT_START_METHOD,
) -> PolymorphMetrics:
    """METRe and cRMSE of CSP samples against a test set with polymorphs.

    Parameters
    ----------
    references : the N test structures.
    generated : one sequence of samples per reference, in the same order (the shape
        :func:`~diffcrystal.metrics.csp.csp_metrics` takes; ``None`` marks a failed sample).
        Samples are pooled by their reduced composition: each is compared with every
        reference of that composition, not only with the one it was generated for.
    stol, angle_tol, ltol : StructureMatcher tolerances ((V/N)^(1/3), degrees, fraction of
        length); ``stol`` is also cRMSE's value for an unmatched reference.
    one_to_one : each generated structure serves at most one reference (default; see the
        module docstring for ``False``).
    workers : processes comparing pairs in parallel (``<= 1``: in this process).
    progress : show a tqdm progress bar.
    min_distance_A, max_volume_per_atom_A3 : structural-validity thresholds (Å, Å³ per atom).
    start_method : multiprocessing start method of the workers.

    Raises
    ------
    InputError
        No references, a sample list per reference missing, or a reference without samples.
    """
    if not references:
        raise InputError("no references to evaluate")
    if len(generated) != len(references):
        raise InputError(
            f"got {len(generated)} sample lists for {len(references)} references; give one list per reference"
        )
    for index, samples in enumerate(generated):
        if len(samples) == 0:
            raise InputError(f"reference {index} has no samples; mark failed samples with None")
    flat = [sample for samples in generated for sample in samples]
    references_of: dict[str, list[int]] = defaultdict(list)
    for index, reference in enumerate(references):
        references_of[reference.formula].append(index)
    generated_of: dict[str, list[int]] = defaultdict(list)
    for index, sample in enumerate(flat):
        if sample is not None:
            generated_of[sample.formula].append(index)
    pairs = [
        (i, j)
        for formula, rows in references_of.items()
        for i in rows
        for j in generated_of.get(formula, [])
    ]
    results = parallel_map(
        compare_pair,
        [PairJob(flat[j], references[i], stol, angle_tol, ltol, min_distance_A, max_volume_per_atom_A3)
         for i, j in pairs],
        workers=workers,
        progress=progress,
        description="matching polymorphs",
        start_method=start_method,
    )
    rms_of = {pair: result.rms for pair, result in zip(pairs, results) if result.matched}
    assigned: list[int | None] = [None] * len(references)
    for formula, rows in references_of.items():
        columns = generated_of.get(formula, [])
        matrix = np.full((len(rows), len(columns)), np.nan)
        for r, i in enumerate(rows):
            for c, j in enumerate(columns):
                matrix[r, c] = rms_of.get((i, j), np.nan)
        for i, column in zip(rows, assign_references(matrix, stol=stol, one_to_one=one_to_one)):
            assigned[i] = None if column is None else columns[column]
    return PolymorphMetrics._from_assignment(
        tuple(assigned),
        tuple(None if j is None else rms_of[(i, j)] for i, j in enumerate(assigned)),
        stol=stol,
        one_to_one=one_to_one,
        n_generated=len(flat),
        n_missing=sum(sample is None for sample in flat),
        n_invalid=len({j for (_, j), result in zip(pairs, results) if result.status == "invalid"}),
        n_errors=sum(result.status == "error" for result in results),
        n_without_reference=sum(
            len(indices) for formula, indices in generated_of.items() if formula not in references_of
        ),
    )
