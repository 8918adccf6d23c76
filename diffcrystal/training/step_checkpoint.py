"""Lightning checkpoints of a run: every N optimiser steps, and at the step where training stops.

Lightning's :class:`~lightning.pytorch.callbacks.ModelCheckpoint` writes ``last.ckpt`` every N
steps, but a run that stops between two of them (a time budget, ``max_steps`` not a multiple
of N) would resume from the earlier one and repeat the steps in between. Its own save at the
end of training is no remedy: it runs after the EMA callback has copied the averaged weights
into the model, so the checkpoint would resume training from the average instead of the
trained weights. :class:`StepCheckpoint` writes ``last.ckpt`` at the stopping step itself,
right after that step's EMA update, like any periodic checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from diffcrystal.training.run_folder import LAST_CHECKPOINT


class StepCheckpoint(ModelCheckpoint):
    """``last.ckpt`` (and the newest ``step<N>.ckpt``) in ``dirpath`` (the run folder's
    ``checkpoints/``) every ``every_n_steps``
    optimiser steps and at the step where training stops."""

    def __init__(self, dirpath: Path, every_n_steps: int):
        super().__init__(
            dirpath=dirpath,
            filename="step{step}",
            auto_insert_metric_name=False,
            every_n_train_steps=every_n_steps,
            save_last=True,
            save_top_k=1,
            monitor=None,
        )
        self.every_n_steps = every_n_steps

    @staticmethod
    def _stopping(trainer: L.Trainer) -> bool:
        reached_max_steps = trainer.max_steps != -1 and trainer.global_step >= trainer.max_steps
        return trainer.should_stop or reached_max_steps

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args) -> None:
        super().on_train_batch_end(trainer, module, *args)
        if self._stopping(trainer) and trainer.global_step % self.every_n_steps != 0:
            trainer.save_checkpoint(Path(self.dirpath) / LAST_CHECKPOINT.name)

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        """Nothing: the stopping step has been saved already (see the module docstring)."""
