"""The LightningModule: a shell around the denoiser and the joint diffusion loss.

Every step calls :meth:`JointDiffusion.training_loss` (sample t, corrupt each field, denoise,
weighted sum of per-field losses) and logs its parts; the math lives in
:mod:`diffcrystal.diffusion`. Hyperparameters are saved as plain dicts so Lightning
checkpoints load with ``weights_only=True``.
"""

from __future__ import annotations

import math

import lightning as L
import torch

from diffcrystal.diffusion import build_joint_diffusion
from diffcrystal.models import Denoiser
from diffcrystal.training.config import ExperimentConfig

VALIDATION_SEED = 12345
"""Seed of the noise drawn in validation steps, so validation losses are comparable
across epochs."""


class DiffusionModule(L.LightningModule):
    """Trains a :class:`~diffcrystal.models.Denoiser` under the experiment's joint diffusion.

    Parameters
    ----------
    config : ``ExperimentConfig.to_dict()`` of the experiment.
    statistics : ``DataStatistics.to_dict()`` of the training data (kept for the export).
    """

    def __init__(self, config: dict, statistics: dict):
        super().__init__()
        self.save_hyperparameters()
        self.experiment = ExperimentConfig.from_dict(config)
        self.denoiser = Denoiser(self.experiment.model)
        self.joint = build_joint_diffusion(self.experiment.diffusion)
        self._train_generator: torch.Generator | None = None

    def _generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(seed)

    def on_fit_start(self) -> None:
        seed = self.experiment.train.seed + 1_000 * self.global_rank + self.global_step
        self._train_generator = self._generator(seed)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        losses = self.joint.training_loss(self.denoiser, batch, self._train_generator)
        for name, value in losses.items():
            self.log(f"train/{name}", value, batch_size=batch.num_graphs, prog_bar=name == "loss")
        return losses["loss"]

    def validation_step(self, batch, batch_idx: int) -> None:
        generator = self._generator(VALIDATION_SEED + batch_idx)
        losses = self.joint.training_loss(self.denoiser, batch, generator)
        for name, value in losses.items():
            self.log(
                f"val/{name}", value, batch_size=batch.num_graphs, prog_bar=name == "loss", sync_dist=True
            )

    def configure_optimizers(self):
        train = self.experiment.train
        optimizer = torch.optim.AdamW(
            self.denoiser.parameters(), lr=train.learning_rate, weight_decay=train.weight_decay
        )
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = min(train.lr_warmup_steps, total)

        def factor(step: int) -> float:
            """Linear warm-up, then cosine decay to 10 % of the peak learning rate."""
            if step < warmup:
                return (step + 1) / warmup
            progress = min((step - warmup) / max(total - warmup, 1), 1.0)
            return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
