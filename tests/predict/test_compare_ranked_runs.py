"""``scripts/studies/compare_ranked_runs.py``: the targets where two ranked runs differ, against
records built by hand."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from tests.script_loading import load_script


def entry(label, energy, status, source="template", members=()):
    return {"label": label, "source": source, "sources": [source], "members": [label, *members],
            "energy_per_atom": energy, "analogue_distance": 0.0, "template_e_above_hull": None,
            "converged": True, "status": status, "rms": 0.01 if status == "match" else None}


def record(label, ranked, candidates=()):
    return {"label": label, "formula": "NaCl", "ranked": ranked, "candidates": list(candidates)}


def _write(records, path: Path) -> Path:
    with gzip.open(path, "wt") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in records)
    return path


def test_first_match_follows_the_score():
    script = load_script("studies/compare_ranked_runs")
    from diffcrystal.ranked_evaluation import rescored_order
    from diffcrystal.ranking import RankingScore

    # ranked by energy at equal distance: b (-2.0) first, then a (-1.0), which matches
    order = rescored_order(record("t", [entry("a", -1.0, "match"), entry("b", -2.0, "no_match")]), RankingScore())
    assert [e["label"] for e in order] == ["b", "a"]
    assert script.first_match(order) == (2, order[1])
    assert script.first_match(order[:1]) is None and script.first_match([]) is None


def test_targets_matched_by_one_run_only(tmp_path, capsys):
    script = load_script("studies/compare_ranked_runs")
    first = _write([record("both", [entry("a", -1.0, "match")]),
                    record("first-only", [entry("a", -1.0, "match")]),
                    record("second-at-2", [entry("a", -1.0, "no_match")]),
                    record("first-run-only-target", [])], tmp_path / "a.jsonl.gz")
    second = _write([record("both", [entry("a", -1.0, "match")]),
                     record("first-only", [entry("x", -3.0, "no_match", "analogue_diffusion")],
                            [{"label": "a", "state": "pruned"}]),
                     record("second-at-2", [entry("c", -1.0, "match", members=["a"]), entry("b", -2.0, "no_match")])],
                    tmp_path / "b.jsonl.gz")
    assert script.main([str(first), str(second)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("3 targets in both runs")
    assert ("@1: matched by A only: 1\n  first-only NaCl: A's first match a\n"
            "    A: rank 1 of 1 (-1.000 eV/atom, as a, matches); answer -1.000 eV/atom\n"
            "    B: pruned, unranked; answer -3.000 eV/atom\n") in out
    # B's match c (which stands for a merged candidate a) is no candidate of A
    assert ("@5: matched by B only: 1\n  second-at-2 NaCl: B's first match c\n"
            "    A: absent, unranked; answer -1.000 eV/atom\n"
            "    B: rank 2 of 2 (-1.000 eV/atom, as c, matches); answer -2.000 eV/atom\n") in out
    assert "@1: matched by B only: 0" in out


def test_runs_without_a_shared_target_are_an_error(tmp_path):
    script = load_script("studies/compare_ranked_runs")
    first = _write([record("a", [])], tmp_path / "a.jsonl.gz")
    second = _write([record("b", [])], tmp_path / "b.jsonl.gz")
    with pytest.raises(SystemExit, match="share no target"):
        script.main([str(first), str(second)])
