"""The report writer: metrics.json + metrics.md, atomic, JSON without NaN; read back plain or gzipped."""

from __future__ import annotations

import gzip
import json

import pytest

from diffcrystal.errors import InputError
from diffcrystal.metrics import csp_metrics, denovo_metrics, read_metrics_json, write_metrics
from diffcrystal.atomic_write import atomic_write_text

from tests.metrics import _structures as S


def test_write_csp_metrics(tmp_path):
    target = S.perovskite()
    result = csp_metrics(
        [[target, S.strained(target, 1.5)], [None, S.strained(target, 1.5)]],
        [target, target],
        workers=1,
        progress=False,
    )
    json_path, md_path = write_metrics(result, tmp_path / "out", extra={"command": "test"})
    data = json.loads(json_path.read_text())
    assert data["task"] == "csp"
    summary = data["summary"]
    assert summary["n_targets"] == 2 and summary["n_matched_at_1"] == 1
    assert summary["match_rate_at_1_percent"] == 50.0
    assert summary["n_missing"] == 1
    assert data["settings"] == {"stol": 0.5, "angle_tol_deg": 10.0, "ltol": 0.3}
    assert data["extra"] == {"command": "test"}
    assert len(data["per_target"]) == 2
    md = md_path.read_text()
    assert "| metric | value | counts |" in md
    assert "| match rate @1 | 50.00 % | 1 / 2 targets |" in md
    assert "| RMSE @2 |" in md
    single = csp_metrics([[target]], [target], workers=1, progress=False)
    rows = [row[0] for row in single.table_rows()]
    assert rows.count("match rate @1") == 1 and rows.count("RMSE @1") == 1  # @k = @1 is not repeated
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["metrics.json", "metrics.md"]


def test_write_denovo_metrics_without_matches_has_no_nan(tmp_path):
    result = denovo_metrics([None], [S.rocksalt()], compute_coverage=False, workers=1, progress=False)
    json_path, md_path = write_metrics(result, tmp_path)
    data = json.loads(json_path.read_text())  # would fail on NaN (allow_nan=False on write)
    assert data["summary"]["validity_percent"] == 0.0
    assert data["summary"]["wdist_density"] is None
    assert "| validity (both) | 0.00 % | 0 / 1 generated |" in md_path.read_text()


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_rmse_histogram_has_one_panel_at_k1_and_two_at_k(tmp_path):
    from matplotlib.image import imread

    from diffcrystal.metrics import write_rmse_histogram

    target = S.perovskite()
    one = csp_metrics([[target]], [target], workers=1, progress=False)
    two = csp_metrics([[S.strained(target, 1.5), target]], [target], workers=1, progress=False)
    assert one.rmse_values("1") == [pytest.approx(0.0, abs=1e-8)]
    assert (two.rmse_values("1"), len(two.rmse_values("k"))) == ([], 1)
    height1, width1, _ = imread(write_rmse_histogram(one, tmp_path / "one.png")).shape
    height2, width2, _ = imread(write_rmse_histogram(two, tmp_path / "sub" / "two.png", title="t")).shape
    assert height1 == height2 and width2 == 2 * width1
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["one.png", "sub", "two.png"]  # no temporary left


def test_a_report_reads_back_plain_and_gzipped(tmp_path):
    target = S.perovskite()
    json_path, _ = write_metrics(csp_metrics([[target]], [target], workers=1, progress=False), tmp_path)
    gzipped = tmp_path / "metrics.json.gz"
    gzipped.write_bytes(gzip.compress(json_path.read_bytes(), mtime=0))
    assert read_metrics_json(gzipped) == read_metrics_json(json_path) == json.loads(json_path.read_text())


@pytest.mark.parametrize("name, content", [
    ("metrics.json.gz", b"{}"),  # named gzip, is not
    ("metrics.json.gz", gzip.compress(b"{")[:-4]),  # cut short
    ("metrics.json", b"{"),
])
def test_an_unreadable_report_is_a_one_line_error_naming_it(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=f"^{path}: not a readable metrics file") as error:
        read_metrics_json(path)
    assert "\n" not in str(error.value)
    with pytest.raises(InputError, match="not a readable metrics file"):
        read_metrics_json(tmp_path / "missing.json.gz")
