"""scripts/benchmark_screen.py: its figures for two local clusters (EMT, hand-made templates)."""

import json

import pytest

from tests.predict.structures import ab_library
from tests.script_loading import load_script

pytest.importorskip("distributed")


def test_benchmark_screen_times_each_worker_count_and_the_noop_task(tmp_path, capsys):
    table = ab_library().write_table(tmp_path / "templates.json.gz", source="three AB types", progress=False)
    benchmark = load_script("benchmark_screen")
    out = tmp_path / "figures.json"
    assert benchmark.main(["--potential", "emt", "--templates", str(table), "--n", "2", "--worker-counts", "1,1",
                           "--noop-tasks", "5", "--out", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["compositions"] == ["CuAu", "NiAl"] and figures["potential"] == "emt"
    assert [run["workers"] for run in figures["runs"]] == [1, 1]
    for run in figures["runs"]:
        assert run["statuses"] == {"done": 2} and run["screen_s"] > 0
        assert run["tasks"]["count"] == 2 and run["tasks"]["first_on_worker_s"] > 0 and run["tasks"]["later_s"] > 0
        assert run["noop_task"]["one_by_one_ms"] > 0 and run["noop_task"]["submitted_together_ms"] > 0
    assert list(figures["speed_up"]) == ["1_vs_1"]
    assert "speed-up 1 vs 1:" in capsys.readouterr().out


def test_benchmark_screen_refuses_a_bad_worker_count(tmp_path, capsys):
    benchmark = load_script("benchmark_screen")
    assert benchmark.main(["--potential", "emt", "--worker-counts", "one", "--out", str(tmp_path / "x.json")]) == 1
    assert "--worker-counts must be whole numbers" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()
