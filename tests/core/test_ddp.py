"""Distributed training on CPU: Lightning ``strategy="ddp"`` on 2 processes (gloo) with the
tiny config; each rank trains on other crystals, both end with the same weights, and the
training clock counts the CPU seconds of both processes."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from diffcrystal.checkpoint import load_checkpoint
from diffcrystal.errors import InputError
from diffcrystal.training.clock import CPU_COLUMN
from diffcrystal.training import train as training
from diffcrystal.training.config import ExperimentConfig

ROOT = Path(__file__).resolve().parents[2]


def test_ddp_on_two_cpu_processes_splits_the_data_and_agrees_on_the_weights(tmp_path, tiny_data):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "core" / "ddp_train.py"), str(tiny_data),
                           str(tmp_path)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["world_size"] == 2 for r in ranks)
    assert all(r["steps"] == 3 and len(r["batches"]) == 3 for r in ranks)
    for first, second in zip(ranks[0]["batches"], ranks[1]["batches"]):  # each step: disjoint crystals
        assert not any(crystal in second for crystal in first)
    assert ranks[0]["initial"] == ranks[1]["initial"]
    assert ranks[0]["final"] == ranks[1]["final"] != ranks[0]["initial"]
    assert (tmp_path / "run" / "generator.safetensors").is_file()
    both_processes_s = 7.0 * 1 + 7.0 * 2  # ddp_train.CPU_PER_RANK_S * (rank + 1), summed over the ranks
    assert [r["cpu_time_s"] for r in ranks] == [both_processes_s, both_processes_s]
    with open(tmp_path / "run" / "logs" / "metrics.csv", newline="") as stream:
        logged = [float(row[CPU_COLUMN]) for row in csv.DictReader(stream) if row[CPU_COLUMN]]
    assert logged and logged[-1] == both_processes_s
    assert load_checkpoint(tmp_path / "run" / "generator.safetensors")[1]["training"]["cpu_time_s"] == both_processes_s


def test_num_nodes_reaches_the_trainer_and_is_checked(tmp_path, tiny_data, make_config, monkeypatch):
    seen = {}

    class Stop(Exception):
        pass

    def trainer(**kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(training.L, "Trainer", trainer)
    config = ExperimentConfig.from_dict(make_config(tiny_data, num_nodes=2, devices=4, strategy="ddp"))
    with pytest.raises(Stop):
        training.train(config, tmp_path / "run", progress=False)
    assert (seen["num_nodes"], seen["devices"], seen["strategy"]) == (2, 4, "ddp")
    with pytest.raises(InputError, match="train.num_nodes"):
        ExperimentConfig.from_dict(make_config(tiny_data, num_nodes=0))
