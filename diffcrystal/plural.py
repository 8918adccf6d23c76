"""Counts in messages: ``counted(1, "step")`` is ``'1 step'``, ``counted(3, "step")`` ``'3 steps'``."""

from __future__ import annotations


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``count`` (with thousands separators) and ``noun``, in the plural (``plural``, default
    ``noun + 's'``) unless ``count`` is 1."""
    return f"{count:,} {noun if count == 1 else plural or noun + 's'}"
