"""Worker processes for batches (``restore``, ``report``, ``bench --clean``): how many by
default, and one BLAS/OpenMP thread in each.

N workers on N cores, each with a thread pool as wide as the machine, oversubscribe it:
every worker pins the thread pools of the numerical libraries to one thread, through
threadpoolctl for those already loaded (numpy's OpenBLAS, inherited by a forked worker) and
through the environment for those loaded later.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where a pool is made: one clip needs none
    from concurrent.futures import ProcessPoolExecutor

#: The thread-count variables of the BLAS, OpenMP and similar libraries a worker may load.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")

_limits: object = None  # the worker's threadpoolctl limit, kept for the worker's lifetime


def default_jobs() -> int:
    """The processors this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def pin_threads() -> None:
    """Limit this process's numerical libraries to one thread each (see the module's text)."""
    global _limits
    from threadpoolctl import threadpool_limits

    for name in THREAD_VARIABLES:
        os.environ[name] = "1"
    _limits = threadpool_limits(limits=1)


def _start(initializer: Callable[..., None] | None, initargs: tuple[Any, ...]) -> None:
    pin_threads()
    if initializer is not None:
        initializer(*initargs)


def worker_pool(workers: int, initializer: Callable[..., None] | None = None,
                initargs: tuple[Any, ...] = ()) -> ProcessPoolExecutor:
    """A process pool of ``workers`` whose workers run on one thread each, then run
    ``initializer(*initargs)``."""
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=workers, initializer=_start,
                               initargs=(initializer, initargs))
