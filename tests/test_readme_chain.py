"""The README's first hour, run as written: ``sample``, then ``relax`` and ``rank`` on the folder
``sample`` wrote (only the composition, the size and the potential are swapped for a small,
EMT-friendly run), and every file they write gets the usual umask-derived mode."""

import csv
import os
import re
import shlex
import stat
from pathlib import Path

import pytest

from diffcrystal.cli.main import main

README = Path(__file__).resolve().parents[1] / "README.md"

COMPOSITION = "Cu3Au"
"""A composition ASE's EMT describes and the bundled CSP model accepts (README: YBa2Cu3O7)."""

UMASK = 0o022


def readme_command(subcommand: str) -> list[str]:
    """The README's first ``diffcrystal <subcommand> ...`` command, as argv after ``diffcrystal``."""
    match = re.search(rf"diffcrystal {subcommand} [^`\n&]*", README.read_text())
    assert match, f"README has no 'diffcrystal {subcommand}' command"
    return shlex.split(match.group(0))[1:]


def small(argv: list[str]) -> list[str]:
    """The README command with the test's composition, EMT, and a tiny sample."""
    swapped = [arg.replace("YBa2Cu3O7", COMPOSITION).replace("sevennet-0", "emt") for arg in argv]
    if swapped[0] == "sample":
        swapped[swapped.index("--n") + 1] = "2"
        swapped += ["--steps", "5", "--quiet"]
    return swapped + (["--quiet"] if swapped[0] in ("relax", "rank") else [])


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def umask_022():
    previous = os.umask(UMASK)
    try:
        yield
    finally:
        os.umask(previous)


def test_readme_sample_relax_rank_chain(tmp_path, monkeypatch, umask_022, capsys):
    monkeypatch.chdir(tmp_path)
    sample, relax, rank = (small(readme_command(name)) for name in ("sample", "relax", "rank"))
    assert "--potential" in relax and "--potential" in rank
    assert main(sample) == 0
    samples = tmp_path / "samples" / COMPOSITION
    assert relax[1] == rank[1] == f"samples/{COMPOSITION}"  # the folder sample wrote
    sampled = read_rows(samples / "summary.csv")
    assert len(sampled) == 2

    assert main(relax) == 0
    relaxed = read_rows(samples.with_name(f"{COMPOSITION}-relaxed") / "summary.csv")
    assert [r["id"] for r in relaxed] == [r["id"] for r in sampled]

    assert main(rank) == 0
    out = samples.with_name(f"{COMPOSITION}-ranked")
    summary = read_rows(out / "relaxed" / "summary.csv")
    ranked = read_rows(out / "ranked.csv")
    unconverged = read_rows(out / "ranked_unconverged.csv")
    assert (out / "ranking.png").stat().st_size > 0
    assert [r["id"] for r in summary] == [r["id"] for r in sampled]
    status = {r["id"]: r["status"] for r in summary}
    # every converged structure sits in exactly one ranked group, and nothing else does
    for table, wanted in ((ranked, "converged"), (unconverged, "not_converged")):
        members = [m for r in table for m in r["group_members"].split()]
        assert sorted(members) == sorted(i for i, s in status.items() if s == wanted)
        energies = [float(r["energy_per_atom_eV"]) for r in table]
        assert energies == sorted(energies)
        assert all(r["potential"] == "emt" and r["formula"] == COMPOSITION for r in table)
    assert "distinct converged crystals" in capsys.readouterr().out

    modes = {p.relative_to(tmp_path): stat.S_IMODE(p.stat().st_mode)
             for p in tmp_path.rglob("*") if p.is_file()}
    assert modes and set(modes.values()) == {0o666 & ~UMASK}, modes


def test_readme_main_job_predict(tmp_path, monkeypatch, umask_022, capsys):
    """The README's main job, with the test's composition, EMT, and the templates alone."""
    monkeypatch.chdir(tmp_path)
    predict = [arg.replace("YBa2Cu3O7", COMPOSITION) for arg in readme_command("predict")]
    assert predict[:3] == ["predict", "--composition", COMPOSITION]
    assert main(predict + ["--potential", "emt", "--sources", "template", "--templates-n", "3", "--quiet"]) == 0
    out = tmp_path / "predictions" / COMPOSITION
    ranked = read_rows(out / "ranked.csv")
    assert ranked and ranked[0]["rank"] == "1" and ranked[0]["source"] == "template"
    assert f"answer: predictions/{COMPOSITION}/ranked.csv" in capsys.readouterr().out
    for path in out.rglob("*"):
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
