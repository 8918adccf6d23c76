"""The CDVAE structure and composition fingerprints used by the coverage metrics.

- **Structure fingerprint** (61 numbers): matminer ``CrystalNNFingerprint.from_preset('ops')``
  evaluated at every site (CrystalNN neighbours + local order parameters of the coordination
  environments) and averaged over the sites of the cell.
- **Composition fingerprint** (132 numbers): matminer ``ElementProperty.from_preset('magpie')``
  (22 elemental properties x 6 statistics) of the composition, *without* imputation of missing
  elemental data (``impute_nan=False``, the behaviour of the matminer CDVAE used), then
  standardised with CDVAE's fixed per-feature means and standard deviations
  (:mod:`diffcrystal.metrics._cdvae_scaler`); a feature that is NaN after standardisation is
  set to 0 (CDVAE's ``replace_nan_token``).

matminer is an optional dependency (the ``metrics`` extra) and is imported only when a
fingerprint is computed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffcrystal.data.cache import package_versions
from diffcrystal.data.crystal import Crystal
from diffcrystal.metrics._cdvae_scaler import COMP_FP_MEANS, COMP_FP_STDS

STRUCTURE_FP_PRESET = "ops"
"""matminer ``CrystalNNFingerprint`` preset of the CDVAE structure fingerprint."""

COMPOSITION_FP_PRESET = "magpie"
"""matminer ``ElementProperty`` preset of the CDVAE composition fingerprint."""

COMPOSITION_FP_NAN_VALUE = 0.0
"""Value given to a standardised composition feature that is NaN (missing elemental data)."""


@functools.cache
def _featurizers():
    try:
        from matminer.featurizers.composition.composite import ElementProperty
        from matminer.featurizers.site.fingerprint import CrystalNNFingerprint
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the coverage fingerprints need matminer: pip install 'diffcrystal[metrics]' "
            "(or pip install matminer)"
        ) from error
    structure_fp = CrystalNNFingerprint.from_preset(STRUCTURE_FP_PRESET)
    composition_fp = ElementProperty.from_preset(COMPOSITION_FP_PRESET, impute_nan=False)
    return structure_fp, composition_fp


def structure_fingerprint(crystal: Crystal) -> np.ndarray:
    """(61,) mean over sites of the CrystalNN 'ops' site fingerprint of ``crystal``.

    Raises whatever CrystalNN raises on a structure it cannot analyse.
    """
    structure_fp, _ = _featurizers()
    structure = crystal.to_structure()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sites = [structure_fp.featurize(structure, i) for i in range(len(structure))]
    return np.asarray(sites, dtype=np.float64).mean(axis=0)


def composition_fingerprint(crystal: Crystal) -> np.ndarray:
    """(132,) raw (unstandardised) magpie composition fingerprint; NaN where data is missing."""
    from pymatgen.core import Composition
    from pymatgen.core.periodic_table import Element

    _, composition_fp = _featurizers()
    numbers, counts = np.unique(crystal.atomic_numbers, return_counts=True)
    composition = Composition(
        {Element.from_Z(int(z)): int(n) for z, n in zip(numbers, counts)}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(composition_fp.featurize(composition), dtype=np.float64)


def standardize_composition_fingerprints(raw: np.ndarray) -> np.ndarray:
    """Standardise (M, 132) raw magpie fingerprints with CDVAE's scaler; NaN -> 0."""
    raw = np.asarray(raw, dtype=np.float64)
    if raw.ndim != 2 or raw.shape[1] != len(COMP_FP_MEANS):
        raise ValueError(f"expected (M, {len(COMP_FP_MEANS)}) fingerprints, got {raw.shape}")
    scaled = (raw - np.asarray(COMP_FP_MEANS)) / np.asarray(COMP_FP_STDS)
    return np.where(np.isnan(scaled), COMPOSITION_FP_NAN_VALUE, scaled)


