"""Write metrics to ``metrics.json`` and ``metrics.md`` (a markdown table), atomically; read
a ``metrics.json`` back, also gzipped (``metrics.json.gz``, the form committed in ``benchmarks/``).

Each file is written to a temporary file in the same folder and renamed over the target, so
a reader never sees half a file and an interrupted run leaves the previous report intact.
"""

from __future__ import annotations

import gzip
import json
import math
import os
from pathlib import Path
from typing import Any, Protocol

from diffcrystal.atomic_write import atomic_write_text
from diffcrystal.errors import InputError

METRICS_JSON = "metrics.json"
"""File name of the machine-readable report."""

METRICS_JSON_GZ = "metrics.json.gz"
"""File name of the machine-readable report once gzipped (how a run is committed)."""

METRICS_MD = "metrics.md"
"""File name of the human-readable report."""


class Metrics(Protocol):
    """What :func:`write_metrics` needs (satisfied by ``CSPMetrics`` and ``DeNovoMetrics``)."""

    task: str

    def to_dict(self) -> dict[str, Any]: ...

    def table_rows(self) -> list[tuple[str, str, str]]: ...


def _json_ready(value: Any) -> Any:
    """Replace non-finite floats by ``None`` (JSON has no NaN) and numpy scalars by Python ones."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def markdown_table(metrics: Metrics, title: str | None = None, notes: list[str] | None = None) -> str:
    """The metrics as a markdown table: metric | value | counts; then the settings and any
    ``notes`` (one paragraph each)."""
    heading = title or f"diffcrystal {metrics.task} metrics"
    lines = [f"# {heading}", "", "| metric | value | counts |", "|---|---|---|"]
    for name, value, counts in metrics.table_rows():
        lines.append(f"| {name} | {value} | {counts} |")
    settings = metrics.to_dict().get("settings") or {}
    if settings:
        lines += ["", "Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items())]
    for note in notes or []:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def write_metrics(
    metrics: Metrics,
    out_dir: str | os.PathLike,
    *,
    extra: dict[str, Any] | None = None,
    title: str | None = None,
    notes: list[str] | None = None,
) -> tuple[Path, Path]:
    """Write ``metrics.json`` (everything, per-structure detail included) and ``metrics.md``
    (the summary table) into ``out_dir`` (created if needed); return their paths.

    ``extra`` is stored under ``"extra"`` in the JSON (e.g. the command line, data files and
    checkpoint that produced the numbers); ``notes`` are printed under the markdown table.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = metrics.to_dict()
    if extra:
        payload["extra"] = extra
    json_path, md_path = out / METRICS_JSON, out / METRICS_MD
    atomic_write_text(
        json_path, json.dumps(_json_ready(payload), indent=2, allow_nan=False, ensure_ascii=False) + "\n"
    )
    atomic_write_text(md_path, markdown_table(metrics, title, notes))
    return json_path, md_path


def read_metrics_json(path: str | os.PathLike) -> dict[str, Any]:
    """The report in a ``metrics.json``, or in a gzipped one when the name ends in ``.gz``
    (``metrics.json.gz``); :class:`~diffcrystal.errors.InputError` naming the file when it
    cannot be read, unzipped or parsed."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        return json.loads(gzip.decompress(raw) if path.suffix == ".gz" else raw)
    except (OSError, EOFError, ValueError) as error:
        raise InputError(f"{path}: not a readable metrics file ({type(error).__name__}: {error})") from None
