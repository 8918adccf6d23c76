"""One helper that maps a picklable function over items in worker processes with a tqdm bar.

Shared by the CSP matcher and the fingerprinting of the de novo metrics. On Linux workers are
forked (fast, and works from any ``__main__``, including a script read from stdin or a notebook);
the children only run pymatgen/numpy/matminer, never torch, so torch's thread pools in the
parent are not touched. Elsewhere (macOS, Windows) they are spawned, which needs the calling
script to guard its entry point with ``if __name__ == "__main__":``. A worker that dies raises
``BrokenProcessPool`` instead of hanging (``concurrent.futures``, not ``multiprocessing.Pool``,
which silently respawns dead workers).
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_START_METHOD = "fork" if sys.platform.startswith("linux") else "spawn"
"""Start method of the worker processes (see the module docstring)."""

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
        with ProcessPoolExecutor(max_workers=n_proc, mp_context=context) as pool:
            results = []
            for result in pool.map(function, items, chunksize=chunksize):
                results.append(result)
                bar.update(1)
        return results
    finally:
        bar.close()
