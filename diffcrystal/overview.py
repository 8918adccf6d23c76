"""A picture of a run: ``overview.png`` beside the samples (and the ranking).

Panels (matplotlib, Agg):

- **space groups** found by spglib at :data:`~diffcrystal.symmetry.SYMPREC_LOOSE` (0.1 Å), the
  :data:`TOP_SPACE_GROUPS` most frequent, plus samples that are no crystal;
- **volume per atom** (Å³/atom) and **density** (g/cm³) of the samples against the model's
  training data;
- **shortest interatomic distance** (Å) with the validity threshold
  :data:`~diffcrystal.symmetry.MIN_DISTANCE_A`;
- after ``diffcrystal rank``, **relaxed energy per atom** (eV/atom), and the other panels
  show the relaxed structures beside the sampled ones.

Training data enter as a precomputed summary, not by reading the data at sample time
(reading ``perov_5/train.csv`` alone takes ~10 s, and the files may not be there): each
bundled model's entry in ``checkpoints/manifest.json`` carries ``training_summary``
(:func:`summarize_training`), written by ``scripts/summarize_training_data.py``. A run is
matched to its model by the checkpoint's SHA-256 recorded in ``run.json``; a checkpoint
without a summary (one you trained) gets its panels without the training curve.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from diffcrystal.checkpoint import BUNDLED_DIR, CheckpointError, bundled_models
from diffcrystal.run_record import RUN_RECORD_NAME
from diffcrystal.symmetry import MIN_DISTANCE_A

OVERVIEW_NAME = "overview.png"

TRAINING_SUMMARY_KEY = "training_summary"
"""Field of a model's entry in ``checkpoints/manifest.json`` holding :func:`summarize_training`."""

SUMMARY_BINS = 30
"""Histogram bins of a training summary, spanning :data:`SUMMARY_RANGE`."""

SUMMARY_RANGE = (0.005, 0.995)
"""Quantiles bounding a training histogram (outliers are counted as ``below`` / ``above``)."""

SUMMARY_QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
"""Quantiles stored in a training summary."""

TOP_SPACE_GROUPS = 12
"""Bars in the space-group panel (the most frequent groups)."""

PLOT_BINS = 30
"""Bins of the sample histograms."""

PROPERTIES = {
    "volume_per_atom_A3": "volume per atom (Å³/atom)",
    "density_g_cm3": "density (g/cm³)",
}
"""Properties compared with the training data: summary key -> panel title."""

DISTANCE_TITLE = "shortest interatomic distance (Å)"
SPACE_GROUP_TITLE = "space groups (spglib, 0.1 Å)"
ENERGY_TITLE = "relaxed energy per atom (eV/atom)"
ENERGY_STATUSES = ("converged", "not_converged")
"""Relaxation statuses whose energy the energy panel shows (converged and not converged
apart); exploded and failed relaxations have none."""

NO_CRYSTAL = "no crystal"
NO_SPACE_GROUP = "none found"


@dataclass(frozen=True)
class StructureStats:
    """What the overview shows of one structure (``nan`` where there is no crystal).

    ``space_group`` as ``'Pm-3m (221)'``, :data:`NO_SPACE_GROUP` or :data:`NO_CRYSTAL`;
    ``volume_per_atom_A3`` Å³/atom; ``density_g_cm3`` g/cm³; ``min_distance_A`` Å;
    ``energy_per_atom_eV`` eV/atom (relaxations with a status in :data:`ENERGY_STATUSES`
    only) and whether that relaxation ``converged``.
    """

    space_group: str
    volume_per_atom_A3: float
    density_g_cm3: float
    min_distance_A: float
    energy_per_atom_eV: float = math.nan
    converged: bool = False


# ---------------------------------------------------------------------- training summary
def _histogram(values: np.ndarray) -> dict:
    low, high = np.quantile(values, SUMMARY_RANGE)
    if high <= low:  # all (nearly) equal: one narrow bin around them
        low, high = low - 0.5, high + 0.5
    counts, edges = np.histogram(values, bins=SUMMARY_BINS, range=(low, high))
    return {
        "edges": [round(float(e), 5) for e in edges],
        "counts": [int(c) for c in counts],
        "below": int((values < low).sum()),
        "above": int((values > high).sum()),
        "quantiles": {str(q): round(float(v), 5) for q, v in zip(SUMMARY_QUANTILES, np.quantile(values, SUMMARY_QUANTILES))},
    }


