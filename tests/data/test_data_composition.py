"""Composition parsing: formula strings -> {atomic number: count}."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diffcrystal import MAX_ATOMIC_NUMBER
from diffcrystal.data.composition import (
    CompositionError,
    format_composition,
    multiply,
    parse_composition,
    to_atomic_numbers,
)
from diffcrystal.errors import InputError
from ase.data import chemical_symbols

YBCO = {8: 7, 29: 3, 39: 1, 56: 2}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("YBa2Cu3O7", YBCO),
        ("Ba2YCu3O7", YBCO),
        ("  Y Ba2 Cu3 O7 ", YBCO),
        ("(SrTiO3)2", {8: 6, 22: 2, 38: 2}),
        ("Sr2(Ti(O)3)2", {8: 6, 22: 2, 38: 2}),
        ("[Fe(CN)6]3K", {6: 18, 7: 18, 19: 1, 26: 3}),
        ("CH3COOH", {1: 4, 6: 2, 8: 2}),
        ("C", {6: 1}),
        ("Fm2", {100: 2}),
    ],
)
def test_parses(text, expected):
    assert parse_composition(text) == expected


def test_keys_are_sorted():
    assert list(parse_composition("OTiSr")) == [8, 22, 38]


@pytest.mark.parametrize(
    "text, message",
    [
        ("Li0.5CoO2", "fractional count '0.5'"),
        ("Xx", "unknown element 'Xx'"),
        ("", "empty formula"),
        ("   ", "empty formula"),
        ("O0", "zero count"),
        ("(SrTiO3)0", "zero count"),
        ("(SrTiO3", "missing ')'"),
        ("SrTiO3)", "unmatched ')'"),
        ("(Sr]", "expected ')'"),
        ("()", "empty brackets"),
        ("2O", "follows no element"),
        ("sio2", "capital letter"),
        ("Si-O2", "unexpected character '-'"),
        ("Og", "beyond the 100 elements"),
    ],
)
def test_rejects(text, message):
    with pytest.raises(CompositionError, match=re.escape(message)) as info:
        parse_composition(text)
    assert isinstance(info.value, InputError)
    assert "\n" not in str(info.value)


def test_rejects_non_string():
    with pytest.raises(CompositionError, match="must be a string"):
        parse_composition(None)


def test_multiply_and_expand():
    nacl = parse_composition("NaCl")
    assert multiply(nacl, 4) == {11: 4, 17: 4}
    assert to_atomic_numbers(multiply(parse_composition("SrTiO3"), 2)) == [8] * 6 + [22] * 2 + [38] * 2
    assert multiply(nacl, 1) == nacl


@pytest.mark.parametrize("z", [0, -1, 1.5, True, "2"])
def test_multiply_rejects_bad_z(z):
    with pytest.raises(CompositionError, match="integer >= 1"):
        multiply({8: 1}, z)


SYMBOLS = chemical_symbols[1: MAX_ATOMIC_NUMBER + 1]


@st.composite
def formulas(draw):
    """A random formula (maybe with whitespace and one bracketed, multiplied group) and the
    counts it stands for."""
    expected: dict[int, int] = {}

    def part(multiplier):
        pieces = []
        for _ in range(draw(st.integers(1, 4))):
            z = draw(st.integers(1, MAX_ATOMIC_NUMBER))
            count = draw(st.integers(1, 30))
            expected[z] = expected.get(z, 0) + count * multiplier
            written = "" if count == 1 and draw(st.booleans()) else str(count)
            pieces.append(SYMBOLS[z - 1] + written + draw(st.sampled_from(["", " "])))
        return "".join(pieces)

    text = part(1)
    if draw(st.booleans()):
        multiplier = draw(st.integers(1, 5))
        text += "(" + part(multiplier) + ")" + str(multiplier)
    return text, dict(sorted(expected.items()))


@settings(max_examples=200, deadline=None)
@given(formulas())
def test_random_formulas_parse_back(case):
    text, expected = case
    assert parse_composition(text) == expected


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.integers(1, MAX_ATOMIC_NUMBER), st.integers(1, 50), min_size=1))
def test_format_round_trip(composition):
    assert parse_composition(format_composition(composition)) == dict(sorted(composition.items()))
