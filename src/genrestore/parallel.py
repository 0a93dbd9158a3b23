"""Worker processes for batches (``restore``, ``report``, ``bench --clean``): how many by
default, and one BLAS/OpenMP thread in each; and a Dask cluster for ``restore --dask``.

N workers on N cores, each with a thread pool as wide as the machine, oversubscribe it:
every worker pins the thread pools of the numerical libraries to one thread, through
threadpoolctl for those already loaded (numpy's OpenBLAS, inherited by a forked worker) and
through the environment for those loaded later.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from genrestore.errors import ParameterError

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


_Result = TypeVar("_Result")


def one_blas_thread(function: Callable[..., _Result]) -> Callable[..., _Result]:
    """Run ``function`` with BLAS on one thread (a decorator for the entry points that
    restore audio).  OpenBLAS's products differ in the last bit with its thread count (the
    4x-oversampled block true peaks, in float32, measured on this machine), so without this a
    clip restored in a plain call would differ from the same clip restored by a pinned pool
    or Dask worker.  One thread makes the bytes the same everywhere.  The price: a single
    clip restored in process on 2 cores takes about a tenth longer than with BLAS on both
    (30 s mono clip: medians 323-362 ms against 289-305 ms over three interleaved rounds);
    batches and ``genrestore bench --speed`` run one thread per process anyway."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> _Result:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            return function(*args, **kwargs)

    return wrapper


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


@contextlib.contextmanager
def dask_client(address: str) -> Iterator[Any]:
    """A ``distributed.Client`` for ``address``: a scheduler's address (``tcp://host:8786``),
    or ``local`` / ``local:N`` for a cluster of N worker processes on this machine (default:
    the cores), one thread each, started here and stopped on the way out.  Needs the
    ``cluster`` extra (``pip install 'genrestore[cluster]'``); imported only here."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise ParameterError("--dask needs Dask's distributed scheduler: "
                             "pip install 'genrestore[cluster]'") from exc
    # Dask's own loggers say INFO on every start and stop; the CLI's level applies to them too.
    for logger in ("distributed", "dask"):
        logging.getLogger(logger).setLevel(max(logging.getLogger().level, logging.WARNING))
    name, _, count = address.partition(":")
    if name == "local":
        try:
            workers = int(count) if count else default_jobs()
        except ValueError:
            workers = 0
        if workers < 1:
            raise ParameterError(f"--dask {address}: write local or local:N with N at least 1")
        env = {variable: "1" for variable in THREAD_VARIABLES}
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                          dashboard_address=None, env=env) as cluster, Client(cluster) as client:
            yield client
        return
    try:
        client = Client(address, timeout="20s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise ParameterError(f"--dask {address}: cannot reach the scheduler ({exc})") from exc
    with client:
        yield client
