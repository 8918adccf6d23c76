"""``scripts/studies/rank_floor.py``: the oracle's teacher work, worked by hand."""

import csv
import json

from tests.script_loading import load_script


def test_floor_of_a_small_ranking_worked_by_hand():
    floor = load_script("studies/rank_floor").teacher_floor([30, 50, 10, 200, 7], 0.1, top=2, probe=10, cores=2)
    # the first two to the end (30 + 50), three others probed 10 steps each
    assert floor["teacher_steps"] == 110 and floor["top_steps"] == [30, 50]
    assert floor["cpu_seconds"] == 11.0
    assert floor["wall_seconds_at_least"] == 5.5  # 11 CPU s over 2 cores; the longest relaxation alone is 5 s
    serial = load_script("studies/rank_floor").teacher_floor([300, 5, 5], 0.1, top=1, probe=1, cores=2)
    assert serial["wall_seconds_at_least"] == 30.0  # one relaxation of 300 steps cannot be split


def test_floor_read_from_a_kept_full_relaxation(tmp_path, capsys):
    full = tmp_path / "full"
    full.mkdir()
    with open(full / "ranked.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["rank", "id", "steps"])
        writer.writeheader()
        writer.writerows({"rank": i + 1, "id": f"{i:06d}", "steps": s} for i, s in enumerate([40, 60, 20, 20]))
    (full / "costs.json").write_text(json.dumps({"cpu_seconds": 28.0, "teacher_steps": 140}))
    out = tmp_path / "floor.json"
    script = load_script("studies/rank_floor")
    assert script.main([str(full), "--top", "2", "--probe", "1", "--budget", "10", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["cpu_seconds_per_teacher_step"] == 0.2 and report["budget_teacher_steps"] == 100
    assert report["floors"][0]["teacher_steps"] == 102 and report["floors"][0]["cpu_seconds"] == 20.4
    assert script.main([str(tmp_path), "--out", str(tmp_path / "x.json")]) == 1
    assert "not a kept full relaxation" in capsys.readouterr().err
