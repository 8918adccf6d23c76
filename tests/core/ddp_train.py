"""Trains the tiny config with Lightning ``strategy="ddp"`` on 2 CPU processes (gloo) and
writes, per rank, ``rank<R>.json``: the crystals (atomic numbers) of each batch it trained on,
checksums of its denoiser's weights before and after training, and the training clock's CPU
seconds. Each rank's process CPU clock is stubbed to spend ``CPU_PER_RANK_S * (rank + 1)``
seconds during training, so the clock's sum over the processes is known exactly.

Run as a script (Lightning's launcher starts rank 1 by running the same command again):
``python tests/core/ddp_train.py DATA OUT_DIR``; used by ``test_ddp.py``.
"""

import json
import os
import sys
from pathlib import Path

import lightning as L
import torch

from diffcrystal.training import clock as training_clock
from diffcrystal.training import train as training
from diffcrystal.training.config import ExperimentConfig
from tests.core.conftest import tiny_config

CPU_PER_RANK_S = 7.0
"""CPU seconds the stubbed clock of rank r reports spent in training: 7.0 * (r + 1)."""


def stub_process_cpu_clock(rank: int) -> None:
    """The first reading (the clock's start of training) is 100 s, every later one 100 s plus
    this rank's CPU seconds of training."""
    readings = []

    def process_cpu_seconds() -> float:
        readings.append(None)
        return 100.0 if len(readings) == 1 else 100.0 + CPU_PER_RANK_S * (rank + 1)

    training_clock.process_cpu_seconds = process_cpu_seconds


def weights_checksum(module) -> list[float]:
    """Sum and sum of squares of every denoiser weight (float64)."""
    values = torch.cat([p.detach().double().reshape(-1) for p in module.denoiser.parameters()])
    return [float(values.sum()), float((values ** 2).sum())]


class RecordRank(L.Callback):
    def __init__(self, out: Path):
        self.out, self.batches, self.initial = out, [], None

    def on_train_start(self, trainer, module):
        self.initial = weights_checksum(module)

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        counts = batch.num_atoms.reshape(-1).tolist()
        numbers = batch.atomic_numbers.tolist()
        crystals, start = [], 0
        for count in counts:
            crystals.append(sorted(numbers[start:start + count]))
            start += count
        self.batches.append(sorted(crystals))

    def on_train_end(self, trainer, module):
        clock = next(c for c in trainer.callbacks if isinstance(c, training_clock.TrainingClock))
        record = {"rank": trainer.global_rank, "world_size": trainer.world_size, "batches": self.batches,
                  "initial": self.initial, "final": weights_checksum(module), "steps": trainer.global_step,
                  "cpu_time_s": clock.cpu_time_s()}
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


def main(data: str, out: str) -> None:
    out = Path(out)
    record = RecordRank(out)
    stub_process_cpu_clock(int(os.environ.get("LOCAL_RANK", "0")))  # Lightning's launcher sets it for rank 1

    class Trainer(L.Trainer):
        def __init__(self, *args, callbacks=(), **kwargs):
            super().__init__(*args, callbacks=[*callbacks, record], **kwargs)

    training.L.Trainer = Trainer
    config = tiny_config(Path(data), max_steps=3, accelerator="cpu", devices=2, strategy="ddp", ema_decay=0.0)
    config["data"]["batch_size"] = 2
    training.train(ExperimentConfig.from_dict(config), out / "run", progress=False)


if __name__ == "__main__":
    main(*sys.argv[1:])
