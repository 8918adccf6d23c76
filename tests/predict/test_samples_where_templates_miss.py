"""``scripts/studies/samples_where_templates_miss.py``: the targets the templates miss and the
@j counts on them, against metrics files built by hand."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest

from tests.script_loading import load_script

MATCH = {"status": "match", "rms": 0.05}
LOOSE = {"status": "match", "rms": 0.3}
MISS = {"status": "no_match", "rms": None}


def metrics(path: Path, candidates: dict[str, list[dict]], task: str = "csp") -> Path:
    report = {"task": task, "per_target": [{"label": label, "candidates": c} for label, c in candidates.items()]}
    path.write_bytes(gzip.compress(json.dumps(report).encode(), mtime=0))
    return path


def test_hits_count_matches_among_the_first_j_and_precise_ones_by_rms():
    script = load_script("studies/samples_where_templates_miss")
    candidates = [MISS, LOOSE, MATCH]
    assert [script.hit(candidates, j) for j in (1, 2, 3)] == [False, True, True]
    assert [script.hit(candidates, j, precise=True) for j in (1, 2, 3)] == [False, False, True]
    assert not script.hit([], 5)


def test_missed_targets_and_rates_on_them(tmp_path):
    script = load_script("studies/samples_where_templates_miss")
    analogue = script.per_target(metrics(tmp_path / "analogue.json.gz", {
        "a": [MISS, MATCH],          # the second template matches
        "b": [MISS, MISS, MATCH],    # only a third template would
        "c": [MISS, MISS],
    }))
    assert script.missed_labels(analogue, 1) == ["a", "b", "c"]
    assert script.missed_labels(analogue, 2) == ["b", "c"]
    model = {"b": [MISS, LOOSE, MISS, MISS, MATCH], "c": [MATCH]}
    rates = script.rates(model, ["b", "c", "absent"])
    assert rates["at_1"] == {"matched": 1, "precise": 1}
    assert rates["at_2"] == {"matched": 2, "precise": 1}
    assert rates["at_5"] == {"matched": 2, "precise": 2}
    assert "at_10" not in rates  # the run has 5 samples per target


def test_targets_csv_holds_the_missed_rows_and_refuses_another_file(tmp_path):
    script = load_script("studies/samples_where_templates_miss")
    analogue = metrics(tmp_path / "analogue.json.gz", {"mp-1": [MATCH], "mp-2": [MISS]})
    data = tmp_path / "test.csv"
    data.write_text("material_id,cif\nmp-1,x\nmp-2,y\n")
    out = tmp_path / "missed.csv"
    assert script.main(["targets", "--analogue", str(analogue), "--templates", "1", "--data", str(data),
                        "--out", str(out)]) == 0
    assert list(csv.DictReader(out.open())) == [{"material_id": "mp-2", "cif": "y"}]
    data.write_text("material_id,cif\nmp-1,x\n")
    assert script.main(["targets", "--analogue", str(analogue), "--templates", "1", "--data", str(data),
                        "--out", str(tmp_path / "other.csv")]) == 2
    assert not (tmp_path / "other.csv").exists()


def test_a_denovo_report_is_refused(tmp_path):
    script = load_script("studies/samples_where_templates_miss")
    from diffcrystal.errors import InputError

    with pytest.raises(InputError, match="not a CSP evaluation"):
        script.per_target(metrics(tmp_path / "denovo.json.gz", {}, task="denovo"))
