"""scripts/compare_csp_runs.py: sample-by-sample comparison of two CSP evaluations."""

import gzip
import json

import pytest

from diffcrystal.metrics import CSPMetrics, PairResult, TargetResult
from tests.script_loading import load_script


def candidate(rms):
    return PairResult("no_match") if rms is None else PairResult("match", rms=rms, max_dist=rms)


def metrics(rms_by_target: dict[str, list]) -> dict:
    results = [TargetResult(label, tuple(candidate(r) for r in rms)) for label, rms in rms_by_target.items()]
    return CSPMetrics.from_results(results, stol=0.5, angle_tol=10.0, ltol=0.3).to_dict()


RUN_A = {"t1": [0.02, None], "t2": [0.3, 0.05], "t3": [None, None]}
RUN_B = {"t1": [0.04, 0.2], "t2": [None, 0.01], "t3": [0.09, None]}


def test_counts_follow_the_samples_pair_by_pair(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json.gz"
    a.write_text(json.dumps(metrics(RUN_A)))
    b.write_bytes(gzip.compress(json.dumps(metrics(RUN_B)).encode()))
    assert load_script("compare_csp_runs").main([str(a), str(b), "--json", str(tmp_path / "c.json")]) == 0
    figures = json.loads((tmp_path / "c.json").read_text())
    # A matches 0.02, 0.3, 0.05; B matches 0.04, 0.2, 0.01, 0.09. Pairs both match: (0.02, 0.04), (0.05, 0.01)
    assert {key: figures[key] for key in ("samples", "matched_a", "matched_b", "matched_b_only", "matched_a_only",
                                          "precise_a", "precise_b", "precise_b_only", "precise_a_only",
                                          "matched_both", "rms_lower_in_b", "rms_higher_in_b")} == {
        "samples": 6, "matched_a": 3, "matched_b": 4, "matched_b_only": 2, "matched_a_only": 1,
        "precise_a": 2, "precise_b": 3, "precise_b_only": 1, "precise_a_only": 0,
        "matched_both": 2, "rms_lower_in_b": 1, "rms_higher_in_b": 1}
    assert figures["median_rms_ratio_b_over_a"] == pytest.approx((0.04 / 0.02 + 0.01 / 0.05) / 2)
    out = capsys.readouterr().out
    assert "| samples matched | 3 | 4 | 2 | 1 |" in out and "| samples precise | 2 | 3 | 1 | 0 |" in out
    # Per target @k: A matches t1 (best 0.02) and t2 (best 0.05); B matches t1 (0.04), t2 (0.01), t3 (0.09).
    assert {key: figures[key] for key in figures if key.startswith("targets")} == {
        "targets": 3, "targets_matched_a": 2, "targets_matched_b": 3, "targets_matched_b_only": 1,
        "targets_matched_a_only": 0, "targets_precise_a": 2, "targets_precise_b": 3, "targets_precise_b_only": 1,
        "targets_precise_a_only": 0}
    assert "| targets @k matched | 2 | 3 | 1 | 0 |" in out


@pytest.mark.parametrize("other, message", [
    ({"t1": [0.02, None], "t2": [0.3, 0.05]}, "the runs score different targets"),
    ({"t1": [0.02], "t2": [0.3], "t3": [None]}, "target t1: 2 samples in one run, 1 in the other"),
])
def test_runs_of_other_targets_or_sample_counts_are_refused(tmp_path, capsys, other, message):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(metrics(RUN_A)))
    b.write_text(json.dumps(metrics(other)))
    assert load_script("compare_csp_runs").main([str(a), str(b)]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_file_that_is_not_csp_metrics_is_one_line(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(metrics(RUN_A)))
    b.write_text(json.dumps({"task": "denovo"}))
    assert load_script("compare_csp_runs").main([str(a), str(b)]) == 1
    err = capsys.readouterr().err
    assert "b.json: not a readable CSP metrics.json" in err and len(err.strip().splitlines()) == 1


def test_exact_copies_in_a_stay_out_of_the_rmse_ratio(tmp_path):
    """A duplicate of a training structure matches at ~1e-13; B/A over it would swamp the median."""
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(metrics({"t1": [1e-13, 0.02, 0.05]})))
    b.write_text(json.dumps(metrics({"t1": [0.03, 0.04, 0.05]})))
    assert load_script("compare_csp_runs").main([str(a), str(b), "--json", str(tmp_path / "c.json")]) == 0
    figures = json.loads((tmp_path / "c.json").read_text())
    assert figures["matched_both"] == 3 and figures["rms_higher_in_b"] == 2
    assert figures["median_rms_ratio_b_over_a"] == pytest.approx((0.04 / 0.02 + 0.05 / 0.05) / 2)


def test_a_target_slice_compares_only_those_targets(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(metrics(RUN_A)))
    b.write_text(json.dumps(metrics(RUN_B)))
    out = tmp_path / "c.json"
    assert load_script("compare_csp_runs").main([str(a), str(b), "--targets", "2:", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    # Only t3: A matches none of its samples, B one (0.09, precise).
    assert (figures["samples"], figures["targets"], figures["matched_b_only"], figures["targets_precise_b_only"]) == (2, 1, 1, 1)


@pytest.mark.parametrize("targets, code, message", [("5:9", 1, "--targets selects none of the 3 targets"),
                                                    ("a:b", 2, "expected START:END")])
def test_a_bad_target_slice_is_refused(tmp_path, capsys, targets, code, message):
    a = tmp_path / "a.json"
    a.write_text(json.dumps(metrics(RUN_A)))
    try:
        returned = load_script("compare_csp_runs").main([str(a), str(a), "--targets", targets])
    except SystemExit as exit_:  # argparse refuses what it cannot read
        returned = exit_.code
    assert returned == code and message in capsys.readouterr().err
