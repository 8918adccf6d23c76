"""``scripts/studies/far_free_samples.py``: ranked @1 / @k with the far targets' records in place
of their templates-alone ones, on records built by hand."""

from __future__ import annotations

import pytest

from diffcrystal.errors import InputError
from diffcrystal.ranking import RankingScore
from tests.script_loading import load_script

PRECISE = {"status": "match", "rms": 0.05}
LOOSE = {"status": "match", "rms": 0.3}
MISS = {"status": "no_match", "rms": None}


def entry(label: str, energy: float, result: dict, distance: float | None = 0.0) -> dict:
    source = "template" if label.startswith("template") else "free_diffusion"
    return {"label": label, "source": source, "sources": [source], "energy_per_atom": energy, "converged": True,
            "analogue_distance": distance, "template_e_above_hull": 0.0, "num_atoms": 2, "type_vote": 1.0, **result}


def record(label: str, ranked: list[dict], candidates: list[dict] = ()) -> dict:
    return {"label": label, "formula": "CuAu", "num_atoms": 2, "given_atoms": 2, "ranked": ranked,
            "candidates": list(candidates), "cpu_seconds": 10.0 if len(ranked) < 2 else 40.0}


def templates_alone() -> list[dict]:
    return [record("near", [entry("template-00", -1.0, PRECISE)]),
            record("far-found", [entry("template-00", -1.0, MISS, 3.0)]),
            record("far-lost", [entry("template-00", -1.0, LOOSE, 3.0)])]


def with_far_samples() -> list[dict]:
    free = {"label": "free-00", "source": "free_diffusion", "state": "converged", **PRECISE}
    # energy alone decides between equal offsets; a free sample is charged more than a template at
    # distance 3 (free distance 4.9 and no vote), so it must be well below to come first
    return [record("far-found", [entry("template-00", -1.0, MISS, 3.0), entry("free-00", -2.0, PRECISE, None)],
                   [free]),
            record("far-lost", [entry("free-00", -3.0, MISS, None), entry("free-01", -2.9, MISS, None),
                                entry("template-00", -1.0, LOOSE, 3.0)],
                   [{**free, **MISS}])]


def test_far_records_replace_the_templates_alone_ones():
    script = load_script("studies/far_free_samples")
    report = script.far_report(templates_alone(), with_far_samples(), RankingScore(), k=2)
    assert report["targets"] == 3 and report["far_targets"] == 2
    assert report["all"]["templates"] == {"at_1": {"matched": 2, "precise": 1}, "at_2": {"matched": 2, "precise": 1}}
    # far-found gains a precise match at rank 1; far-lost's loose template falls to rank 3
    assert report["all"]["with_far_samples"] == {"at_1": {"matched": 2, "precise": 2},
                                                 "at_2": {"matched": 2, "precise": 2}}
    assert report["far"]["templates"]["at_2"] == {"matched": 1, "precise": 0}
    assert report["far"]["with_far_samples"]["at_2"] == {"matched": 1, "precise": 1}
    found, lost = report["per_far_target"]
    assert (found["templates_first_match"], found["with_far_samples_first_match"], found["free_any_match"]) == (None, 0, 1)
    assert (lost["templates_first_match"], lost["with_far_samples_first_match"], lost["free_any_match"]) == (0, 2, 0)
    assert report["cpu_seconds_per_target"] == {"templates": 10.0, "with_far_samples": 30.0}  # (10 + 40 + 40) / 3


def test_far_records_of_unknown_targets_are_refused():
    script = load_script("studies/far_free_samples")
    with pytest.raises(InputError, match="far records of targets the templates-alone records lack: stray"):
        script.far_report(templates_alone(), [record("stray", [])], RankingScore(), k=2)
