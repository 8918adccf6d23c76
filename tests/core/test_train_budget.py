"""``diffcrystal train --max-hours``: a wall-clock budget that stops training cleanly at a
checkpointed step, counts the time of earlier ``--resume`` sessions, and the wall and CPU
seconds logged beside the step in ``logs/metrics.csv``."""

import csv
import re

import pytest
import torch
import yaml

from diffcrystal.checkpoint import load_checkpoint
from diffcrystal.cli.main import main
from diffcrystal.training.clock import CPU_COLUMN, SECONDS_PER_HOUR, WALL_COLUMN

FIRST_BUDGET_S = 1.0
SECOND_BUDGET_S = 2.0
"""Budgets of the two sessions in s: the second includes the first's time."""


def train_cli(tmp_path, values, *extra) -> int:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(values))
    return main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--quiet", *map(str, extra)])


def trained_steps(out: str) -> int:
    return int(re.search(r"trained (\d+) steps?", out).group(1))


def training_rows(run) -> list[dict]:
    with open(run / "logs" / "metrics.csv", newline="") as stream:
        return [row for row in csv.DictReader(stream) if row["train/loss"]]


def clock_state(checkpoint) -> dict:
    return torch.load(checkpoint, map_location="cpu", weights_only=True)["callbacks"]["TrainingClock"]


def test_budget_stops_at_a_checkpoint_and_resume_continues_the_clock(tmp_path, capsys, tiny_data, make_config):
    values = make_config(tiny_data, max_steps=1_000_000, checkpoint_every_n_steps=100_000)
    run, last = tmp_path / "run", tmp_path / "run" / "checkpoints" / "last.ckpt"

    assert train_cli(tmp_path, values, "--max-hours", FIRST_BUDGET_S / SECONDS_PER_HOUR) == 0
    out = capsys.readouterr().out
    assert f"stopped by the time budget of {FIRST_BUDGET_S / SECONDS_PER_HOUR:g} h" in out and f"--resume {last}" in out
    first_steps = trained_steps(out)
    saved = torch.load(last, map_location="cpu", weights_only=True)
    assert saved["global_step"] == first_steps  # written where the budget stopped, between periodic checkpoints
    first_wall_s = clock_state(last)["time_elapsed"]["train"]
    assert first_wall_s >= FIRST_BUDGET_S
    rows = training_rows(run)
    assert int(rows[-1]["step"]) == first_steps - 1
    for column in (WALL_COLUMN, CPU_COLUMN):
        times = [float(row[column]) for row in rows]
        assert times == sorted(times) and 0 < times[0], column
    # wall time is bounded by the clock's; CPU time is not (it sums every thread of the process)
    assert float(rows[-1][WALL_COLUMN]) <= first_wall_s + 1e-3
    assert load_checkpoint(run / "generator.safetensors")[1]["training"]["wall_time_s"] >= FIRST_BUDGET_S

    assert train_cli(tmp_path, values, "--max-hours", SECOND_BUDGET_S / SECONDS_PER_HOUR, "--resume", last) == 0
    second_steps = trained_steps(capsys.readouterr().out)
    assert second_steps > first_steps
    assert clock_state(last)["time_elapsed"]["train"] >= SECOND_BUDGET_S
    resumed = [row for row in training_rows(run) if int(row["step"]) >= first_steps]
    assert int(resumed[0]["step"]) == first_steps and float(resumed[0][WALL_COLUMN]) >= first_wall_s
    assert float(resumed[0][CPU_COLUMN]) >= float(rows[-1][CPU_COLUMN])

    # the budget is spent: resuming under the same one trains no further step
    assert train_cli(tmp_path, values, "--max-hours", SECOND_BUDGET_S / SECONDS_PER_HOUR, "--resume", last) == 0
    out = capsys.readouterr().out
    assert trained_steps(out) == second_steps and "stopped by the time budget" in out


@pytest.mark.parametrize("hours", ["0", "-1", "nan", "inf"])
def test_unusable_budget_is_one_line_and_writes_nothing(tmp_path, capsys, tiny_data, make_config, hours):
    assert train_cli(tmp_path, make_config(tiny_data), "--max-hours", hours) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"diffcrystal train: error: invalid config value train.max_hours: {float(hours)!r}; "
                   "expected a finite number > 0, or null")
    assert not (tmp_path / "run").exists()
