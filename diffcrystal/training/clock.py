"""The training clock: wall and CPU seconds spent training, summed over ``--resume`` sessions,
and the wall-clock budget ``train.max_hours`` (``diffcrystal train --max-hours``).

:class:`TrainingClock` is Lightning's :class:`~lightning.pytorch.callbacks.Timer` (what
``Trainer(max_time=...)`` installs): with a budget it stops training cleanly at the first
optimiser step where the wall time spent reaches it, and the last checkpoint is written at
that step. The clock is always installed, budget or not, so every Lightning checkpoint stores
the time spent up to it and a resumed run continues the clock from there (a run trained
1.2 h, then resumed for 1.8 h, has spent 3.0 h; time after a run's last checkpoint, which its
resume repeats, is not counted).

Beside the wall time it counts the CPU seconds of training (:func:`time.process_time`, all
threads), summed over every process of a distributed run (DDP on several CPU processes or
GPUs): on a shared machine wall and CPU time differ, and CPU seconds are what a fixed-budget
comparison of designs needs. Both are logged beside the step in ``logs/metrics.csv``
(:data:`WALL_COLUMN`, :data:`CPU_COLUMN`) at every logged training step and with every
validation loss, so loss-versus-time curves can be drawn for every run.
"""

from __future__ import annotations

import time
from datetime import timedelta

import lightning as L
import torch
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.trainer.states import RunningStage

SECONDS_PER_HOUR = 3600.0

WALL_COLUMN = "elapsed/wall_s"
"""Column of ``metrics.csv``: wall seconds of training so far, across resumes."""

CPU_COLUMN = "elapsed/cpu_s"
"""Column of ``metrics.csv``: CPU seconds of training so far, all processes, across resumes."""

CPU_STATE_KEY = "cpu_time_s"
"""Entry of the clock's checkpoint state holding the CPU seconds spent up to the checkpoint
(the wall seconds are Lightning's ``Timer`` state, ``time_elapsed``)."""

LEGACY_WALL_STATE = ("ExportGenerator", "wall_time_s")
"""Callback state key and entry where checkpoints written before this clock kept their wall
seconds of training."""


def process_cpu_seconds() -> float:
    """CPU seconds of this process, all threads (a module-level name, so tests can stub it)."""
    return time.process_time()


class TrainingClock(Timer):
    """Wall and CPU seconds of training across resumes; stops training after ``max_hours``
    of wall time (``None``: no budget, the clock only counts).

    The CPU seconds of all processes are summed (``trainer.strategy.reduce``) whenever they
    are logged: every training step and validation epoch, on every rank, so checkpoints
    written at a step's end store the total up to that step.
    """

    def __init__(self, max_hours: float | None = None):
        duration = None if max_hours is None else timedelta(hours=max_hours)
        super().__init__(duration=duration, interval="step", verbose=False)
        self.max_hours = max_hours
        self._cpu_offset_s = 0.0
        self._cpu_started: float | None = None
        self._cpu_this_session_s = 0.0

    def wall_time_s(self) -> float:
        """Wall seconds of training, earlier sessions included."""
        return float(self.time_elapsed(RunningStage.TRAINING))

    def cpu_time_s(self) -> float:
        """CPU seconds of training summed over all processes, earlier sessions included, as of
        the last training step or validation epoch that ended."""
        return self._cpu_offset_s + self._cpu_this_session_s

    def _sum_cpu_over_processes(self, trainer: L.Trainer) -> None:
        if self._cpu_started is None:
            return
        local = torch.tensor(process_cpu_seconds() - self._cpu_started, dtype=torch.float64,
                             device=trainer.strategy.root_device)  # NCCL reduces only GPU tensors
        self._cpu_this_session_s = float(trainer.strategy.reduce(local, reduce_op="sum"))

    def budget_spent(self) -> bool:
        """Whether a budget is set and the wall time spent has reached it."""
        return self.max_hours is not None and self.wall_time_s() >= self.max_hours * SECONDS_PER_HOUR

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        super().on_train_start(trainer, module)
        self._cpu_started = process_cpu_seconds()

    def _log_elapsed(self, on_step: bool) -> None:
        self.log(WALL_COLUMN, self.wall_time_s(), on_step=on_step, on_epoch=not on_step)
        self.log(CPU_COLUMN, self.cpu_time_s(), on_step=on_step, on_epoch=not on_step)

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args) -> None:
        self._sum_cpu_over_processes(trainer)
        self._log_elapsed(on_step=True)  # before the budget check, so the last step's row has its time
        super().on_train_batch_end(trainer, module, *args)

    def on_validation_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._sum_cpu_over_processes(trainer)
            self._log_elapsed(on_step=False)

    def state_dict(self) -> dict:
        return {**super().state_dict(), CPU_STATE_KEY: self.cpu_time_s()}

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._cpu_offset_s = float(state_dict.get(CPU_STATE_KEY, 0.0))

    def on_load_checkpoint(self, trainer: L.Trainer, module: L.LightningModule, checkpoint: dict) -> None:
        """A checkpoint written before the clock existed holds its wall seconds in the
        generator exporter's state (:data:`LEGACY_WALL_STATE`); its CPU seconds are unknown
        and count from this session."""
        states = checkpoint.get("callbacks", {})
        if self.state_key not in states:
            self._offset = float(states.get(LEGACY_WALL_STATE[0], {}).get(LEGACY_WALL_STATE[1], 0.0))