def summarize_training(crystals: Sequence, source: str | list[str]) -> dict:
    """The :data:`TRAINING_SUMMARY_KEY` record of a model trained on ``crystals``.

    Per property of :data:`PROPERTIES`: a histogram (``edges``, ``counts``, ``below`` /
    ``above`` its range) and ``quantiles``; plus ``num_structures`` and ``source``.
    """
    if not crystals:
        raise ValueError("no training crystals to summarise")
    volumes = np.array([c.volume / c.num_atoms for c in crystals])
    densities = np.array([c.to_structure().density for c in crystals], dtype=float)
    return {
        "num_structures": len(crystals),
        "source": source,
        "volume_per_atom_A3": _histogram(volumes),
        "density_g_cm3": _histogram(densities),
    }


def training_summary(checkpoint_sha256: str | None, directory: Path = BUNDLED_DIR) -> dict | None:
    """The training summary of the bundled model whose file has ``checkpoint_sha256``, or
    ``None`` (not a bundled model, no summary, or no manifest)."""
    if not checkpoint_sha256:
        return None
    try:
        models = bundled_models(directory)
    except CheckpointError:
        return None
    for entry in models.values():
        if entry.get("sha256") == checkpoint_sha256:
            return entry.get(TRAINING_SUMMARY_KEY)
    return None


def run_training_summary(folder: str | Path) -> dict | None:
    """:func:`training_summary` of the checkpoint a sample folder's ``run.json`` names."""
    path = Path(folder) / RUN_RECORD_NAME
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return training_summary(record.get("checkpoint_sha256")) if isinstance(record, dict) else None


