"""Relax, deduplicate and rank candidate crystals: the same as ``diffcrystal rank``.

    python scripts/relax_and_rank.py samples/ --potential sevennet-0 --out ranked/ [--reference known/]

See ``diffcrystal rank --help`` for every option; this script only forwards its arguments.
"""

import sys

from diffcrystal.cli.main import main

if __name__ == "__main__":  # guard required: relaxation workers are spawned processes
    sys.exit(main(["rank", *sys.argv[1:]]))
