"""Re-scoring ranked-evaluation records and their figures, against hand computation."""

import pytest

from diffcrystal.ranked_evaluation import ranked_metrics, read_records, rescored_results
from diffcrystal.ranking import RankingScore


def entry(label, energy, distance, status="no_match", rms=None, converged=True, source="template"):
    return {"label": label, "source": source, "energy_per_atom": energy, "analogue_distance": distance,
            "template_e_above_hull": None, "converged": converged, "status": status, "rms": rms}


def record(label, formula, ranked, candidates=()):
    return {"label": label, "formula": formula, "seconds": 10.0, "cpu_seconds": 8.0, "relax_steps": 50,
            "relax_steps_cap": 200, "ranked": ranked, "candidates": list(candidates)}


RECORDS = [
    # the lowest energy is wrong; the nearest template is right (RMSE 0.02)
    record("t1", "NaCl", [entry("a", -3.00, 0.0, "match", 0.02), entry("b", -3.05, 5.0)],
           [{"source": "template", "status": "match", "rms": 0.08}, {"source": "free_diffusion", "status": "no_match",
                                                                     "rms": None}]),
    # right at any weight, but loosely (RMSE 0.3); an unconverged one never comes first
    record("t2", "GaAs", [entry("c", -4.0, 1.0, "match", 0.3), entry("d", -9.0, 0.0, converged=False)],
           [{"source": "template", "status": "no_match", "rms": None}]),
]


def test_weights_reorder_the_answer():
    energy_only = rescored_results(RECORDS, RankingScore(distance_weight=0.0), k=1)
    with_prior = rescored_results(RECORDS, RankingScore(distance_weight=0.02), k=1)
    assert [t.matched_at_1 for t in energy_only] == [False, True]
    assert [t.matched_at_1 for t in with_prior] == [True, True]  # 0.02 * 5 = 0.1 > 0.05 eV/atom
    padded = rescored_results(RECORDS, RankingScore(), k=3)
    assert [c.status for c in padded[1].candidates] == ["match", "no_match", "missing"]


def test_summary_figures():
    summary = ranked_metrics(RECORDS, RankingScore(distance_weight=0.02), k=2)
    assert summary.at_1["matched"] == pytest.approx(100.0)
    assert summary.at_1["precise_0.1"] == pytest.approx(50.0)  # only t1 below RMSE 0.1
    assert summary.sources_at_1["template"]["matched"] == pytest.approx(50.0)
    assert summary.sources_any["free_diffusion"]["matched"] == pytest.approx(0.0)
    assert summary.metre == pytest.approx(100.0)
    assert summary.crmse == pytest.approx((0.02 + 0.3) / 2)
    assert summary.shared_compositions == 0
    assert summary.steps_share == pytest.approx(0.25)
    energy_only = ranked_metrics(RECORDS, RankingScore(distance_weight=0.0), k=2)
    assert energy_only.metre == pytest.approx(50.0)
    assert energy_only.crmse == pytest.approx((0.5 + 0.3) / 2)  # an unmatched target counts as stol


def test_torn_last_line_is_ignored(tmp_path):
    import json

    path = tmp_path / "records.jsonl"
    path.write_text(json.dumps(RECORDS[0]) + "\n" + '{"label": "t2", "form')
    assert [r["label"] for r in read_records(path)] == ["t1"]
