"""Thread caps for relaxations: torch and BLAS/OpenMP threads in this process and in workers.

On a busy 2-core machine two torch threads per process made SevenNet-0 calls ~10x slower, so
each relaxation runs under an explicit cap (:func:`limited_threads`), and worker processes
start with their BLAS/OpenMP variables set (:func:`thread_environment`).
"""

from __future__ import annotations

import contextlib
import os

THREAD_ENVIRONMENT = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
"""Variables that cap BLAS/OpenMP threads in worker processes (set while they start), so
``workers`` processes never oversubscribe the cores."""


@contextlib.contextmanager
def thread_environment(threads: int):
    """Set :data:`THREAD_ENVIRONMENT` to ``threads`` (for processes started inside), restoring
    the previous values on exit."""
    saved = {name: os.environ.get(name) for name in THREAD_ENVIRONMENT}
    os.environ.update({name: str(threads) for name in THREAD_ENVIRONMENT})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def limited_threads(threads: int):
    """Cap torch and BLAS/OpenMP threads in this process, restoring them on exit."""
    import sys

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it only torch's threads are capped
        threadpool_limits = None
    torch = sys.modules.get("torch")
    previous = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads) if threadpool_limits else contextlib.nullcontext():
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(previous)


def available_cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