@dataclass(frozen=True)
class Fingerprints:
    """Fingerprints of a set of M crystals (for caching a test set's, e.g.).

    ``structure``: (M, 61) and ``composition``: (M, 132) standardised; rows where ``ok`` is
    False are NaN (no crystal, or CrystalNN failed: ``errors`` says why).
    """

    structure: np.ndarray
    composition: np.ndarray
    ok: np.ndarray
    errors: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.ok.shape[0])

    def save(self, path: str | os.PathLike) -> None:
        """Save to a ``.npz`` file (e.g. to cache a test set's fingerprints; computing them
        takes ~0.1 s per 5-atom crystal per core)."""
        np.savez_compressed(
            path,
            structure=self.structure,
            composition=self.composition,
            ok=self.ok,
            errors=np.array(self.errors, dtype=str),
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Fingerprints":
        """Load what :meth:`save` wrote."""
        with np.load(path, allow_pickle=False) as data:
            return cls(
                data["structure"], data["composition"], data["ok"].astype(bool), tuple(data["errors"].tolist())
            )


def fingerprint_key(crystals: Sequence[Crystal]) -> str:
    """SHA-256 of the crystals' arrays (lattice, fractional coordinates, atomic numbers) and
    of the matminer / pymatgen versions: the name under which their fingerprints are cached."""
    versions = package_versions(("matminer", "pymatgen", "pymatgen-core", "numpy"))
    digest = hashlib.sha256(json.dumps({"fingerprints": 1, "versions": versions}, sort_keys=True).encode())
    for crystal in crystals:
        for array in (crystal.lattice, crystal.frac_coords, crystal.atomic_numbers):
            contiguous = np.ascontiguousarray(array)
            digest.update(str(contiguous.shape).encode() + contiguous.dtype.str.encode())
            digest.update(contiguous.tobytes())
    return digest.hexdigest()


def cached_fingerprints(crystals: Sequence[Crystal], cache_dir: str | os.PathLike, compute) -> Fingerprints:
    """Fingerprints of ``crystals`` from ``<cache_dir>/fingerprints-<key>.npz``
    (:func:`fingerprint_key`), else ``compute(crystals)``, then saved there atomically."""
    path = Path(cache_dir) / f"fingerprints-{fingerprint_key(crystals)}.npz"
    if path.is_file():
        try:
            cached = Fingerprints.load(path)
        except (OSError, ValueError, KeyError) as error:
            warnings.warn(f"ignoring unreadable fingerprint cache {path}: {error}", stacklevel=2)
        else:
            if len(cached) == len(crystals):
                return cached
    fingerprints = compute(crystals)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as handle:
        temporary = Path(handle.name)
    try:
        fingerprints.save(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return fingerprints


def fingerprint_or_error(crystal: Crystal | None) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """``(structure_fp, raw composition_fp, '')`` or ``(None, None, reason)``; never raises
    on a bad structure (an ImportError for missing matminer still propagates)."""
    if crystal is None:
        return None, None, "no structure"
    _featurizers()  # a missing matminer is an installation problem, not a bad structure
    try:
        return structure_fingerprint(crystal), composition_fingerprint(crystal), ""
    except Exception as error:  # noqa: BLE001 - CDVAE counts such a crystal as unfingerprinted
        return None, None, f"{type(error).__name__}: {error}"


def stack_fingerprints(
    results: Sequence[tuple[np.ndarray | None, np.ndarray | None, str]],
) -> Fingerprints:
    """Assemble per-crystal :func:`fingerprint_or_error` results into :class:`Fingerprints`."""
    n = len(results)
    struct_dim = next((len(s) for s, c, _ in results if s is not None), 61)
    structure = np.full((n, struct_dim), np.nan)
    raw_comp = np.full((n, len(COMP_FP_MEANS)), np.nan)
    ok = np.zeros(n, dtype=bool)
    for i, (s, c, _) in enumerate(results):
        if s is not None and c is not None:
            structure[i], raw_comp[i], ok[i] = s, c, True
    composition = np.full_like(raw_comp, np.nan)
    if ok.any():
        composition[ok] = standardize_composition_fingerprints(raw_comp[ok])
    return Fingerprints(structure, composition, ok, tuple(e for _, _, e in results))