# ---------------------------------------------------------------------- what to plot
def _float(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def stats_from_summary(path: str | Path) -> list[StructureStats]:
    """One :class:`StructureStats` per row of a ``diffcrystal sample`` ``summary.csv``."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    stats = []
    for row in rows:
        number = _float(row.get("spacegroup_number"))
        number = int(number) if math.isfinite(number) else 0
        volume = _float(row.get("volume_per_atom_A3"))
        if not row.get("formula") or not math.isfinite(volume):
            group = NO_CRYSTAL
        else:
            group = f"{row.get('spacegroup_symbol')} ({number})" if number else NO_SPACE_GROUP
        stats.append(StructureStats(group, volume, _float(row.get("density_g_cm3")),
                                    _float(row.get("min_distance_A"))))
    return stats


def stats_from_relaxed(results: Sequence) -> list[StructureStats]:
    """One :class:`StructureStats` per :class:`~diffcrystal.potential.results.RelaxResult`
    (its relaxed structure; energy only where the result may enter a ranking)."""
    from diffcrystal.symmetry import min_distance

    stats = []
    for result in results:
        if result.atoms is None:
            stats.append(StructureStats(NO_CRYSTAL, math.nan, math.nan, math.nan))
            continue
        crystal = result.crystal
        group = f"{result.space_group} ({result.space_group_number})" if result.space_group_number else NO_SPACE_GROUP
        energy = result.energy_per_atom if result.status in ENERGY_STATUSES else math.nan
        stats.append(StructureStats(group, crystal.volume / crystal.num_atoms,
                                    float(crystal.to_structure().density), min_distance(crystal), energy,
                                    bool(result.converged)))
    return stats


# ---------------------------------------------------------------------- the figure
def _finite(values) -> np.ndarray:
    array = np.asarray(list(values), dtype=float)
    return array[np.isfinite(array)]


def _space_group_panel(axes, series: Mapping[str, Sequence[StructureStats]]) -> None:
    from collections import Counter

    counts = {name: Counter(s.space_group for s in stats) for name, stats in series.items()}
    total = Counter()
    for counter in counts.values():
        total.update(counter)
    groups = [g for g, _ in total.most_common() if g not in (NO_CRYSTAL,)][:TOP_SPACE_GROUPS]
    if total[NO_CRYSTAL]:
        groups.append(NO_CRYSTAL)
    height = 0.8 / max(len(series), 1)
    positions = np.arange(len(groups))
    for i, (name, counter) in enumerate(counts.items()):
        axes.barh(positions + i * height, [counter[g] for g in groups], height=height, label=name)
    axes.set_yticks(positions + height * (len(series) - 1) / 2, groups, fontsize=7)
    axes.invert_yaxis()
    axes.set_xlabel("structures")


def _property_panel(axes, key: str, series: Mapping[str, Sequence[StructureStats]], training: dict | None) -> None:
    values = {name: _finite(getattr(s, key) for s in stats) for name, stats in series.items()}
    pooled = np.concatenate([v for v in values.values()] + [np.empty(0)])
    reference = (training or {}).get(key)
    bounds = list(np.quantile(pooled, [0.01, 0.99])) if pooled.size else []
    if reference:
        bounds += [reference["edges"][0], reference["edges"][-1]]
        edges = np.asarray(reference["edges"], dtype=float)
        counts = np.asarray(reference["counts"], dtype=float)
        total = counts.sum() + reference["below"] + reference["above"]
        axes.stairs(counts / (total * np.diff(edges)), edges, fill=True, color="0.85",
                    label=f"training ({training['num_structures']})")
        axes.axvline(reference["quantiles"]["0.5"], color="0.5", linestyle=":", linewidth=1)
    if not bounds:
        axes.text(0.5, 0.5, "no structures", ha="center", va="center", transform=axes.transAxes)
        return
    low, high = min(bounds), max(bounds)
    if high <= low:
        low, high = low - 0.5, high + 0.5
    for name, data in values.items():
        if data.size:
            axes.hist(np.clip(data, low, high), bins=PLOT_BINS, range=(low, high), density=True,
                      histtype="step", linewidth=1.5, label=f"{name} ({data.size})")
    axes.set_ylabel("probability density")


def _distance_panel(axes, series: Mapping[str, Sequence[StructureStats]]) -> None:
    values = {name: _finite(s.min_distance_A for s in stats) for name, stats in series.items()}
    pooled = np.concatenate([v for v in values.values()] + [np.empty(0)])
    high = max(float(pooled.max()) if pooled.size else 0.0, 2 * MIN_DISTANCE_A)
    for name, data in values.items():
        if data.size:
            axes.hist(data, bins=PLOT_BINS, range=(0.0, high), histtype="step", linewidth=1.5,
                      label=f"{name} ({data.size})")
    axes.axvline(MIN_DISTANCE_A, color="red", linestyle="--", linewidth=1,
                 label=f"valid above {MIN_DISTANCE_A} Å")
    axes.set_ylabel("structures")


def _energy_panel(axes, series: Mapping[str, Sequence[StructureStats]], potential: str) -> None:
    pooled = [s for stats in series.values() for s in stats if math.isfinite(s.energy_per_atom_eV)]
    if not pooled:
        axes.text(0.5, 0.5, "no relaxation ended with an energy", ha="center", va="center",
                  transform=axes.transAxes, fontsize=8)
        return
    energies = np.array([s.energy_per_atom_eV for s in pooled])
    low, high = float(energies.min()), float(energies.max())
    if high <= low:
        low, high = low - 0.05, high + 0.05
    for converged, label in ((True, "converged"), (False, "not converged")):
        part = [s.energy_per_atom_eV for s in pooled if s.converged == converged]
        if part:
            axes.hist(part, bins=PLOT_BINS, range=(low, high), histtype="step", linewidth=1.5,
                      label=f"{label} ({len(part)})")
    converged = [s.energy_per_atom_eV for s in pooled if s.converged]
    if converged:
        axes.axvline(min(converged), color="black", linestyle="--", linewidth=1,
                     label=f"lowest converged {min(converged):.3f}")
    axes.set_xlabel(f"eV/atom ({potential})")
    axes.set_ylabel("structures")


def plot_overview(
    series: Mapping[str, Sequence[StructureStats]],
    path: str | Path,
    *,
    training: dict | None = None,
    potential: str | None = None,
    title: str = "",
) -> list[str]:
    """Draw the overview of ``series`` (name -> structures, e.g. ``{'sampled': [...]}``) into
    ``path`` (PNG, written to a temporary name and renamed into place).

    ``training``: a :func:`summarize_training` record drawn behind the volume and density
    panels. ``potential``: when given, an energy panel is added. Returns the panel titles.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = [SPACE_GROUP_TITLE, *PROPERTIES.values(), DISTANCE_TITLE]
    if potential is not None:
        titles.append(ENERGY_TITLE)
    columns = 2 if len(titles) <= 4 else 3
    figure, grid = plt.subplots(2, columns, figsize=(5.0 * columns, 8.0), squeeze=False)
    panels = list(grid.flat)
    for spare in panels[len(titles):]:
        figure.delaxes(spare)
    _space_group_panel(panels[0], series)
    for axes, key in zip(panels[1:3], PROPERTIES):
        _property_panel(axes, key, series, training)
    _distance_panel(panels[3], series)
    if potential is not None:
        _energy_panel(panels[4], series, potential)
    for axes, text in zip(panels, titles):
        axes.set_title(text, fontsize=10)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=7)
    if title:
        figure.suptitle(title, fontsize=11)
    if training is None:
        figure.text(0.01, 0.005, "training data: no summary for this checkpoint", fontsize=7, color="0.4")
    figure.tight_layout()
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp.png")
    try:
        figure.savefig(temporary, dpi=100)
        temporary.replace(path)
    finally:
        plt.close(figure)
        temporary.unlink(missing_ok=True)
    return [axes.get_title() for axes in figure.axes]


