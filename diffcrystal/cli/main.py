"""Entry point of the ``diffcrystal`` command.

Each subcommand lives in its own module ``diffcrystal.cli.<name>`` exposing
``configure(parser)`` (adds its arguments) and ``run(args) -> int`` (exit code); registering
one is a line in :data:`SUBCOMMANDS`. Only the chosen subcommand's module is imported, and
those modules import torch/e3nn inside ``run`` after checking their arguments, so ``--help``,
a mistyped option or an out-of-range value answers without that start-up.

Errors are one line on stderr, ``diffcrystal <command>: error: <problem>``:

- exit code 2: the command line cannot be read (unknown option, missing argument or value,
  a value that is not a number, a value outside the listed choices);
- exit code 1: a value was read but cannot be used (out of range, conflicting with another
  option, a file or checkpoint that is missing or unusable).

Without a subcommand the help is printed (exit code 2).
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import sys

from diffcrystal import __version__
from diffcrystal.cli.quiet_warnings import hidden_third_party_warnings
from diffcrystal.errors import InputError

SUBCOMMANDS = {
    "predict": "ranked, relaxed structures of a composition from known analogues and diffusion",
    "screen": "predict many compositions as tasks on a Dask cluster (local or existing)",
    "sample": "generate candidate crystals with a trained generator",
    "train": "train a generator from a dataset and a config",
    "relax": "relax candidate crystals with a machine-learned potential",
    "rank": "relax, deduplicate and rank candidates by energy",
    "evaluate": "measure a generator against a test set",
    "info": "summarise a dataset (structures, elements, sizes, space groups)",
    "potential": "fit or label data for an own NequIP/Allegro potential",
}

EXIT_USAGE = 2
EXIT_INPUT_ERROR = 1


class OneLineErrorParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block), naming a close match
    for a mistyped option; exit code :data:`EXIT_USAGE`. Subcommand parsers inherit it."""

    def error(self, message: str) -> None:
        if message.startswith("unrecognized arguments:"):
            known = [option for action in self._actions for option in action.option_strings]
            for word in message.split(":", 1)[1].split():
                close = difflib.get_close_matches(word.split("=")[0], known, n=1)
                if word.startswith("-") and close:
                    message += f" (did you mean {close[0]}?)"
                    break
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def build_parser(chosen: str | None = None) -> tuple[argparse.ArgumentParser, dict]:
    """The argument parser and ``{name: (module, subparser)}`` for ``chosen``: only its module
    is imported and configured."""
    parser = OneLineErrorParser(
        prog="diffcrystal",
        description="Crystal structure generation by equivariant joint diffusion.",
    )
    parser.add_argument("--version", action="version", version=f"diffcrystal {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    configured = {}
    for name, help_text in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(f"diffcrystal.cli.{name}")
            module.configure(sub)
            configured[name] = (module, sub)
    return parser, configured


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser, configured = build_parser(chosen if chosen in SUBCOMMANDS else None)
    args, unknown = parser.parse_known_args(argv)
    if args.command is None:
        if unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        parser.print_help()
        return EXIT_USAGE
    module, subparser = configured[args.command]
    if unknown:  # reported by the subcommand's parser, which knows its options
        subparser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        with hidden_third_party_warnings():
            return int(module.run(args) or 0)
    except InputError as error:
        print(f"diffcrystal {args.command}: error: {error}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except KeyboardInterrupt:
        print(f"diffcrystal {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
