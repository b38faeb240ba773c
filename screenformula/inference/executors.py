"""Where independent pieces of work run: in this process, in local processes, on Dask.

Chosen apart from the maths, as PyDESeq2 keeps its inference apart from its models: the
two-stage engine hands an executor a function, the data every piece shares and each
piece's own small part (a chunk of genes: their codes and a seed), and takes each
result back as it finishes. The shared data travel once: inherited by forked processes
(or sent once to each spawned one), scattered once to every Dask worker
(``Client.scatter``), never once per piece. Results come back as they are: for stage 2,
a `ChunkResult` of NumPy arrays.

Three executors, and `as_executor` to choose among them:

- `InProcess`: one piece after another, here.
- `ProcessPool`: ``workers`` local processes (forked on Linux), one BLAS thread each.
- `DaskExecutor`: the workers of a ``dask.distributed`` cluster (`connect` reaches a
  scheduler by address, ``tcp://HOST:8786``).

Any object with a ``map`` (a ``concurrent.futures`` pool) is also accepted, for results
in order (`MapExecutor`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from screenformula.errors import FitError

__all__ = [
    "DaskExecutor",
    "DaskUnavailableError",
    "InProcess",
    "MapExecutor",
    "ProcessPool",
    "SchedulerUnreachableError",
    "as_executor",
    "connect",
]

#: Seconds `connect` waits for a scheduler before saying it cannot be reached.
CONNECT_TIMEOUT = 10.0

#: What to install for Dask (the ``dask`` extra of screenformula).
DASK_INSTALL = "pip install 'screenformula[dask]' (or 'dask[distributed]')"


class DaskUnavailableError(FitError):
    """Dask is asked for (a client or a scheduler address) but not installed."""


class SchedulerUnreachableError(FitError):
    """No Dask scheduler answers at the address given."""


class InProcess:
    """Run every piece here, one after another."""

    kind = "in-process"
    workers = 1

    def run(
        self, fn: Callable[[Any, Any], Any], shared: Any, parts: Sequence[Any]
    ) -> Iterator[tuple[int, Any]]:
        """Yield ``(index, fn(shared, part))`` for every part, in order."""
        for i, part in enumerate(parts):
            yield i, fn(shared, part)

    def describe(self) -> str:
        """Where the pieces run, for a log line."""
        return "in this process"


_SHARED: Any = None  # the shared data, in a worker process of `ProcessPool`


def _pool_start(shared: Any) -> None:
    """A `ProcessPool` worker's start: one BLAS thread, and the shared data kept here."""
    global _SHARED
    _SHARED = shared
    one_thread()


def _pool_call(fn: Callable[[Any, Any], Any], part: Any) -> Any:
    return fn(_SHARED, part)


class ProcessPool:
    """``workers`` local processes, each limited to one BLAS / OpenMP thread.

    Forked on Linux, as PyMC does: a spawned child re-imports the user's ``__main__``,
    which breaks every script that calls ``fit`` without an ``if __name__ ==
    "__main__":`` guard; elsewhere spawned. The shared data reach each process once (a
    forked child inherits them; a spawned one gets them at start). The pieces are the
    parallelism: threaded BLAS on busy cores slowed a gradient many-fold
    (``../shared/ENGINE.md``).
    """

    kind = "processes"

    def __init__(self, workers: int) -> None:
        self.workers = max(int(workers), 1)

    def run(
        self, fn: Callable[[Any, Any], Any], shared: Any, parts: Sequence[Any]
    ) -> Iterator[tuple[int, Any]]:
        """Yield ``(index, result)`` as the pieces finish (any order)."""
        import multiprocessing
        import sys
        from concurrent.futures import ProcessPoolExecutor, as_completed

        method = "fork" if sys.platform.startswith("linux") else "spawn"
        pool = ProcessPoolExecutor(
            min(self.workers, max(len(parts), 1)),
            mp_context=multiprocessing.get_context(method),
            initializer=_pool_start,
            initargs=(shared,),
        )
        futures = {pool.submit(_pool_call, fn, part): i for i, part in enumerate(parts)}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:  # interrupted: running pieces are abandoned, queued ones never start
            pool.shutdown(wait=False, cancel_futures=True)

    def describe(self) -> str:
        """Where the pieces run, for a log line."""
        return f"on {self.workers} local processes"


