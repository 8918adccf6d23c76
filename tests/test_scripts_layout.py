"""``scripts/`` holds the tools a user runs; ``scripts/studies/`` the one-off studies, each with
its line in that folder's README."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from tests.script_loading import SCRIPTS, load_script


def test_every_study_has_its_line_in_the_readme():
    listed = re.findall(r"^- `([\w.]+\.py)`: \S", (SCRIPTS / "studies" / "README.md").read_text(), flags=re.M)
    assert sorted(listed) == sorted(p.name for p in (SCRIPTS / "studies").glob("*.py"))


def test_a_study_reads_a_committed_gzipped_report(tmp_path):
    curve = load_script("studies/analogue_distance_curve")
    report = tmp_path / "metrics.json.gz"
    report.write_bytes(gzip.compress(json.dumps({"extra": {"method": "model", "k": 1}}).encode(), mtime=0))
    with pytest.raises(SystemExit, match="is not an analogue baseline run with k = 1"):
        curve.main(["--metrics", str(report), "--data", str(tmp_path / "unused.csv")])
    report.write_bytes(b"not gzip")
    with pytest.raises(SystemExit, match=f"^{report}: not a readable metrics file"):
        curve.main(["--metrics", str(report), "--data", str(tmp_path / "unused.csv")])
