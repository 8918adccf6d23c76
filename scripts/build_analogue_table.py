"""Build the analogue table a CSP checkpoint ships with: every training crystal's label,
composition, atom count, energy above the hull, Wyckoff assignment (spglib, 0.01 Å) and
geometry, the input of ``diffcrystal sample --analogues`` and the templates of
``diffcrystal predict`` (see :mod:`diffcrystal.analogues`). The MP-20 table takes about two
minutes on one core and 2.2 MB.

    python scripts/build_analogue_table.py --data ../shared/data/mp_20/train.csv --out checkpoints/mp20_analogues.json.gz --register mp20_csp

``--register NAME`` records the table (file and SHA-256) in ``checkpoints/manifest.json``
under the bundled model NAME, whose ``sample --analogues`` then uses it by default.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from diffcrystal.analogues import AnalogueLibrary
from diffcrystal.checkpoint import BUNDLED_DIR, MANIFEST_NAME, file_sha256
from diffcrystal.data.readers import read_crystals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, nargs="+", required=True, help="training data file(s)")
    parser.add_argument("--out", type=Path, required=True, help="table to write (.json.gz)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--register", metavar="NAME", help="bundled model whose default table this becomes")
    args = parser.parse_args()
    manifest_path = BUNDLED_DIR / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    if args.register and args.register not in manifest["models"]:
        raise SystemExit(f"no bundled model {args.register!r}; bundled: {', '.join(sorted(manifest['models']))}")
    if args.register and args.out.resolve().parent != BUNDLED_DIR.resolve():
        raise SystemExit(f"--register needs the table inside {BUNDLED_DIR}")
    crystals, skipped = [], 0
    for path in args.data:
        loaded = read_crystals(path, workers=args.workers)
        crystals += loaded.crystals
        skipped += len(loaded.skipped)
    library = AnalogueLibrary.from_crystals(crystals)
    path = library.write_table(args.out, source=", ".join(str(p) for p in args.data))
    if args.register:
        manifest["models"][args.register]["analogues"] = {"file": path.name, "sha256": file_sha256(path)}
        manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    print(f"{len(library)} templates ({skipped} unreadable rows skipped) -> {path} ({path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
