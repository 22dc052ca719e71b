"""Where the batches of a cluster run are run: in this process, in worker processes of this
machine, or as tasks on a Dask cluster (:mod:`dicomveil.runs.cluster`).

An executor runs a :class:`Work`: it calls one function, ``fn(shared, batch)``, on every
batch and yields each batch with what the function returned or the exception it raised, in
the order batches complete.
``shared`` (what every batch of the run needs) is shipped to each worker once. A batch whose
call raises is run again up to ``retries`` times. The executors know nothing of DICOM: the
function, its argument and its results only need to pickle.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from dicomveil.errors import ClusterError
from dicomveil.runs import forkserver
from dicomveil.runs.lifetime import exit_with_parent
from dicomveil.runs.remote import INSTALL_HINT

S = TypeVar("S")  # what every batch of a run shares
T = TypeVar("T")  # an item of a batch
R = TypeVar("R")  # what the function returns for a batch

__all__ = ["Dask", "Executor", "Inline", "Pool", "Work", "executor_for"]


@dataclass(frozen=True)
class Work(Generic[S, T, R]):
    """What an executor is asked to run: one function on every batch.

    Attributes
    ----------
    fn : Callable[[S, list[T]], R]
        The function run on each batch, ``fn(shared, batch)`` (a module-level function: it
        may be pickled).
    shared : S
        Its first argument, the same for every batch.
    batches : Sequence[list[T]]
        The batches.
    retries : int
        How many times a batch whose call raises is run again.
    name : str
        Unique to this run: names its tasks where the executor names them (Dask).
    """

    fn: Callable[[S, list[T]], R]
    shared: S
    batches: Sequence[list[T]]
    retries: int
    name: str


class Executor(Protocol):
    """Runs a function on batches, somewhere.

    Attributes
    ----------
    slots : int
        How many batches run at the same time (worker threads or processes).
    """

    slots: int

    def map(self, work: Work[S, T, R]) -> Iterator[tuple[list[T], R | BaseException]]:
        """Call ``work.fn(work.shared, batch)`` on every batch of ``work``.

        Yields
        ------
        tuple[list[T], R or BaseException]
            Each batch with the function's result, or the exception of its last attempt.
        """
        ...


class Inline:
    """Batches one after the other in this process (one worker).

    Attributes
    ----------
    slots : int
        Always 1.
    """

    slots = 1

    def map(self, work: Work[S, T, R]) -> Iterator[tuple[list[T], R | BaseException]]:
        """Every batch in order, each call run again on an exception (see :meth:`Executor.map`).

        ``work.name`` is unused: nothing is named in this process.
        """
        for batch in work.batches:
            for attempt in range(work.retries + 1):
                try:
                    yield batch, work.fn(work.shared, batch)
                    break
                except Exception as exc:
                    if attempt == work.retries:
                        yield batch, exc


# What a worker process of a Pool runs: the function and its shared argument (set once).
_pool_call: tuple[Callable[[Any, list[Any]], Any], Any] | None = None


def _init_pool(fn: Callable[[Any, list[Any]], Any], shared: Any) -> None:
    global _pool_call
    _pool_call = (fn, shared)
    exit_with_parent()


def _run_pool_batch(items: list[Any]) -> Any:
    assert _pool_call is not None
    fn, shared = _pool_call
    return fn(shared, items)


class Pool:
    """Batches in worker processes of this machine.

    Parameters
    ----------
    workers : int
        How many worker processes.

    Attributes
    ----------
    slots : int
        The number of worker processes.
    """

    def __init__(self, workers: int) -> None:
        self.slots = workers

    def map(self, work: Work[S, T, R]) -> Iterator[tuple[list[T], R | BaseException]]:
        """Every batch in the worker processes (see :meth:`Executor.map`).

        ``work.shared`` is handed to each process once, when it starts; at most two batches
        per process are queued at a time. ``work.name`` is unused: the processes' tasks are
        not named.
        """
        initargs = (work.fn, work.shared)
        with ProcessPoolExecutor(self.slots, initializer=_init_pool, initargs=initargs) as pool:
            queue = iter(work.batches)
            pending: dict[Future[R], tuple[list[T], int]] = {}

            def submit(batch: list[T], attempt: int) -> None:
                pending[pool.submit(_run_pool_batch, batch)] = (batch, attempt)

            for batch in queue:
                submit(batch, 0)
                if len(pending) >= self.slots * 2:
                    break
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    batch, attempt = pending.pop(future)
                    exc = future.exception()
                    if exc is not None and attempt < work.retries:
                        submit(batch, attempt + 1)
                        continue
                    yield batch, exc if exc is not None else future.result()
                    nxt = next(queue, None)
                    if nxt is not None:
                        submit(nxt, 0)


class Dask:
    """Batches as Dask tasks on a scheduler, or on a new local cluster.

    Parameters
    ----------
    address : str
        A scheduler address (``tcp://host:8786``), or ``"local"`` for a new local cluster.
    workers : int
        The local cluster's worker processes (one thread each); unused with a scheduler.

    Attributes
    ----------
    client : distributed.Client
        The client connected to the scheduler.
    slots : int
        The worker threads of the cluster, when it was connected.

    Raises
    ------
    ClusterError
        dask.distributed is not installed, or the cluster cannot be started or reached.
    """

    def __init__(self, address: str, workers: int) -> None:
        forked = address == "local" and forkserver.start()
        try:
            # Untyped in parts: used as Any.
            distributed: Any = importlib.import_module("distributed")
        except ImportError:
            raise ClusterError(f"--dask needs dask.distributed: {INSTALL_HINT}") from None
        self._stack = contextlib.ExitStack()
        try:
            if address == "local":
                dask: Any = importlib.import_module("dask")
                started = dask.config.set({forkserver.START_METHOD: "forkserver"})
                with started if forked else contextlib.nullcontext():
                    cluster = distributed.LocalCluster(
                        n_workers=workers,
                        threads_per_worker=1,
                        processes=True,
                        dashboard_address="127.0.0.1:0",  # HTTP (health, dashboard): a free port
                    )
                self._stack.enter_context(cluster)
                self.client = distributed.Client(cluster, set_as_default=False)
            else:
                self.client = distributed.Client(address, set_as_default=False)
            self._stack.enter_context(self.client)
        except (OSError, ValueError, RuntimeError) as exc:  # Runtime: a worker did not start
            self._stack.close()
            where = "a local Dask cluster" if address == "local" else f"the scheduler {address}"
            raise ClusterError(f"cannot start on {where} ({type(exc).__name__})") from None
        self.slots = max(1, sum(self.client.nthreads().values()))

    def close(self) -> None:
        """Close the client, and the local cluster if one was started."""
        self._stack.close()

    def map(self, work: Work[S, T, R]) -> Iterator[tuple[list[T], R | BaseException]]:
        """One Dask task per batch, ``work.shared`` scattered to every worker once.

        Dask runs a task that raises again, ``work.retries`` times; the tasks' keys are
        ``dicomveil-batch-<index>-<work.name>`` (see :meth:`Executor.map`).
        """
        as_completed: Any = importlib.import_module("distributed").as_completed
        scattered = self.client.scatter(work.shared, broadcast=True, hash=False)
        futures = {
            self.client.submit(
                work.fn,
                scattered,
                batch,
                key=f"dicomveil-batch-{index}-{work.name}",
                retries=work.retries,
                pure=False,
            ): batch
            for index, batch in enumerate(work.batches)
        }
        for future in as_completed(futures, loop=self.client.loop):
            batch = futures.pop(future)
            try:
                outcome: R | BaseException = future.result()
            except Exception as exc:
                outcome = exc
            future.release()
            yield batch, outcome


@contextlib.contextmanager
def executor_for(address: str | None, workers: int, n_inputs: int) -> Iterator[Executor]:
    """Open the executor a run asks for, and close it afterwards.

    Parameters
    ----------
    address : str or None
        A Dask scheduler address, ``"local"`` for a new local Dask cluster, or None for
        this machine without Dask.
    workers : int
        Worker processes (0: one per core); on this machine, never more than the inputs.
    n_inputs : int
        How many inputs the run has.

    Yields
    ------
    Executor
        :class:`Dask` with an address; else :class:`Inline` for one worker (or one input),
        :class:`Pool` for more.

    Raises
    ------
    ClusterError
        A Dask cluster that cannot be started or reached.
    """
    workers = workers or os.cpu_count() or 1
    if address is not None:
        dask = Dask(address, workers)
        try:
            yield dask
        finally:
            dask.close()
    elif min(workers, n_inputs) <= 1:
        yield Inline()
    else:
        yield Pool(min(workers, n_inputs))