def write_sample_overview(folder: str | Path) -> Path:
    """``overview.png`` of a ``diffcrystal sample`` folder, from its ``summary.csv`` (all rows,
    resumed runs included) and the training summary of the checkpoint in ``run.json``."""
    from diffcrystal.sample_writer import SUMMARY_NAME

    folder = Path(folder)
    stats = stats_from_summary(folder / SUMMARY_NAME)
    path = folder / OVERVIEW_NAME
    plot_overview({"sampled": stats}, path, training=run_training_summary(folder),
                  title=f"{folder.name}: {len(stats)} structures sampled")
    return path


def input_series(inputs: Sequence[str | Path]) -> tuple[dict[str, list[StructureStats]], dict | None]:
    """The structures of ``rank``'s input folders by kind, from each folder's ``summary.csv``:
    ``'sampled'`` (a sample folder's) and ``'relaxed before'`` (an earlier ``relax`` run's, whose
    summary carries relaxed values: ``energy_per_atom_eV``); and the first training summary
    found. Folders without a usable summary add nothing."""
    from diffcrystal.sample_writer import SUMMARY_NAME

    series: dict[str, list[StructureStats]] = {}
    training = None
    for folder in (Path(p) for p in inputs):
        summary = folder / SUMMARY_NAME
        if folder.is_dir() and summary.is_file():
            with open(summary, newline="") as handle:
                header = next(csv.reader(handle), [])
            if set(PROPERTIES) <= set(header):
                kind = "relaxed before" if "energy_per_atom_eV" in header else "sampled"
                series.setdefault(kind, []).extend(stats_from_summary(summary))
            training = training or run_training_summary(folder)
    return series, training


def write_rank_overview(report, inputs: Sequence[str | Path], out_dir: str | Path) -> Path:
    """``overview.png`` of a ``diffcrystal rank`` run in ``out_dir``: the relaxed structures of
    ``report`` (a :class:`~diffcrystal.potential.rank.RankingReport`) beside the input ones
    (:func:`input_series`), with an energy panel."""
    series, training = input_series(inputs)
    series["relaxed"] = stats_from_relaxed(report.results)
    path = Path(out_dir) / OVERVIEW_NAME
    plot_overview(series, path, training=training, potential=report.potential.split("/")[-1],
                  title=f"{len(report.results)} relaxed with {report.potential.split('/')[-1]}, "
                        f"{len(report.entries)} distinct converged crystals")
    return path
