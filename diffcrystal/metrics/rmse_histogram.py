"""Histogram of the matched targets' normalised RMS, with the precision thresholds marked.

One panel for @1 and, when k > 1, one for @k (each matched target's best candidate). The bins
span [0, stol]: a matched pair's RMS is at most its largest site displacement, which the
matcher keeps below ``stol``. Dashed lines mark :data:`~diffcrystal.metrics.csp.PRECISE_RMSE_THRESHOLDS`.
Drawn on a bare matplotlib ``Figure`` (Agg, no pyplot, no display) and written atomically,
with the mode of any other file written (:mod:`diffcrystal.atomic_write`).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from diffcrystal.atomic_write import atomic_write_bytes
from diffcrystal.metrics.csp import PRECISE_RMSE_THRESHOLDS, CSPMetrics

RMSE_HISTOGRAM_PNG = "rmse_histogram.png"
"""File name of the histogram in an evaluation folder."""

N_BINS = 50
"""Bins over [0, stol] (0.01 wide at the protocol's stol = 0.5)."""


def write_rmse_histogram(metrics: CSPMetrics, path: str | os.PathLike, title: str = "") -> Path:
    """Draw the RMS histogram(s) of ``metrics`` into the PNG file ``path``; return the path."""
    from matplotlib.figure import Figure  # a bare Figure renders with Agg; pyplot's state is untouched

    panels = [("1", "@1")] + ([("k", f"@{metrics.k} (best match)")] if metrics.k > 1 else [])
    figure = Figure(figsize=(5.0 * len(panels), 3.6), layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    bins = np.linspace(0.0, metrics.stol, N_BINS + 1)
    for ax, (at, label) in zip(axes, panels):
        values = metrics.rmse_values(at)
        ax.hist(values, bins=bins, color="tab:blue")
        for threshold, style in zip(PRECISE_RMSE_THRESHOLDS, ("--", ":")):
            count = metrics.n_precise(at, threshold)
            ax.axvline(threshold, color="tab:red", linestyle=style,
                       label=f"RMSE < {threshold}: {count} / {metrics.n_targets} targets")
        ax.set_xlim(0.0, metrics.stol)
        ax.set_xlabel("normalised RMS displacement")
        ax.set_ylabel("matched targets")
        ax.set_title(f"{label}: {len(values)} / {metrics.n_targets} matched")
        ax.legend(fontsize="small")
    if title:
        figure.suptitle(title)
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=100)
    atomic_write_bytes(path, image.getvalue())
    return Path(path)
