"""The run folder of :func:`~diffcrystal.training.train.train`: checked before any work starts,
and its loss history kept across ``--resume``.

A run folder is refused up front (one :class:`~diffcrystal.errors.InputError`) when it cannot
be created or written, or when it already holds a run that a new one would overwrite.
Lightning's CSV logger deletes ``logs/metrics.csv`` when it starts; on resume,
:func:`metrics_before` reads the rows logged before the checkpoint's step and
:func:`restore_metrics` writes them back, so the file (and any plot of it) covers the whole run.
"""

from __future__ import annotations

import csv
from pathlib import Path

from diffcrystal.atomic_write import probe_writable
from diffcrystal.errors import InputError

GENERATOR_NAME = "generator.safetensors"
"""EMA weights + config + data statistics, for ``diffcrystal sample``."""

LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"
"""Lightning checkpoint for ``--resume``, relative to the run folder."""

METRICS_FILE = Path("logs") / "metrics.csv"
"""The CSV logger's metrics, relative to the run folder."""

STEP_COLUMN = "step"
"""Column of ``metrics.csv`` holding the optimiser step of a row."""


def check_run_folder(run_dir: Path, resuming: bool) -> None:
    """Fail early unless ``run_dir`` (and its ``checkpoints/`` and ``logs/``) can be created and
    written, and, without ``resuming``, it holds no earlier run (its generator or last
    checkpoint would be overwritten)."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError(f"run folder {run_dir} is an existing file, not a folder; choose another --out")
    existing = run_dir
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"cannot create run folder {run_dir}: {existing} is a file, not a folder")
    for folder in (existing, run_dir / LAST_CHECKPOINT.parent, run_dir / METRICS_FILE.parent):
        if not folder.is_dir():
            continue
        try:
            probe_writable(folder)
        except OSError as error:
            raise InputError(
                f"cannot write run folder {run_dir}: {folder} is not writable ({error.strerror})"
            ) from None
    if not resuming:
        earlier = [name for name in (GENERATOR_NAME, LAST_CHECKPOINT) if (run_dir / name).exists()]
        if earlier:
            raise InputError(
                f"{run_dir} already holds a training run ({earlier[0]}); pass "
                f"--resume {run_dir / LAST_CHECKPOINT} to continue it, or choose another --out"
            )


def metrics_before(metrics_file: Path, step: int) -> tuple[list[str], list[dict[str, str]]]:
    """``(header, rows)`` of ``metrics_file`` logged before optimiser step ``step`` (later rows
    belong to steps the resumed run repeats); empty when the file is missing."""
    metrics_file = Path(metrics_file)
    if not metrics_file.is_file():
        return [], []
    with open(metrics_file, newline="") as stream:
        reader = csv.DictReader(stream)
        header = list(reader.fieldnames or [])
        rows = []
        for row in reader:
            try:
                row_step = int(float(row.get(STEP_COLUMN) or "nan"))
            except ValueError:
                continue  # a row cut short by the interruption
            if row_step < step and None not in row:
                rows.append(row)
    return header, rows


def restore_metrics(writer, header: list[str], rows: list[dict[str, str]]) -> None:
    """Write ``rows`` back as the start of the CSV logger's ``metrics.csv``.

    ``writer``: the logger's experiment (``CSVLogger.experiment``), created before this call
    (creating it deletes the old file). Its ``metrics_keys`` are set to ``header`` so that
    Lightning appends under the same columns (and rewrites the file when new ones appear).
    """
    if not rows:
        return
    header = sorted(header)
    with open(writer.metrics_file_path, "w", newline="") as stream:
        table = csv.DictWriter(stream, fieldnames=header)
        table.writeheader()
        table.writerows(rows)
    writer.metrics_keys = header
