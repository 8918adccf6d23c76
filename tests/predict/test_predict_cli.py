"""`diffcrystal predict`: the folder it writes, resuming it, and bad input (EMT, hand-made templates)."""

import csv
import json

import pytest

from diffcrystal.cli.main import main
from tests.predict.structures import ab_library

BASE = ["predict", "--composition", "CuAu", "--sources", "template", "--potential", "emt", "--quiet"]


@pytest.fixture
def table(tmp_path):
    return ab_library().write_table(tmp_path / "templates.json.gz", source="three AB types", progress=False)


def rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_predict_writes_the_ranked_answer_and_resumes(tmp_path, table, capsys):
    out = tmp_path / "CuAu"
    assert main(BASE + ["--templates", str(table), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "answer:" in printed and "template" in printed
    ranked = rows(out / "ranked.csv")
    assert ranked[0]["rank"] == "1" and ranked[0]["matches_known"] == "L10-CuAu"
    assert [float(r["score_eV_atom"]) for r in ranked] == sorted(float(r["score_eV_atom"]) for r in ranked)
    for row in ranked:
        assert (out / row["cif"]).is_file()
    candidates = rows(out / "candidates.csv")
    assert {c["label"] for c in candidates} == {"template-00", "template-01", "template-02"}
    assert all(c["status"] in ("converged", "not_converged", "pruned", "duplicate") for c in candidates)
    assert sum(float(c["type_vote"]) for c in candidates) == pytest.approx(1.0, abs=2e-3)  # three types, all voted
    record = json.loads((out / "run.json").read_text())
    assert record["potential"] == "emt" and record["settings"]["counts"]["template"] == 8
    assert [a["template"] for a in record["analogues"]][0] == "L10-CuAu"
    assert (out / "overview.png").stat().st_size > 0
    before = (out / "ranked.csv").read_text()

    assert main(BASE + ["--templates", str(table), "--out", str(out)]) == 1  # never overwritten
    assert "already holds a prediction" in capsys.readouterr().err
    assert main(BASE + ["--templates", str(table), "--out", str(out), "--resume"]) == 0
    assert (out / "ranked.csv").read_text() == before
    assert main(BASE + ["--templates", str(table), "--out", str(out), "--resume", "--distance-weight", "0.5"]) == 1
    assert "another settings" in capsys.readouterr().err
    assert main(BASE + ["--templates", str(table), "--out", str(out), "--resume", "--atoms", "4"]) == 1
    assert "another num atoms" in capsys.readouterr().err
    assert main(BASE + ["--templates", str(table), "--out", str(out), "--resume", "--optimizer", "FIRE"]) == 1
    assert "another settings" in capsys.readouterr().err
    assert record["settings"]["relax"]["optimizer"] == "BFGS"  # predict's default


def test_predict_relaxes_with_fire_when_asked(tmp_path, table):
    out = tmp_path / "CuAu"
    assert main(BASE + ["--templates", str(table), "--out", str(out), "--optimizer", "FIRE"]) == 0
    assert json.loads((out / "run.json").read_text())["settings"]["relax"]["optimizer"] == "FIRE"
    assert rows(out / "ranked.csv")[0]["matches_known"] == "L10-CuAu"


@pytest.mark.parametrize("extra, message", [
    (["--composition", "CuQq"], "Qq"),
    (["--sources", "template,magic"], "unknown source 'magic'"),
    (["--templates-n", "-1"], "--templates-n must be >= 0"),
    (["--free-samples", "4"], "--free-samples counts free_diffusion candidates, which --sources 'template' leaves out"),
    (["--funnel-stages", "a,b"], "--funnel-stages must be whole numbers"),
    (["--steps", "0"], "--steps must be >= 1"),
    (["--keep", "0"], "keep at least 1 candidate"),
    (["--funnel-margin", "-0.1"], "margin must be >= 0 eV/atom"),
    (["--potential", "no-such-potential"], "no-such-potential"),
    (["--templates", "/no/such/table.json.gz"], "no such table"),
    (["--atoms", "3"], "--atoms 3: a cell of CuAu holds a whole number of formula units of 2 atoms"),
    (["--far-samples", "-2"], "--far-samples must be a whole number >= 0"),
    (["--far-distance", "nan"], "--far-distance must be a finite number >= 0"),
])
def test_bad_options_are_one_line_errors(tmp_path, table, capsys, extra, message):
    args = BASE + ["--templates", str(table), "--out", str(tmp_path / "x")] + extra
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x" / "ranked.csv").exists()


@pytest.mark.parametrize("extra, counts", [
    ([], {"template": 8, "analogue_diffusion": 0, "free_diffusion": 0}),  # templates alone by default
    (["--free-samples", "4"], {"template": 8, "analogue_diffusion": 0, "free_diffusion": 4}),  # a count draws it
    (["--templates-n", "5", "--analogue-samples", "0"], {"template": 5, "analogue_diffusion": 0, "free_diffusion": 0}),
    (["--sources", "template,analogue_diffusion,free_diffusion"],
     {"template": 8, "analogue_diffusion": 3, "free_diffusion": 2}),
    (["--sources", "free_diffusion", "--free-samples", "6"], {"template": 0, "analogue_diffusion": 0, "free_diffusion": 6}),
])
def test_candidate_counts_from_the_options(extra, counts):
    import argparse

    from diffcrystal.cli.predict import configure, settings_from

    parser = argparse.ArgumentParser()
    configure(parser)
    assert settings_from(parser.parse_args(["--composition", "CuAu"] + extra)).counts == counts


def test_far_samples_from_the_options():
    import argparse

    from diffcrystal.cli.predict import configure, settings_from
    from diffcrystal.prediction import FAR_DISTANCE, FAR_FREE_SAMPLES

    parser = argparse.ArgumentParser()
    configure(parser)
    default = settings_from(parser.parse_args(["--composition", "CuAu"]))
    assert (default.far_free_samples, default.far_distance) == (FAR_FREE_SAMPLES, FAR_DISTANCE) == (20, 2.0)
    chosen = settings_from(parser.parse_args(["--composition", "CuAu", "--far-samples", "20", "--far-distance", "3"]))
    assert (chosen.far_free_samples, chosen.far_distance) == (20, 3.0)


def test_an_unwritable_out_fails_before_any_work(tmp_path, table, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(BASE + ["--templates", str(table), "--out", str(blocker / "sub")]) == 1
    assert "is a file" in capsys.readouterr().err


def test_default_folder_is_named_as_the_formula_was_typed(tmp_path, table, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["predict", "--composition", "Au Cu", "--sources", "template", "--potential", "emt", "--quiet",
                 "--templates", str(table)]) == 0
    assert (tmp_path / "predictions" / "AuCu" / "ranked.csv").is_file()
    assert main(["predict", "--composition", "AuCu", "--sources", "template", "--potential", "emt", "--quiet",
                 "--templates", str(table)]) == 0
    assert (tmp_path / "predictions" / "AuCu-2" / "ranked.csv").is_file()  # never over an earlier run


def test_a_short_step_cap_relaxes_without_the_funnel(tmp_path, table):
    out = tmp_path / "short"
    assert main(BASE + ["--templates", str(table), "--out", str(out), "--steps", "20"]) == 0  # within 10 + 20
    record = json.loads((out / "run.json").read_text())
    assert record["settings"]["funnel"] is None
    assert "pruned" not in {row["status"] for row in rows(out / "candidates.csv")}
