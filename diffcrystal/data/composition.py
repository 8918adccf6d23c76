"""Chemical compositions as ``{atomic number: count}``: parsing formulas typed by a user.

A composition is a ``dict[int, int]`` mapping an atomic number (1..100, see
:data:`diffcrystal.MAX_ATOMIC_NUMBER`) to a positive integer count, keys in ascending order.
It describes a *formula unit*; :func:`multiply` scales it by the number of formula units per
cell ``Z`` and :func:`to_atomic_numbers` expands it to the sorted species list of one cell.

Grammar accepted by :func:`parse_composition` (whitespace between tokens is ignored)::

    formula := group+
    group   := (Element | "(" formula ")" | "[" formula "]") count?
    count   := positive integer (default 1)

>>> parse_composition("YBa2Cu3O7") == parse_composition("Ba2YCu3O7") == {8: 7, 29: 3, 39: 1, 56: 2}
True
>>> parse_composition("(SrTiO3)2")
{8: 6, 22: 2, 38: 2}
>>> to_atomic_numbers(multiply(parse_composition("NaCl"), 2))
[11, 11, 17, 17]
>>> format_composition({8: 3, 22: 1, 38: 1})
'O3TiSr'
"""

from __future__ import annotations

import math

import re

from ase.data import chemical_symbols

from diffcrystal import MAX_ATOMIC_NUMBER
from diffcrystal.errors import InputError

Composition = dict[int, int]
"""Atomic number (1..100) -> positive number of atoms, keys ascending."""

SYMBOL_TO_Z: dict[str, int] = {symbol: z for z, symbol in enumerate(chemical_symbols) if z > 0}
"""Every element symbol ASE knows (Z = 1..118) -> atomic number; 'X' (dummy, Z=0) excluded."""

_BRACKETS = {"(": ")", "[": "]"}

_TOKEN = re.compile(
    r"\s*(?:"
    r"(?P<element>[A-Z][a-z]*)"
    r"|(?P<number>\d+(?:\.\d*)?|\.\d+)"
    r"|(?P<open>[(\[])"
    r"|(?P<close>[)\]])"
    r")"
)


class CompositionError(InputError):
    """A chemical formula that cannot be turned into integer atom counts."""


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    """Split ``text`` into ``(kind, value, position)`` tokens; whitespace is skipped."""
    tokens = []
    position = 0
    stripped_end = len(text.rstrip())
    while position < stripped_end:
        match = _TOKEN.match(text, position)
        if match is None or match.lastgroup is None:
            bad = text[position:].lstrip()[0]
            where = position + (len(text[position:]) - len(text[position:].lstrip()))
            hint = " (element symbols start with a capital letter)" if bad.islower() else ""
            raise CompositionError(
                f"unexpected character {bad!r} at position {where} in formula {text!r}{hint}"
            )
        kind = match.lastgroup
        tokens.append((kind, match.group(kind), match.start(kind)))
        position = match.end()
    return tokens


def _count(tokens: list, index: int, text: str, what: str) -> tuple[int, int]:
    """Read the optional count after a group at ``tokens[index]``; returns (count, next index)."""
    if index >= len(tokens) or tokens[index][0] != "number":
        return 1, index
    _, value, position = tokens[index]
    if not value.isdigit():
        raise CompositionError(
            f"fractional count {value!r} after {what} in formula {text!r}: give integer atom "
            "counts of one cell or formula unit (e.g. Li1Co2O4 rather than Li0.5CoO2)"
        )
    count = int(value)
    if count == 0:
        raise CompositionError(f"zero count after {what} at position {position} in formula {text!r}")
    return count, index + 1


def _parse_group_sequence(tokens: list, index: int, text: str, closing: str | None):
    """Parse groups until ``closing`` (or the end); returns (counts, next index)."""
    counts: dict[int, int] = {}
    start = index
    while index < len(tokens):
        kind, value, position = tokens[index]
        if kind == "close":
            if closing is None:
                raise CompositionError(f"unmatched {value!r} at position {position} in formula {text!r}")
            if value != closing:
                raise CompositionError(
                    f"expected {closing!r} but found {value!r} at position {position} in formula {text!r}"
                )
            if index == start:
                raise CompositionError(f"empty brackets at position {position} in formula {text!r}")
            return counts, index + 1
        if kind == "number":
            raise CompositionError(
                f"count {value!r} at position {position} follows no element in formula {text!r}"
            )
        if kind == "element":
            if value not in SYMBOL_TO_Z:
                raise CompositionError(f"unknown element {value!r} in formula {text!r}")
            z = SYMBOL_TO_Z[value]
            if z > MAX_ATOMIC_NUMBER:
                raise CompositionError(
                    f"element {value} (Z={z}) is beyond the {MAX_ATOMIC_NUMBER} elements "
                    "diffcrystal models"
                )
            count, index = _count(tokens, index + 1, text, value)
            counts[z] = counts.get(z, 0) + count
            continue
        # kind == "open"
        inner, index = _parse_group_sequence(tokens, index + 1, text, _BRACKETS[value])
        count, index = _count(tokens, index, text, f"bracket closed before position {position}")
        for z, n in inner.items():
            counts[z] = counts.get(z, 0) + n * count
    if closing is not None:
        raise CompositionError(f"missing {closing!r} in formula {text!r}")
    return counts, index


def parse_composition(text: str) -> Composition:
    """Atom counts of a chemical formula such as ``'YBa2Cu3O7'`` or ``'(SrTiO3)2'``.

    Element order does not matter, repeated elements add up, brackets ``()``/``[]`` nest and
    multiply, whitespace between tokens is ignored.

    Returns
    -------
    dict[int, int]
        Atomic number -> count (a positive integer), in ascending atomic number.

    Raises
    ------
    CompositionError
        On an empty or malformed formula, an unknown element (or one beyond Z = 100), a
        fractional count such as ``Li0.5CoO2`` or a zero count.
    """
    if not isinstance(text, str):
        raise CompositionError(f"formula must be a string, got {type(text).__name__}")
    if not text.strip():
        raise CompositionError("empty formula")
    tokens = _tokenize(text)
    counts, _ = _parse_group_sequence(tokens, 0, text, closing=None)
    return dict(sorted(counts.items()))


def multiply(composition: Composition, formula_units: int) -> Composition:
    """The composition of ``formula_units`` (Z, an int >= 1) formula units."""
    if isinstance(formula_units, bool) or not isinstance(formula_units, int) or formula_units < 1:
        raise CompositionError(
            f"number of formula units Z must be an integer >= 1, got {formula_units!r}"
        )
    return {z: count * formula_units for z, count in sorted(composition.items())}


def reduce(composition: Composition) -> Composition:
    """One formula unit of ``composition``: its counts divided by their greatest common divisor
    (``Ga4Te4`` -> ``GaTe``)."""
    divisor = math.gcd(*composition.values())
    return {z: count // divisor for z, count in sorted(composition.items())}


def to_atomic_numbers(composition: Composition) -> list[int]:
    """Expand ``{Z: count}`` to the ascending list of atomic numbers, one per atom."""
    numbers: list[int] = []
    for z, count in sorted(composition.items()):
        numbers.extend([z] * count)
    return numbers


def format_composition(composition: Composition) -> str:
    """A formula string for ``composition`` in ascending atomic number (count 1 omitted);
    :func:`parse_composition` reads it back to the same counts."""
    return "".join(
        f"{chemical_symbols[z]}{count if count != 1 else ''}" for z, count in sorted(composition.items())
    )
