"""The ``diffcrystal`` command line: one module per subcommand, each a thin layer that parses
arguments and calls the library (see :mod:`diffcrystal.cli.main`)."""
