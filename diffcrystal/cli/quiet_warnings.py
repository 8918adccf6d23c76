"""Third-party warnings that every command hides, in its own process and in the worker
processes it starts (spawned workers read them from ``PYTHONWARNINGS``)."""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Iterator

HIDDEN_WARNINGS = (
    # SevenNet's advice to install a tensor-product accelerator (cuEquivariance/flashTP), once
    # per process that loads SevenNet-0; it does not concern the results.
    ("No tensor product accelerator is enabled", UserWarning),
)
"""(message prefix, category) of each hidden warning."""


@contextlib.contextmanager
def hidden_third_party_warnings() -> Iterator[None]:
    """Hide :data:`HIDDEN_WARNINGS` here and in processes started inside; restored after."""
    specs = [f"ignore:{message}:{category.__name__}" for message, category in HIDDEN_WARNINGS]
    before = os.environ.get("PYTHONWARNINGS")
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [before, *specs]))
    try:
        with warnings.catch_warnings():
            for message, category in HIDDEN_WARNINGS:
                warnings.filterwarnings("ignore", message=re.escape(message), category=category)
            yield
    finally:
        if before is None:
            os.environ.pop("PYTHONWARNINGS", None)
        else:
            os.environ["PYTHONWARNINGS"] = before
