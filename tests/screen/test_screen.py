"""`diffcrystal screen` and `diffcrystal.screen`: one folder per composition, screen.csv,
failures as rows, resuming, and a killed worker (EMT, hand-made templates)."""

import csv
import os
import signal
import threading
import time

import pytest

import diffcrystal
from diffcrystal.cli.main import main
from diffcrystal.errors import InputError
from diffcrystal.prediction import PredictSettings
from tests.predict.structures import ab_library

distributed = pytest.importorskip("distributed")

OPTIONS = ["--sources", "template", "--potential", "emt", "--quiet"]
SETTINGS = PredictSettings(counts={"template": 8, "analogue_diffusion": 0, "free_diffusion": 0})


@pytest.fixture
def table(tmp_path):
    return ab_library().write_table(tmp_path / "templates.json.gz", source="three AB types", progress=False)


@pytest.fixture
def in_process_client():
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0") as client:
        yield client


def rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_screen_writes_each_folder_and_the_table_failures_included(tmp_path, table, in_process_client):
    out = tmp_path / "screen"
    compositions = ["CuAu", "NiAl", "CuQq", "AuCu", "Fe2O3"]
    frame = diffcrystal.screen(compositions, in_process_client, out=out, templates=table, potential="emt",
                               settings=SETTINGS, cache_dir=tmp_path / "cache")
    assert list(frame["composition"]) == compositions
    status = dict(zip(frame["composition"], frame["status"]))
    assert status == {"CuAu": "done", "NiAl": "done", "CuQq": "failed", "AuCu": "duplicate", "Fe2O3": "failed"}
    reasons = dict(zip(frame["composition"], frame["reason"]))
    assert "Qq" in reasons["CuQq"] and "Fe" in reasons["Fe2O3"] and "'CuAu'" in reasons["AuCu"]
    assert all("\n" not in reason for reason in reasons.values())
    assert not reasons["Fe2O3"].startswith("InputError")  # a clear reason, as predict would print it
    best = frame.set_index("composition").loc["CuAu"]
    assert best["matches_known"] == "L10-CuAu" and best["source"] == "template" and best["ranked"] >= 1
    assert (out / best["cif"]).is_file()
    for formula in ("CuAu", "AlNi"):  # predict's folder, exactly
        assert {p.name for p in (out / formula).iterdir()} == {"run.json", "ranked.csv", "candidates.csv",
                                                                "cif", "overview.png"}
    assert sorted(p.name for p in out.iterdir()) == ["AlNi", "CuAu", "screen.csv"]  # no partial folder, no Fe2O3
    assert [r["status"] for r in rows(out / "screen.csv")] == list(frame["status"])
    before = (out / "CuAu" / "ranked.csv").read_text()

    with pytest.raises(InputError, match="not both"):
        diffcrystal.screen(["CuAu"], in_process_client, out=out, workers=2, potential="emt")
    with pytest.raises(InputError, match="already holds a result"):
        diffcrystal.screen(["CuAu"], in_process_client, out=out, templates=table, potential="emt", settings=SETTINGS)
    with pytest.raises(InputError, match="cannot resume .*CuAu with another settings"):
        diffcrystal.screen(["CuAu"], in_process_client, out=out, templates=table, potential="emt", resume=True,
                           settings=PredictSettings(counts=SETTINGS.counts, seed=1))
    (out / ".PdAg.partial").mkdir()  # left by a killed run: dropped on resume
    again = diffcrystal.screen(["CuAu", "AgPd"], in_process_client, out=out, templates=table, potential="emt",
                               settings=SETTINGS, resume=True, cache_dir=tmp_path / "cache")
    assert list(again["status"]) == ["resumed", "done"]
    assert again["matches_known"][0] == "L10-CuAu"
    assert (out / "CuAu" / "ranked.csv").read_text() == before
    assert not (out / ".PdAg.partial").exists() and (out / "PdAg" / "ranked.csv").is_file()


def test_screen_cli_reads_a_list_and_runs_a_local_cluster(tmp_path, table, capsys):
    listing = tmp_path / "compositions.txt"
    listing.write_text("# a substitution series\nCuAu\n\nNiAl  # B2\n")
    out = tmp_path / "out"
    assert main(["screen", str(listing), "--out", str(out), "--templates", str(table), "--workers", "1"]
                + OPTIONS) == 0
    printed = capsys.readouterr().out
    assert "2 compositions: 2 done" in printed and "screen.csv" in printed
    table_rows = rows(out / "screen.csv")
    assert [(r["composition"], r["formula"], r["status"]) for r in table_rows] == [
        ("CuAu", "CuAu", "done"), ("NiAl", "AlNi", "done")]
    assert all((out / r["cif"]).is_file() for r in table_rows)


def test_a_csv_with_a_composition_column_is_read(tmp_path):
    from diffcrystal.screening import read_compositions

    listing = tmp_path / "series.csv"
    listing.write_text("id,composition\n1,CuAu\n2,NiAl\n")
    assert read_compositions(listing) == ["CuAu", "NiAl"]


@pytest.mark.parametrize("content, extra, message", [
    ("CuAu\n", ["--workers", "0"], "--workers must be >= 1"),
    ("CuAu\n", ["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "with --scheduler"),
    ("CuAu\n", ["--steps", "0"], "--steps must be >= 1"),
    ("CuAu\n", ["--potential", "no-such-potential"], "no-such-potential"),
    ("# nothing\n", [], "lists no composition"),
    ("id,formula\n1,CuAu\n", [], "needs a 'composition' column"),
])
def test_bad_input_is_a_one_line_error_before_any_work(tmp_path, table, capsys, content, extra, message):
    listing = tmp_path / "list.txt"
    listing.write_text(content)
    out = tmp_path / "out"
    assert main(["screen", str(listing), "--out", str(out), "--templates", str(table)] + OPTIONS + extra) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_a_killed_worker_costs_only_its_task_which_is_retried(tmp_path, table):
    from tests.screen.blocking import BlockFirstAttempt

    marker = tmp_path / "blocked.pid"
    killed = {}

    def kill_when_blocked():
        deadline = time.monotonic() + 240  # coordination only: the pass criteria are below
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        if marker.exists():
            killed["pid"] = int(marker.read_text())
            os.kill(killed["pid"], signal.SIGKILL)

    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    with cluster, distributed.Client(cluster) as client:
        client.register_plugin(BlockFirstAttempt("NiAl", str(marker)))
        killer = threading.Thread(target=kill_when_blocked, daemon=True)
        killer.start()
        frame = diffcrystal.screen(["CuAu", "NiAl", "AgPd"], client, out=tmp_path / "out", templates=table,
                                   potential="emt", settings=SETTINGS, cache_dir=tmp_path / "cache")
        killer.join()
    assert "pid" in killed  # the task did block, on a worker that was then killed
    assert killed["pid"] != os.getpid()
    assert list(frame["status"]) == ["done", "done", "done"]
    assert [r["status"] for r in rows(tmp_path / "out" / "screen.csv")] == ["done", "done", "done"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["AlNi", "CuAu", "PdAg", "screen.csv"]