class MapExecutor:
    """Any object with a ``map`` (``concurrent.futures`` style): results in order."""

    kind = "map"
    workers = None

    def __init__(self, mapper: Any) -> None:
        self.mapper = mapper

    def run(
        self, fn: Callable[[Any, Any], Any], shared: Any, parts: Sequence[Any]
    ) -> Iterator[tuple[int, Any]]:
        """Yield ``(index, result)`` in order, from ``mapper.map``."""
        import functools

        yield from enumerate(self.mapper.map(functools.partial(fn, shared), parts))

    def describe(self) -> str:
        """Where the pieces run, for a log line."""
        return f"with {type(self.mapper).__name__}.map"


def _dask_call(fn: Callable[[Any, Any], Any], shared: Any, part: Any) -> Any:
    """A piece on a Dask worker: one BLAS thread (the workers' processes are the parallelism)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return fn(shared, part)


class DaskExecutor:
    """The workers of a ``dask.distributed`` cluster.

    The shared data are scattered to every worker once (``broadcast=True``); each piece
    is a task holding only its own part and a reference to them, and its result comes
    back to this process as it finishes (nothing is written on the workers' disks, which
    a cluster need not share with this machine).

    Parameters
    ----------
    client : distributed.Client
    """

    kind = "dask"

    def __init__(self, client: Any) -> None:
        self.client = client

    @property
    def workers(self) -> int:
        """The cluster's workers now."""
        return len(self.client.scheduler_info().get("workers", {}))

    def run(
        self, fn: Callable[[Any, Any], Any], shared: Any, parts: Sequence[Any]
    ) -> Iterator[tuple[int, Any]]:
        """Yield ``(index, result)`` as the pieces finish on the cluster (any order)."""
        from distributed import as_completed

        if not parts:
            return
        [remote] = self.client.scatter([shared], broadcast=True, hash=False)
        futures = {
            self.client.submit(_dask_call, fn, remote, part, pure=False): i
            for i, part in enumerate(parts)
        }
        try:
            for future in as_completed(futures, loop=self.client.loop):
                result = future.result()
                future.release()
                yield futures[future], result
        finally:
            self.client.cancel(list(futures))
            remote.release()

    def describe(self) -> str:
        """Where the pieces run, for a log line."""
        address = getattr(self.client.scheduler, "address", "?")
        return f"on the Dask cluster at {address} ({self.workers} workers)"


def connect(address: str, timeout: float = CONNECT_TIMEOUT) -> Any:
    """A ``distributed.Client`` of the scheduler at ``address`` (``tcp://HOST:8786``).

    Raises
    ------
    DaskUnavailableError
        Dask is not installed (one line saying what to install).
    SchedulerUnreachableError
        No scheduler answered within ``timeout`` seconds.
    """
    client_class = dask_client_class()
    try:
        return client_class(address, timeout=f"{timeout:g}s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as err:
        why = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise SchedulerUnreachableError(
            f"cannot reach the Dask scheduler at {address} within {timeout:g} s (is `dask "
            f"scheduler` running there, and the address right? {why})"
        ) from None


def dask_client_class() -> Any:
    """``distributed.Client``, or a one-line `DaskUnavailableError` naming the install."""
    try:
        from distributed import Client
    except ImportError:
        raise DaskUnavailableError(f"Dask is asked for but not installed: {DASK_INSTALL}") from None
    return Client


@contextlib.contextmanager
def as_executor(
    executor: Any = None, client: Any = None, workers: int = 1
) -> Iterator[InProcess | ProcessPool | DaskExecutor | MapExecutor]:
    """The executor for these arguments (a context manager: it closes what it opened).

    Parameters
    ----------
    executor : object, optional
        An executor of this module (used as it is), or any object with ``map``.
    client : distributed.Client or str, optional
        A Dask client, or a scheduler's address (connected here, closed afterwards).
    workers : int
        Without ``executor`` or ``client``: local processes (1: in this process).
    """
    if executor is not None and client is not None:
        raise FitError("give an executor or a Dask client, not both")
    if executor is not None:
        yield executor if hasattr(executor, "run") else MapExecutor(executor)
        return
    if client is not None:
        if isinstance(client, str):
            own = connect(client)
            try:
                yield DaskExecutor(own)
            finally:
                own.close()
            return
        dask_client_class()  # a client object means Dask is there; checked all the same
        yield DaskExecutor(client)
        return
    yield ProcessPool(workers) if workers > 1 else InProcess()


def one_thread() -> None:
    """One thread in every BLAS / OpenMP library, loaded now or later (a worker's start)."""
    for key in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[key] = "1"  # for libraries loaded from here on
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a dependency of screenformula
        return
    threadpool_limits(1)
