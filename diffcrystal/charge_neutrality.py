"""Compositional validity: SMACT charge neutrality with the Pauling electronegativity test,
exactly as CDVAE computed it (:func:`smact_validity`).

It lives outside :mod:`diffcrystal.metrics` because every sampling run checks it, and the
metrics package pulls in scipy, matplotlib and the structure matcher.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence

import numpy as np

__all__ = ["neutral_assignments", "smact_validity"]


@functools.cache
def _smact_element(z: int) -> tuple[str, tuple[int, ...], float | None, bool]:
    """(symbol, SMACT-2014 oxidation states, Pauling electronegativity, is a SMACT metal)."""
    import smact
    from pymatgen.core.periodic_table import Element

    symbol = Element.from_Z(z).symbol
    element = smact.Element(symbol)
    # ``oxidation_states_smact14`` is the list that SMACT <= 2.x exposed as
    # ``oxidation_states`` and that the CDVAE/DiffCSP numbers were computed with (SMACT 2.5.5).
    if hasattr(element, "oxidation_states_smact14"):
        states = element.oxidation_states_smact14
    else:  # SMACT < 3
        states = element.oxidation_states
    return symbol, tuple(states or ()), element.pauling_eneg, symbol in smact.metals


def _electronegativity_ok(ox_states: Sequence[int], enegs: Sequence[float | None]) -> bool:
    """SMACT's Pauling test as CDVAE ran it: every cation less electronegative than every
    anion; pairs are checked in order and the first pair that needs a missing
    electronegativity ends the test as passed (SMACT 2.5.5 raised TypeError there and CDVAE
    treated that as 'no data, assume it is okay')."""
    for (ox1, e1), (ox2, e2) in itertools.combinations(zip(ox_states, enegs), 2):
        if (ox1 > 0 and ox2 < 0) or (ox1 < 0 and ox2 > 0):
            if e1 is None or e2 is None:
                return True
            if ox1 > 0 and e1 >= e2:
                return False
            if ox1 < 0 and e1 <= e2:
                return False
    return True


def smact_validity(atomic_numbers: Sequence[int]) -> bool:
    """Compositional validity of a crystal with these atoms (CDVAE ``smact_validity``).

    The rule, exactly:

    1. reduce the element counts by their greatest common divisor: ``n_1..n_m``
       (elements in increasing atomic number);
    2. a single element is valid; a composition of SMACT metals only (``smact.metals``) is
       valid (an alloy);
    3. otherwise it is valid when some choice of one oxidation state per element, from
       SMACT's 2014 oxidation-state list, is charge neutral, ``Σ q_i n_i = 0``, and passes the
       Pauling electronegativity test (:func:`_electronegativity_ok`). An element without
       oxidation states in that list (He, Ne, Ar) makes such a composition invalid.

    >>> smact_validity([11, 17]), smact_validity([11, 17, 17]), smact_validity([6] * 8)
    (True, False, True)
    """
    numbers, counts = np.unique(np.asarray(atomic_numbers, dtype=np.int64), return_counts=True)
    if numbers.size == 0:
        raise ValueError("no atoms")
    if numbers.size == 1:
        return True
    counts = counts // np.gcd.reduce(counts)
    info = [_smact_element(int(z)) for z in numbers]
    if all(is_metal for _, _, _, is_metal in info):
        return True
    enegs = [eneg for _, _, eneg, _ in info]
    states = [element_states for _, element_states, _, _ in info]
    return any(_electronegativity_ok(ox_states, enegs)
               for ox_states in neutral_assignments(states, [int(n) for n in counts]))


def neutral_assignments(states: Sequence[Sequence[int]], counts: Sequence[int]):
    """Every choice of one oxidation state per element with ``Σ q_i n_i = 0``, in the order of
    ``itertools.product(*states)``.

    A depth-first walk that enters an element's state only when the charge left can still be
    cancelled by the elements after it (their reachable partial sums, built back to front), so
    the cost follows the number of neutral choices, not the product of the state counts
    (which reaches ~10⁶ for 6-element MP-20 compositions).
    """
    m = len(states)
    reachable: list[set[int]] = [set() for _ in range(m)] + [{0}]
    for i in range(m - 1, -1, -1):
        reachable[i] = {q * counts[i] + rest for q in states[i] for rest in reachable[i + 1]}
    chosen: list[int] = []

    def extend(i: int, total: int):
        if i == m:
            yield tuple(chosen)
            return
        for q in states[i]:
            partial = total + q * counts[i]
            if -partial in reachable[i + 1]:
                chosen.append(q)
                yield from extend(i + 1, partial)
                chosen.pop()

    yield from extend(0, 0)
