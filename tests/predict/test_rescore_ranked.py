"""``scripts/studies/rescore_ranked.py --targets-of``: scoring a run on another run's targets
gives what scoring those targets' records alone gives."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from tests.script_loading import load_script

REPO = Path(__file__).resolve().parents[2]
RECORDS = REPO / "benchmarks" / "ranked_atoms_mp20_every15" / "records.jsonl.gz"
DATA = REPO.parent / "shared" / "data" / "mp_20" / "test.csv"

pytestmark = pytest.mark.skipif(not DATA.exists(), reason="needs ../shared/data/mp_20/test.csv")


def _write(records: list[dict], path: Path) -> Path:
    with gzip.open(path, "wt") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in records)
    return path


def _scores(capsys, *argv) -> list[str]:
    assert load_script("studies/rescore_ranked").main([*map(str, argv), "--data", str(DATA)]) == 0
    return [line for line in capsys.readouterr().out.splitlines() if not line.startswith("restricted")]


def test_targets_of_scores_the_shared_targets_only(tmp_path, capsys):
    with gzip.open(RECORDS, "rt") as handle:
        records = [json.loads(line) for line in handle]
    every_other = _write(records[::2], tmp_path / "every_other.jsonl.gz")
    # the other run: the same targets, different candidates, plus one target this run lacks
    other = _write([dict(r, ranked=[]) for r in records[::2]] + [dict(records[1], label="mp-not-here")],
                   tmp_path / "other.jsonl.gz")
    restricted = _scores(capsys, RECORDS, "--targets-of", other)
    direct = _scores(capsys, every_other)
    assert restricted == direct
    chosen = records[::2]
    steps = sum(r["relax_steps"] for r in chosen) / len(chosen)
    assert restricted[0].startswith(f"{len(chosen)} targets; per target {steps:.1f} potential steps")
    assert len(chosen) < len(records)


def test_targets_of_with_no_shared_target_is_an_error(tmp_path):
    other = _write([{"label": "mp-not-here", "ranked": [], "candidates": []}], tmp_path / "other.jsonl.gz")
    with pytest.raises(SystemExit, match="shares no target"):
        load_script("studies/rescore_ranked").main([str(RECORDS), "--data", str(DATA), "--targets-of", str(other)])
