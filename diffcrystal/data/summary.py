"""What is in a dataset: counts of structures, elements, cell sizes, space groups, skips.

:func:`summarize` computes a :class:`DatasetSummary` from a
:class:`~diffcrystal.data.readers.ReadResult`; :func:`format_summary` renders it as the text
``diffcrystal info`` prints.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ase.data import chemical_symbols

from functools import partial

from diffcrystal.data.crystal import Crystal
from diffcrystal.data.readers import ReadResult, SkippedEntry, parallel_map
from diffcrystal.plural import counted
from diffcrystal.symmetry import SYMPREC_LOOSE, space_group

HISTOGRAM_WIDTH = 40
"""Characters of the longest bar of the atoms-per-cell histogram."""

MAX_SPACE_GROUPS_SHOWN = 15
"""Most frequent space groups listed (the rest are summed in one line)."""

MAX_REASON_GROUPS_SHOWN = 10
"""Most frequent kinds of skip reason listed."""

EXAMPLES_PER_REASON = 3
"""Skipped entries shown as examples of each kind of reason."""

MAX_REASON_KIND_CHARS = 80
"""A kind of skip reason is cut to this many characters."""

_BAR = "#"


@dataclass
class DatasetSummary:
    """Counts describing a dataset.

    ``element_structures``/``element_atoms``: atomic number -> number of structures holding
    it / number of atoms of it; ``atoms_per_cell``: atoms per cell -> structures;
    ``space_groups``: (number, symbol) -> structures (spglib at ``symprec`` Å; number 0 when
    spglib finds none); ``skipped``: entries not read; ``seconds``: load time.
    """

    num_structures: int
    element_structures: Counter = field(default_factory=Counter)
    element_atoms: Counter = field(default_factory=Counter)
    atoms_per_cell: Counter = field(default_factory=Counter)
    space_groups: Counter = field(default_factory=Counter)
    skipped: list[SkippedEntry] = field(default_factory=list)
    source: Path | None = None
    seconds: float = 0.0
    from_cache: bool = False
    symprec: float = SYMPREC_LOOSE


def _space_group_key(crystal: Crystal, symprec: float) -> tuple[int, str]:
    found = space_group(crystal, symprec)
    return found.number, found.symbol


def summarize(result: ReadResult, symprec: float = SYMPREC_LOOSE, *, workers: int | None = None,
              progress: bool = True) -> DatasetSummary:
    """Count the elements, cell sizes and space groups (spglib, ``symprec`` in Å; found in
    ``workers`` processes, see :func:`~diffcrystal.data.readers.parallel_map`) of
    ``result.crystals`` and carry over its skipped entries and load time."""
    summary = DatasetSummary(
        num_structures=len(result.crystals),
        skipped=list(result.skipped),
        source=result.source,
        seconds=result.seconds,
        from_cache=result.from_cache,
        symprec=symprec,
    )
    for crystal in result.crystals:
        numbers = crystal.atomic_numbers.tolist()
        summary.element_atoms.update(numbers)
        summary.element_structures.update(set(numbers))
        summary.atoms_per_cell[crystal.num_atoms] += 1
    summary.space_groups.update(parallel_map(
        partial(_space_group_key, symprec=symprec), result.crystals, workers=workers,
        progress=progress, description="space groups",
    ))
    return summary


def reason_kind(reason: str) -> str:
    """The kind of a skip reason, for grouping: its text before the first ``:``, ``(`` or
    ``;``, with numbers replaced by ``#``."""
    head = re.split(r"[:(;]", reason, maxsplit=1)[0].strip() or reason.strip()
    return re.sub(r"\d+(\.\d+)?", "#", head)[:MAX_REASON_KIND_CHARS]


def _histogram(counts: Counter) -> list[str]:
    largest = max(counts.values())
    label_width = len(str(max(counts)))
    lines = []
    for size in sorted(counts):
        bar = _BAR * max(1, round(HISTOGRAM_WIDTH * counts[size] / largest))
        lines.append(f"  {size:>{label_width}} | {bar} {counts[size]:,}")
    return lines


def format_summary(summary: DatasetSummary) -> str:
    """The summary as the multi-line text ``diffcrystal info`` prints."""
    name = summary.source.name if summary.source else "dataset"
    num_skipped = len(summary.skipped)
    lines = [
        f"{name}: {counted(summary.num_structures, 'structure')} read, {num_skipped:,} skipped "
        f"(loaded in {summary.seconds:.2f} s{', from cache' if summary.from_cache else ''})",
    ]
    lines.append(f"Elements ({len(summary.element_structures)}), structures containing / atoms:")
    lines.append("  " + ", ".join(
        f"{chemical_symbols[z]} {n:,}/{summary.element_atoms[z]:,}"
        for z, n in sorted(summary.element_structures.items(), key=lambda item: (-item[1], item[0]))
    ))
    if summary.atoms_per_cell:
        lines.append("Atoms per cell:")
        lines.extend(_histogram(summary.atoms_per_cell))
    lines.append(f"Space groups ({len(summary.space_groups)} distinct, spglib symprec "
                 f"{summary.symprec} Å):")
    ranked = sorted(summary.space_groups.items(), key=lambda item: (-item[1], item[0][0]))
    for (number, symbol), count in ranked[:MAX_SPACE_GROUPS_SHOWN]:
        label = f"{symbol} ({number})" if number else "none found"
        lines.append(f"  {label:<16} {count:,}")
    if len(ranked) > MAX_SPACE_GROUPS_SHOWN:
        rest = sum(count for _, count in ranked[MAX_SPACE_GROUPS_SHOWN:])
        lines.append(f"  {len(ranked) - MAX_SPACE_GROUPS_SHOWN} others{'':<9} {rest:,}")
    lines.append(f"Skipped: {num_skipped:,}")
    groups: dict[str, list[SkippedEntry]] = {}
    for entry in summary.skipped:
        groups.setdefault(reason_kind(entry.reason), []).append(entry)
    ordered = sorted(groups.items(), key=lambda item: -len(item[1]))
    for kind, entries in ordered[:MAX_REASON_GROUPS_SHOWN]:
        lines.append(f"  {len(entries):,} x {kind}")
        for entry in entries[:EXAMPLES_PER_REASON]:
            lines.append(f"      {entry}")
    if len(ordered) > MAX_REASON_GROUPS_SHOWN:
        rest = sum(len(entries) for _, entries in ordered[MAX_REASON_GROUPS_SHOWN:])
        lines.append(f"  {rest:,} more in {len(ordered) - MAX_REASON_GROUPS_SHOWN} other kinds")
    return "\n".join(lines)
