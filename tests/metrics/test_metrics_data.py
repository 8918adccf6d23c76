"""The metrics on a few real benchmark structures (``../shared/data``; skipped without it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from diffcrystal.data.crystal import Crystal
from diffcrystal.metrics import Fingerprints, compute_fingerprints, csp_metrics, denovo_metrics

from tests.metrics import _structures as S


def read_crystals(csv: Path, n: int) -> list[Crystal]:
    from pymatgen.core import Structure

    frame = pd.read_csv(csv, nrows=n)
    return [
        Crystal.from_structure(Structure.from_str(cif, fmt="cif"), label=str(mid))
        for cif, mid in zip(frame["cif"], frame["material_id"])
    ]


def test_perovskites_match_their_rotated_selves_and_not_each_other(shared_data):
    crystals = read_crystals(shared_data / "perov_5" / "test.csv", 4)
    predictions = [
        [crystals[(i + 1) % 4], S.rotated_permuted_shifted(c, i)] for i, c in enumerate(crystals)
    ]
    result = csp_metrics(predictions, crystals, workers=2, progress=False)
    assert result.n_matched_at_1 == 0 and result.n_matched_at_k == 4
    assert result.rmse_at_k == pytest.approx(0.0, abs=1e-6)


def test_perovskite_coverage_with_itself_and_cached_fingerprints(shared_data, tmp_path):
    pytest.importorskip("matminer")
    crystals = read_crystals(shared_data / "perov_5" / "test.csv", 4)
    fps = compute_fingerprints(crystals, workers=1, progress=False)
    assert fps.ok.all() and fps.structure.shape == (4, 61) and fps.composition.shape == (4, 132)
    fps.save(tmp_path / "fp.npz")
    cached = Fingerprints.load(tmp_path / "fp.npz")
    assert np.array_equal(cached.structure, fps.structure) and cached.errors == fps.errors
    result = denovo_metrics(
        crystals, crystals, dataset="perov_5", test_fingerprints=cached, workers=1, progress=False
    )
    assert result.coverage.cov_recall == 100.0 and result.coverage.cov_precision == 100.0
    assert result.wdist_density == 0.0 and result.wdist_num_elems == 0.0
