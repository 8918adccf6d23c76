"""One helper that maps a picklable function over items in worker processes with a tqdm bar.

Shared by the CSP matcher and the fingerprinting of the de novo metrics. Workers are started
with the ``spawn`` method by default: the callers (CLI, Lightning callbacks) usually have torch
loaded with its thread pools running, and forking such a process can deadlock the child.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_START_METHOD = "spawn"
"""Start method of the worker processes (see the module docstring for why not ``fork``)."""

_CHUNKS_PER_WORKER = 8
"""Work is split into about this many chunks per worker: small enough that the progress bar
moves, large enough that pickling overhead stays small."""


def parallel_map(
    function: Callable[[T], R],
    items: Sequence[T],
    *,
    workers: int,
    progress: bool,
    description: str,
    start_method: str = DEFAULT_START_METHOD,
) -> list[R]:
    """``[function(item) for item in items]``, in order, over ``workers`` processes.

    ``workers <= 1`` (or fewer than two items) runs in this process. ``function`` must be a
    module-level function (picklable) and must not raise: callers catch per-item errors
    inside it and return them as data.
    """
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    bar = tqdm(total=len(items), desc=description, disable=not progress, unit="item")
    try:
        if workers <= 1 or len(items) < 2:
            results = []
            for item in items:
                results.append(function(item))
                bar.update(1)
            return results
        context = multiprocessing.get_context(start_method)
        n_proc = min(workers, len(items))
        chunksize = max(1, len(items) // (n_proc * _CHUNKS_PER_WORKER))
        with context.Pool(n_proc) as pool:
            results = []
            for result in pool.imap(function, items, chunksize=chunksize):
                results.append(result)
                bar.update(1)
        return results
    finally:
        bar.close()
