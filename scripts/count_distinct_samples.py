"""How many distinct crystals a sample folder holds: the deduplication ``predict`` and ``rank``
apply before relaxing (pymatgen ``StructureMatcher``, :func:`diffcrystal.candidates.deduplicate_candidates`):

    diffcrystal sample --composition YBa2Cu3O7 --n 100 --out runs/ybco100 && python scripts/count_distinct_samples.py runs/ybco100
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from diffcrystal.candidates import Candidate, deduplicate_candidates
from diffcrystal.data.crystal import Crystal
from diffcrystal.errors import InputError
from diffcrystal.potential.io import MissingStructure, read_candidates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="sample folder (or CIF folder / extxyz file)")
    args = parser.parse_args(argv)
    try:
        items = read_candidates([args.folder], include_missing=True)
    except InputError as error:
        print(f"count_distinct_samples: error: {error}", file=sys.stderr)
        return 1
    crystals = [Candidate(label, Crystal.from_atoms(atoms), "free_diffusion") for label, atoms in items
                if not isinstance(atoms, MissingStructure)]
    started = time.perf_counter()
    distinct, merged = deduplicate_candidates(crystals)
    seconds = time.perf_counter() - started
    print(f"{len(items)} structures, {len(items) - len(crystals)} missing; {len(distinct)} distinct crystals "
          f"({len(merged)} duplicates merged) in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
