"""``scripts/studies/short_ranked_lists.py``: short templates-alone lists and the free samples
that match where they miss, on ranked-evaluation records built by hand."""

from __future__ import annotations

import gzip
import json

from tests.script_loading import load_script

PRECISE = {"status": "match", "rms": 0.05}
LOOSE = {"status": "match", "rms": 0.3}
MISS = {"status": "no_match", "rms": None}


def structure(label: str, source: str, result: dict) -> dict:
    return {"label": label, "source": source, "sources": [source], **result}


def record(label: str, ranked: list[dict], candidates: list[dict] = ()) -> dict:
    return {"label": label, "ranked": ranked, "candidates": list(candidates)}


def templates_alone() -> list[dict]:
    return [
        record("long", [structure(f"template-0{i}", "template", MISS) for i in range(5)]),
        record("short-hit", [structure("template-00", "template", PRECISE)]),
        record("short-loose", [structure("template-00", "template", LOOSE), structure("template-01", "template", MISS)]),
        record("short-miss", [structure("template-00", "template", MISS)]),
        record("only-here", [structure("template-00", "template", MISS)]),
    ]


def with_samples() -> list[dict]:
    free = lambda label, result, state: {"label": label, "source": "free_diffusion", "state": state, **result}  # noqa: E731
    return [
        record("long", [], [free("free-00", PRECISE, "converged")]),
        record("short-hit", [], [free("free-00", PRECISE, "converged")]),
        # the template matches loosely, the pruned free sample precisely
        record("short-loose", [], [free("free-00", PRECISE, "pruned")]),
        # ranked as merged into a template's structure: its sources name both
        record("short-miss", [{**structure("template-00", "template", LOOSE), "sources": ["template", "free_diffusion"]}],
               [free("free-00", LOOSE, "duplicate"), free("free-01", MISS, "converged")]),
    ]


def test_counts_short_lists_their_misses_and_the_free_samples_that_match_there():
    script = load_script("studies/short_ranked_lists")
    report = script.short_list_report(templates_alone(), with_samples(), k=5)
    assert report["targets"] == 4  # "only-here" is in one file alone
    assert report["short"] == 3
    assert report["short_missed"] == 1 and report["short_missed_precise"] == 2
    assert report["free_ranked_match"] == ["short-miss"]
    assert report["free_any_match"] == ["short-miss"]
    assert report["free_any_precise"] == ["short-loose"]


def test_k_sets_what_counts_as_short():
    script = load_script("studies/short_ranked_lists")
    report = script.short_list_report(templates_alone(), with_samples(), k=2)
    assert report["short"] == 2 and report["short_missed"] == 1


def test_command_line_reports_and_refuses_disjoint_files(tmp_path, capsys):
    script = load_script("studies/short_ranked_lists")
    paths = []
    for name, records in (("templates", templates_alone()), ("samples", with_samples())):
        path = tmp_path / f"{name}.jsonl.gz"
        path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in records).encode()))
        paths.append(str(path))
    out = tmp_path / "report.json"
    assert script.main([*paths, "--out", str(out)]) == 0
    assert "lists shorter than 5: 3" in capsys.readouterr().out
    assert json.loads(out.read_text())["free_any_precise"] == ["short-loose"]
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps(record("elsewhere", [])) + "\n")
    assert script.main([paths[0], str(other)]) == 2
    assert "share no target" in capsys.readouterr().err
