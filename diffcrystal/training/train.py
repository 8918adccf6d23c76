"""``train(config)``: fit a generator with Lightning and export it as a safe checkpoint.

Layout of a run folder ``out_dir`` (default ``runs/<config name>``)::

    config.yaml              the resolved experiment config
    checkpoints/last.ckpt    Lightning checkpoint for --resume (every N steps, and where training stops)
    logs/metrics.csv         CSV log of the losses and the time spent (wall and CPU seconds, see
                             :mod:`~diffcrystal.training.clock`), the whole history across resumes
    skipped.csv              data entries that could not be read (source, reason), if any
    generator.safetensors    EMA weights + config + data statistics, for `diffcrystal sample`

Everything that can be checked is checked before the folder is created: the resume file
(:mod:`~diffcrystal.training.resume`), that the folder can be written and holds no other run
(:mod:`~diffcrystal.training.run_folder`), the data, and the Trainer settings. A bad input
is one :class:`~diffcrystal.errors.InputError` and leaves nothing behind.
"""

from __future__ import annotations

import csv
import io
import platform
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import Callback, EMAWeightAveraging
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.loggers import CSVLogger

from diffcrystal.atomic_write import atomic_write_text
from diffcrystal.checkpoint import save_checkpoint
from diffcrystal.errors import InputError
from diffcrystal.training.clock import TrainingClock
from diffcrystal.training.config import ExperimentConfig
from diffcrystal.training.datamodule import CrystalDataModule
from diffcrystal.training.init_weights import read_initial_weights
from diffcrystal.training.module import DiffusionModule
from diffcrystal.training.quiet_lightning import quiet_lightning
from diffcrystal.training.resume import check_resume
from diffcrystal.training.step_checkpoint import StepCheckpoint
from diffcrystal.training.run_folder import (
    GENERATOR_NAME,
    LAST_CHECKPOINT,
    METRICS_FILE,
    check_run_folder,
    metrics_before,
    restore_metrics,
)

SKIPPED_NAME = "skipped.csv"
"""Data entries the reader could not use, one ``source, reason`` row each."""


def _hardware() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()}x {torch.cuda.get_device_name(0)}"
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


class ExportGenerator(Callback):
    """Writes ``generator.safetensors`` from the EMA weights every ``every_n_steps`` optimiser
    steps and at the end of training, so an interrupted run always leaves a usable generator;
    its ``training`` record holds the ``clock``'s wall and CPU seconds."""

    def __init__(self, path: Path, ema: EMAWeightAveraging, every_n_steps: int, clock: TrainingClock):
        self.path = path
        self.ema = ema
        self.every_n_steps = every_n_steps
        self.clock = clock

    def export(self, trainer: L.Trainer, module: DiffusionModule, weights: dict) -> None:
        if trainer.global_rank != 0:
            return
        record = {
            "global_step": int(trainer.global_step),
            "epoch": int(trainer.current_epoch),
            "wall_time_s": round(self.clock.wall_time_s(), 1),
            "cpu_time_s": round(self.clock.cpu_time_s(), 1),
            "hardware": _hardware(),
            "torch": torch.__version__,
        }
        config = {
            "experiment": module.hparams["config"],
            "statistics": module.hparams["statistics"],
            "training": record,
        }
        save_checkpoint(self.path, weights, config)

    def _ema_weights(self, module: DiffusionModule) -> dict:
        average = getattr(self.ema, "_average_model", None)
        source = average.module if average is not None else module
        return {k.removeprefix("denoiser."): v for k, v in source.state_dict().items() if k.startswith("denoiser.")}

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step > 0 and step % self.every_n_steps == 0:
            self.export(trainer, module, self._ema_weights(module))

    def on_train_end(self, trainer, module) -> None:
        # EMAWeightAveraging has copied the averaged weights into the module by now.
        weights = {k.removeprefix("denoiser."): v for k, v in module.state_dict().items() if k.startswith("denoiser.")}
        self.export(trainer, module, weights)


@dataclass(frozen=True)
class TrainResult:
    """``generator_path`` and ``run_dir`` of the run, its final ``global_step``, how many
    data entries were skipped (listed in ``run_dir/skipped.csv``), the wall seconds of
    training (earlier ``--resume`` sessions included) and whether the ``train.max_hours``
    budget stopped it before ``max_steps``."""

    generator_path: Path
    run_dir: Path
    global_step: int
    num_skipped: int = 0
    wall_time_s: float = 0.0
    stopped_by_budget: bool = False


