"""Exceptions for bad input. The CLI prints any :class:`InputError` as one line, exit code 1."""


class InputError(ValueError):
    """Bad user input: the message names the problem (and the file/row when known)."""
