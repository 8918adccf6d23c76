"""Entry point of the ``diffcrystal`` command.

Each subcommand lives in its own module ``diffcrystal.cli.<name>`` exposing
``configure(parser)`` (adds its arguments) and ``run(args) -> int`` (exit code). Only the
chosen subcommand's module is imported, so ``diffcrystal info`` does not pay for torch/e3nn
start-up. Without a subcommand the help is printed (exit code 2).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from diffcrystal import __version__
from diffcrystal.errors import InputError

SUBCOMMANDS = {
    "predict": "ranked, relaxed structures of a composition from known analogues and diffusion",
    "sample": "generate candidate crystals with a trained generator",
    "train": "train a generator from a dataset and a config",
    "relax": "relax candidate crystals with a machine-learned potential",
    "rank": "relax, deduplicate and rank candidates by energy",
    "evaluate": "measure a generator against a test set",
    "info": "summarise a dataset (structures, elements, sizes, space groups)",
    "potential": "fit or label data for an own NequIP/Allegro potential",
}

EXIT_USAGE = 2


def build_parser(chosen: str | None = None) -> tuple[argparse.ArgumentParser, dict]:
    """The argument parser; only ``chosen``'s module is imported and configured."""
    parser = argparse.ArgumentParser(
        prog="diffcrystal",
        description="Crystal structure generation by equivariant joint diffusion.",
    )
    parser.add_argument("--version", action="version", version=f"diffcrystal {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = {}
    for name, help_text in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            modules[name] = importlib.import_module(f"diffcrystal.cli.{name}")
            modules[name].configure(sub)
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser, modules = build_parser(chosen if chosen in SUBCOMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(modules[args.command].run(args) or 0)
    except InputError as error:
        print(f"diffcrystal {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"diffcrystal {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
