"""Store each bundled model's training-data summary in ``checkpoints/manifest.json``.

For every model in the manifest (or those named), reads its training data (the manifest's
``data`` paths, relative to the repository root), and writes
:func:`diffcrystal.overview.summarize_training` (volume per atom and density histograms and
quantiles) under ``training_summary``. ``overview.png`` draws the samples against it. Other
manifest fields are kept as they are. Rerun after bundling a new model:

    python scripts/summarize_training_data.py [MODEL ...]

Cells are read as given (volume per atom and density do not depend on the cell choice).
"""

from __future__ import annotations

import argparse
import json

from diffcrystal.atomic_write import atomic_write_text
from diffcrystal.checkpoint import BUNDLED_DIR, MANIFEST_NAME
from diffcrystal.data.readers import read_crystals
from diffcrystal.overview import TRAINING_SUMMARY_KEY, summarize_training

REPOSITORY = BUNDLED_DIR.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="model names (default: every bundled model)")
    args = parser.parse_args()
    path = BUNDLED_DIR / MANIFEST_NAME
    manifest = json.loads(path.read_text())
    names = args.models or sorted(manifest["models"])
    unknown = sorted(set(names) - set(manifest["models"]))
    if unknown:
        raise SystemExit(f"not in {path}: {', '.join(unknown)}")
    read: dict[str, list] = {}
    for name in names:
        entry = manifest["models"][name]
        sources = [entry["data"]] if isinstance(entry["data"], str) else list(entry["data"])
        for source in sources:
            if source not in read:
                read[source] = read_crystals(REPOSITORY / source, canonical=False, progress=False).crystals
        crystals = [c for source in sources for c in read[source]]
        entry[TRAINING_SUMMARY_KEY] = summarize_training(crystals, entry["data"])
        medians = {k: entry[TRAINING_SUMMARY_KEY][k]["quantiles"]["0.5"] for k in ("volume_per_atom_A3", "density_g_cm3")}
        print(f"{name}: {len(crystals)} structures, medians {medians}")
    atomic_write_text(path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