def _skipped_csv(skipped) -> str:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["source", "reason"])
    writer.writerows([entry.source, entry.reason] for entry in skipped)
    return text.getvalue()


def train(
    config: ExperimentConfig,
    out_dir: str | Path | None = None,
    resume: str | Path | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train the experiment's denoiser and export ``generator.safetensors`` into ``out_dir``.

    ``resume``: a Lightning checkpoint (``checkpoints/last.ckpt``) to continue from; it is
    loaded with ``weights_only=True``, and the loss history logged before its step (in the
    ``logs/metrics.csv`` of the run folder holding it) is kept, and the time it spent counts
    toward ``train.max_hours``. Without ``resume``, a folder
    that already holds a run is refused. Raises :class:`InputError` before writing anything
    when an input is bad.
    """
    train_cfg = config.train
    run_dir = Path(out_dir or Path("runs") / config.name)
    resume_step = check_resume(resume, config) if resume is not None else 0
    check_run_folder(run_dir, resuming=resume is not None)
    initial = None
    if train_cfg.init_from and resume is None:  # Lightning restores every weight on resume
        initial = read_initial_weights(train_cfg.init_from, config.model)
    if train_cfg.num_threads:
        torch.set_num_threads(train_cfg.num_threads)
    torch.set_float32_matmul_precision(train_cfg.matmul_precision)
    L.seed_everything(train_cfg.seed, workers=True, verbose=False)

    datamodule = CrystalDataModule(config.data, seed=train_cfg.seed)
    datamodule.setup("fit")
    module = DiffusionModule(config.to_dict(), datamodule.statistics.to_dict())
    if initial is not None:
        initial.apply(module.denoiser)
        if progress:
            print(initial.summary())

    ema = EMAWeightAveraging(decay=train_cfg.ema_decay)
    checkpoints = StepCheckpoint(run_dir / LAST_CHECKPOINT.parent, train_cfg.checkpoint_every_n_steps)
    clock = TrainingClock(train_cfg.max_hours)
    exporter = ExportGenerator(run_dir / GENERATOR_NAME, ema, train_cfg.checkpoint_every_n_steps, clock)
    logger = CSVLogger(run_dir, name=METRICS_FILE.parent.name, version="")
    try:
        with quiet_lightning():
            trainer = L.Trainer(
                max_epochs=train_cfg.max_epochs,
                max_steps=train_cfg.max_steps,
                accelerator=train_cfg.accelerator,
                devices=train_cfg.devices,
                num_nodes=train_cfg.num_nodes,
                strategy=train_cfg.strategy,
                precision=train_cfg.precision,
                gradient_clip_val=train_cfg.gradient_clip_val,
                log_every_n_steps=train_cfg.log_every_n_steps,
                callbacks=[clock, ema, checkpoints, exporter],
                logger=[logger],
                enable_progress_bar=progress,
                enable_model_summary=False,
                default_root_dir=run_dir,
            )
    except (MisconfigurationException, ValueError, RuntimeError) as error:
        message = " ".join(str(error).split())
        raise InputError(
            f"invalid train settings (accelerator/devices/strategy/precision): {message}"
        ) from None

    if trainer.is_global_zero:
        history = ([], [])
        if resume is not None:  # the history lives in the run folder holding the checkpoint
            history = metrics_before(Path(resume).resolve().parents[1] / METRICS_FILE, resume_step)
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
        if datamodule.skipped:
            atomic_write_text(run_dir / SKIPPED_NAME, _skipped_csv(datamodule.skipped))
        else:
            (run_dir / SKIPPED_NAME).unlink(missing_ok=True)
        restore_metrics(logger.experiment, *history)  # creating the experiment empties metrics.csv
    with quiet_lightning():
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume, weights_only=True)
    steps = int(trainer.global_step)
    return TrainResult(
        run_dir / GENERATOR_NAME, run_dir, steps, len(datamodule.skipped), clock.wall_time_s(),
        clock.budget_spent() and steps != train_cfg.max_steps,
    )
