"""Crystal data: the :class:`Crystal` record, composition parsing, dataset readers,
canonical cells, the dataset cache, torch-geometric batching and dataset summaries.

The public names below are imported lazily (on first use), so ``import diffcrystal.data``
or ``from diffcrystal.data.crystal import Crystal`` does not pull in pandas, pymatgen or torch.

=====================================  =========================================
:class:`Crystal`, :class:`CrystalError`  :mod:`diffcrystal.data.crystal`
:func:`parse_composition` & co.          :mod:`diffcrystal.data.composition`
:func:`read_crystals`, :class:`ReadResult`, :class:`SkippedEntry`  :mod:`diffcrystal.data.readers`
:func:`canonicalize`, :func:`order_by_majority`  :mod:`diffcrystal.data.canonical`
:func:`crystal_to_data`, :func:`collate`, :func:`batch_to_crystals`  :mod:`diffcrystal.data.graph`
:func:`summarize`, :class:`DatasetSummary`  :mod:`diffcrystal.data.summary`
=====================================  =========================================
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Crystal": "crystal",
    "CrystalError": "crystal",
    "Composition": "composition",
    "CompositionError": "composition",
    "parse_composition": "composition",
    "multiply": "composition",
    "to_atomic_numbers": "composition",
    "format_composition": "composition",
    "read_crystals": "readers",
    "detect_format": "readers",
    "ReadResult": "readers",
    "SkippedEntry": "readers",
    "canonicalize": "canonical",
    "canonical_structure": "canonical",
    "order_by_majority": "canonical",
    "crystal_to_data": "graph",
    "collate": "graph",
    "batch_to_crystals": "graph",
    "summarize": "summary",
    "DatasetSummary": "summary",
    "format_summary": "summary",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'diffcrystal.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"diffcrystal.data.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
