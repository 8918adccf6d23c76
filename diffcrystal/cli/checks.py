"""Range checks of command-line values, run before any heavy import (one-line
:class:`~diffcrystal.errors.InputError`, exit code 1)."""

from __future__ import annotations

from diffcrystal.errors import InputError


def at_least(option: str, value: int | float | None, minimum: int | float) -> None:
    """Refuse ``value`` below ``minimum``; ``None`` (option not given) passes."""
    if value is not None and not value >= minimum:
        raise InputError(f"{option} must be at least {minimum}, got {value}")
