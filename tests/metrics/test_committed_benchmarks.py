"""The evaluations committed in ``benchmarks/``: each run's detail is a gzipped ``metrics.json.gz``
beside its ``metrics.md``, and the readers take that form."""

from __future__ import annotations

import json
from pathlib import Path

from diffcrystal.metrics import read_metrics_json

from tests.script_loading import load_script

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_every_committed_report_is_gzipped_and_agrees_with_its_table():
    tables = sorted(BENCHMARKS.rglob("metrics.md"))
    assert len(tables) >= 72  # the runs committed by 2026-12-05
    for table_path in tables:
        report = table_path.with_name("metrics.json.gz")
        assert not table_path.with_name("metrics.json").exists(), f"{table_path.parent}: commit metrics.json gzipped"
        data, table = read_metrics_json(report), table_path.read_text()
        summary = data["summary"]
        if data["task"] == "csp":
            counts = f"{summary['n_matched_at_1']} / {summary['n_targets']} targets"
        else:
            counts = f"{summary['n_valid']} / {summary['n_generated']} generated"
        assert f"| {counts} |" in table, report


def test_committed_chunks_merge_from_their_gzipped_reports_to_the_documented_figures(tmp_path):
    # docs/benchmarks.md, "@20 on the first 1,000": 62.40 % matched (624), 17.70 % precise (177)
    chunks = [BENCHMARKS / name / "metrics.json.gz" for name in ("mp20_csp_v3_k20_offset500_500",
                                                                  "mp20_csp_v3_k20_offset0_500")]
    assert load_script("merge_csp_metrics").main([*map(str, chunks), "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "metrics.json").read_text())["summary"]
    assert (summary["n_targets"], summary["n_matched_at_k"], summary["n_rmse_below_0.1_at_k"]) == (1000, 624, 177)
