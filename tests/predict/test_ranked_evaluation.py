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


def test_rescoring_charges_cells_that_do_not_fit_the_given_atom_count():
    low_but_wrong_size = dict(entry("a", -3.02, 0.0), num_atoms=3)
    right_size = dict(entry("b", -3.00, 0.0, "match", 0.05), num_atoms=2)
    given = dict(record("t", "CuAu", [low_but_wrong_size, right_size]), given_atoms=4)
    untold = dict(given, given_atoms=None)
    weight = RankingScore(distance_weight=0.0, stability_weight=0.0, atom_count_weight=0.05)
    assert rescored_results([given], weight, k=1)[0].matched_at_1  # 4 atoms hold 2x2, not 3
    assert not rescored_results([untold], weight, k=1)[0].matched_at_1
    assert not rescored_results([given], RankingScore(0.0, stability_weight=0.0, atom_count_weight=0.0), k=1)[0].matched_at_1


@pytest.mark.slow
def test_evaluate_ranked_with_the_atom_count_end_to_end(tmp_path, capsys):
    """`evaluate --ranked --atom-count` on two CuAu cells (EMT, templates only): predict is told
    each cell's atom count, the records say so, and a folder of the other protocol is refused."""
    import json

    from ase.io import write

    from diffcrystal.cli.main import main
    from tests.predict.structures import l10

    targets = [l10(label="CuAu-a"), l10(a=4.0, c=3.7, label="CuAu-b")]
    data = tmp_path / "targets.extxyz"
    atoms = []
    for crystal in targets:
        a = crystal.to_atoms()
        a.info["label"] = crystal.label
        atoms.append(a)
    write(data, atoms, format="extxyz")
    out = tmp_path / "ranked"
    base = ["evaluate", "--ranked", "--potential", "emt", "--data", str(data), "--k", "2", "--quiet",
            "--out", str(out)]
    assert main(base + ["--atom-count"]) == 0
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert [r["given_atoms"] for r in records] == [2, 2]
    assert all(all("num_atoms" in e for e in r["ranked"]) for r in records)
    report = json.loads((out / "metrics.json").read_text())
    assert report["atom_count_given"] is True and report["score"]["atom_count_weight"] >= 0
    assert main(base) == 1
    assert "holds records with the atom count given" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", "mp20_csp", "--data", str(data), "--atom-count", "--out",
                 str(tmp_path / "x")]) == 1
    assert "--atom-count" in capsys.readouterr().err
    # the records name their optimizer (predict's default), and a resume with another one is refused
    assert [r["optimizer"] for r in records] == ["BFGS", "BFGS"]
    assert main(base + ["--atom-count", "--optimizer", "FIRE"]) == 1
    assert "holds targets relaxed with another optimizer than FIRE" in capsys.readouterr().err
    fire = tmp_path / "ranked_fire"
    assert main(base[:-1] + [str(fire), "--atom-count", "--optimizer", "FIRE"]) == 0
    capsys.readouterr()
    assert [json.loads(line)["optimizer"] for line in (fire / "records.jsonl").read_text().splitlines()] == ["FIRE"] * 2
    # records from before the field were relaxed with FIRE: resuming them needs --optimizer FIRE
    legacy = tmp_path / "ranked_legacy"
    legacy.mkdir()
    (legacy / "records.jsonl").write_text("".join(
        json.dumps({k: v for k, v in json.loads(line).items() if k != "optimizer"}) + "\n"
        for line in (fire / "records.jsonl").read_text().splitlines()))
    assert main(base[:-1] + [str(legacy), "--atom-count"]) == 1
    assert "another optimizer than BFGS" in capsys.readouterr().err
    assert main(base[:-1] + [str(legacy), "--atom-count", "--optimizer", "FIRE"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", "mp20_csp", "--data", str(data), "--optimizer", "BFGS", "--out",
                 str(tmp_path / "y")]) == 1
    assert "--optimizer" in capsys.readouterr().err


def test_evaluate_ranked_from_chosen_sources(tmp_path, capsys):
    """`evaluate --ranked --sources template`: predict draws only templates (its default), the
    records name the counts, and a resume from other sources, or the option without --ranked, is
    refused."""
    import json

    from ase.io import write

    from diffcrystal.candidates import DEFAULT_COUNTS
    from diffcrystal.cli.main import main
    from tests.predict.structures import l10

    atoms = l10(label="CuAu-a").to_atoms()
    atoms.info["label"] = "CuAu-a"
    data = tmp_path / "targets.extxyz"
    write(data, [atoms], format="extxyz")
    out = tmp_path / "templates_only"
    base = ["evaluate", "--ranked", "--potential", "emt", "--data", str(data), "--k", "2", "--quiet",
            "--out", str(out)]
    assert main(base + ["--sources", "template"]) == 0
    capsys.readouterr()
    (record,) = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert record["candidate_counts"] == {"template": DEFAULT_COUNTS["template"], "analogue_diffusion": 0,
                                          "free_diffusion": 0}
    assert record["candidates"] and {c["source"] for c in record["candidates"]} == {"template"}
    assert json.loads((out / "metrics.json").read_text())["candidate_counts"] == record["candidate_counts"]
    assert main(base) == 0  # predict's default sources are the templates: the same run, resumed
    capsys.readouterr()
    assert main(base + ["--sources", "template,free_diffusion"]) == 1
    assert "predicted from other candidate sources" in capsys.readouterr().err
    assert main(base + ["--far-samples", "4"]) == 1  # records without far samples are not resumed with them
    assert "predicted with other far samples than {'count': 4, 'distance': 2.0}" in capsys.readouterr().err
    assert main(base + ["--sources", "template,magic"]) == 1
    assert "--sources: unknown source 'magic'" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", "mp20_csp", "--data", str(data), "--sources", "template", "--out",
                 str(tmp_path / "z")]) == 1
    assert "--sources" in capsys.readouterr().err
