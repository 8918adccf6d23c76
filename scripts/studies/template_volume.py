"""Do rescaled templates start nearer the true volume? ``|ln(V / V_target)|`` (volumes per atom)
of the nearest template, substituted as is and rescaled (``Analogue.rescaled``), on every 8th of
the first 800 held-out validation structures (atom count given), unrelaxed:

    python scripts/studies/template_volume.py
"""

from __future__ import annotations

import argparse
import sys
import warnings

import numpy as np

from diffcrystal.checkpoint import bundled_analogue_table
from diffcrystal.prediction import load_library
from diffcrystal.ranked_evaluation import held_out_validation

FAR_OFF = 0.15
"""``|ln(V / V_target)|`` above which a template's volume counts as far off (about 15 %)."""


def volume_per_atom(crystal) -> float:
    """Cell volume per atom, Å³."""
    return abs(float(np.linalg.det(crystal.lattice))) / crystal.num_atoms


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="mp20_csp", help="whose held-out validation structures (default: mp20_csp)")
    parser.add_argument("--every", type=int, default=8)
    parser.add_argument("--limit", type=int, default=100)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")  # pymatgen's volume predictor warns on every unknown radius
    checkpoint, _, validation = held_out_validation(args.checkpoint)
    library = load_library(bundled_analogue_table(checkpoint), checkpoint)
    as_is, rescaled = [], []
    for target in validation[::args.every][:args.limit]:
        analogues = library.without({target.label}).analogues(target.composition, target.num_atoms)
        if not analogues:
            continue
        target_volume = volume_per_atom(target)
        as_is.append(abs(np.log(volume_per_atom(analogues[0].substituted()) / target_volume)))
        rescaled.append(abs(np.log(volume_per_atom(analogues[0].rescaled()) / target_volume)))
    as_is, rescaled = np.array(as_is), np.array(rescaled)
    print(f"{len(as_is)} targets with a template; |ln V/V_target| as is / rescaled:")
    print(f"  median {np.median(as_is):.3f} / {np.median(rescaled):.3f}, mean {as_is.mean():.3f} / {rescaled.mean():.3f}")
    print(f"  share above {FAR_OFF}: {np.mean(as_is > FAR_OFF):.3f} / {np.mean(rescaled > FAR_OFF):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
