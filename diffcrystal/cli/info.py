"""``diffcrystal info DATA``: summarise a dataset (structures, elements, cell sizes, space
groups, skipped entries, load time). Logic lives in :mod:`diffcrystal.data.summary`."""

from __future__ import annotations

import argparse

from diffcrystal.cli.checks import at_least
from diffcrystal.data.readers import read_crystals
from diffcrystal.data.summary import format_summary, summarize


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", metavar="DATA",
                        help="CDVAE-style CSV, folder of .cif files, .cif, .extxyz/.xyz or ASE .db")
    parser.add_argument("--no-canonical", dest="canonical", action="store_false",
                        help="keep cells as given (default: primitive, Niggli-reduced cells)")
    parser.add_argument("--order-disorder", action="store_true",
                        help="order partially occupied sites by majority species instead of skipping")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="worker processes for parsing; 0: none, all in this process (default: min(2, cpu count))")
    parser.add_argument("--no-cache", dest="cache", action="store_false",
                        help="neither read nor write the dataset cache")
    parser.add_argument("--cache-dir", default=None,
                        help="cache folder (default: $DIFFCRYSTAL_CACHE or ~/.cache/diffcrystal)")


def run(args: argparse.Namespace) -> int:
    at_least("--workers", args.workers, 0)
    result = read_crystals(
        args.data,
        canonical=args.canonical,
        order_disorder=args.order_disorder,
        workers=args.workers,
        cache=args.cache,
        cache_dir=args.cache_dir,
    )
    print(format_summary(summarize(result, workers=args.workers)))
    return 0
