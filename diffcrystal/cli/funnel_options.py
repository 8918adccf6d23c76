"""The relaxation-funnel options shared by ``rank`` and ``predict``
(:mod:`diffcrystal.potential.funnel`)."""

from __future__ import annotations

import argparse

from diffcrystal.errors import InputError
from diffcrystal.potential.funnel import DEFAULT_KEEP_AT_LEAST, DEFAULT_MARGIN_EV_ATOM, DEFAULT_STAGE_STEPS, FunnelSettings

STAGES_TEXT = ",".join(map(str, DEFAULT_STAGE_STEPS))


def add_funnel_arguments(parser: argparse.ArgumentParser) -> None:
    """``--no-funnel``, ``--funnel-stages``, ``--keep`` and ``--funnel-margin``."""
    parser.add_argument("--no-funnel", action="store_true",
                        help="relax every distinct candidate to the end instead of pruning the worse half "
                             "after each --funnel-stages stage (the funnel is also off when --steps is "
                             "within its stages)")
    parser.add_argument("--funnel-stages", default=STAGES_TEXT, metavar="S1,S2",
                        help=f"FIRE steps of each pruning stage of the funnel (default {STAGES_TEXT})")
    parser.add_argument("--keep", type=int, default=DEFAULT_KEEP_AT_LEAST, metavar="K",
                        help=f"candidates the funnel always relaxes to the end (default {DEFAULT_KEEP_AT_LEAST})")
    parser.add_argument("--funnel-margin", type=float, default=DEFAULT_MARGIN_EV_ATOM, metavar="EV_ATOM",
                        help="candidates within this many eV/atom of the last one a funnel stage keeps "
                             f"continue too (default {DEFAULT_MARGIN_EV_ATOM:g})")


def funnel_from(args: argparse.Namespace) -> FunnelSettings | None:
    """The funnel of the command line; None with ``--no-funnel`` or a ``--steps`` cap within
    its stages (a short relaxation has nothing to prune). One-line errors name the option."""
    try:
        stages = tuple(int(s) for s in args.funnel_stages.split(","))
    except ValueError:
        raise InputError(f"--funnel-stages must be whole numbers separated by commas, got {args.funnel_stages!r}") from None
    funnel = FunnelSettings(stages, keep_at_least=args.keep, margin=args.funnel_margin)
    return None if args.no_funnel or args.steps <= sum(stages) else funnel
