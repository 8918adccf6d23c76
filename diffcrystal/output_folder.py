"""Output folders that never overwrite an earlier run: refuse one (an explicit ``--out``) or
pick the next free name (a default one), as ``sample`` and ``train`` do.

An earlier run is recognised by the files it leaves (e.g. ``summary.csv`` of ``relax``,
``metrics.json`` of ``evaluate``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from diffcrystal.errors import InputError


def earlier_outputs(folder: Path, names: Sequence[str]) -> list[Path]:
    """The files ``names`` (relative to ``folder``) that an earlier run left there."""
    return [Path(folder) / name for name in names if (Path(folder) / name).exists()]


def check_no_earlier_output(folder: Path, names: Sequence[str], what: str) -> None:
    """Refuse (:class:`InputError`) to write into ``folder`` when it holds the output of an
    earlier run (any of ``names``), which would be overwritten: ``what`` names that run."""
    found = earlier_outputs(folder, names)
    if found:
        raise InputError(f"{folder} already holds {what} ({found[0].relative_to(folder)}); "
                         "choose another --out, or leave --out out to get a new folder")


def fresh_folder(default: Path, names: Sequence[str]) -> Path:
    """``default``, or ``default-2``, ``default-3``... the first without any of the output
    files ``names`` of an earlier run."""
    candidates = [default] + [default.with_name(f"{default.name}-{i}") for i in range(2, 10_000)]
    return next(c for c in candidates if not earlier_outputs(c, names))
