"""The gateway's de-identification workers: processes, so that throughput grows with cores.

Each received instance is spooled to disk by its association's thread, then de-identified
by :func:`~dicomveil.gateway.store.store_instance` (the engine path of ``dicomveil run``)
in a worker process, while the thread waits for the result and other associations go on.
The originals a C-GET or C-MOVE retrieves are de-identified by the same workers
(:meth:`WorkerPool.retrieve`), several at a time.
Requests to a worker are pipelined: the next instance is already in its pipe when it
finishes one (in lock-step, it waited for the gateway's process between two instances:
about 5 % fewer instances a second with four associations on two cores, measured with
``benchmarks/bench_gateway.py --ab``).
A worker process holds its own routes (engines, release gates; no forwarder: forwarding
stays in the gateway's process) built from the configuration when it starts
(``spawn``: nothing of the gateway's threads is copied into it).

The workers are ``[gateway] workers`` processes (default: the machine's cores; 0 runs the
pipeline in the receiving threads, one instance at a time). A route whose profile cleans
free text with what it learns of each patient (``Engine.reads_patients``) sends all of a
patient's instances to the same worker, so that it remembers the patient as one process
would; other routes send each instance to the least busy worker.
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import os
import threading
from collections import deque
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from pydicom import dcmread

from dicomveil.errors import GatewayWorkerError
from dicomveil.gateway.cohorting import deidentify_retrieved
from dicomveil.gateway.config import GatewayConfig
from dicomveil.gateway.route import PIPELINE_LOCK, Route
from dicomveil.gateway.store import Stored, store_instance
from dicomveil.runs.batch import Task

__all__ = ["WorkerPool", "config_workers"]

_ROUTES: dict[str, Route] = {}  # in a worker process: its routes, by name
_STORE, _RETRIEVE = "store", "retrieve"  # what a request asks of a worker


class _NoListener:
    """A worker's routes never forward (the gateway's process does)."""

    def forwarded(self, route: str, entry: Path, size: int) -> None:
        """Unused in a worker."""

    def refused(self, route: str, entry: Path, reason: str) -> None:
        """Unused in a worker."""

    def error(self, route: str, message: str) -> None:
        """Unused in a worker."""


def config_workers(config: GatewayConfig) -> int:
    """How many worker processes the gateway runs: ``[gateway] workers``, else the cores.

    Parameters
    ----------
    config : GatewayConfig
        The gateway's configuration.

    Returns
    -------
    int
        The number of processes (0: none).
    """
    return config.workers if config.workers is not None else (os.cpu_count() or 1)


def _serve(conn: Connection, config: GatewayConfig) -> None:
    """A worker process: build the routes, then de-identify what the pipe brings until it
    closes (the gateway stopped or died)."""
    routes = {r.name: Route(r, config, _NoListener(), forwarding=False) for r in config.routes}
    conn.send(True)
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        conn.send(_answer(routes, request))


def _answer(routes: dict[str, Route], request: tuple[Any, ...]) -> Any:
    """A worker's answer to one request: a stored instance's :class:`Stored`, or a retrieved
    one's de-identified file ("" when withheld: None means that the worker ended)."""
    kind, route, *rest = request
    if kind == _RETRIEVE:
        original, out = rest
        done = deidentify_retrieved(routes[route], Path(original), Path(out))
        return "" if done is None else str(done)
    spool, task, expect = rest
    return store_instance(routes[route], Path(spool), task, expect)


class _Pending:
    """One request sent down a pipeline: its answer, once the reader thread has it."""

    __slots__ = ("answer", "done")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.answer: Any = None  # still None when done: the other end closed


class _Pipeline:
    """Requests down a connection to a process that answers each in the order received.

    Pipelined: a caller sends its request while earlier ones are still unanswered (an
    association's thread sends its instance while the worker de-identifies another's, so
    the worker does not wait for the gateway's process between two instances), and one
    reader thread hands each answer to the oldest request still waiting.

    Parameters
    ----------
    conn : multiprocessing.connection.Connection
        The connection to the process, which has nothing more to say but the answers.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._sending = threading.Lock()  # a request's place in line and its bytes, together
        self._waiting: deque[_Pending] = deque()
        self._ended = False
        self._reader = threading.Thread(target=self._read, name="dicomveil-answers", daemon=True)

    def start(self) -> None:
        """Start reading answers."""
        self._reader.start()

    def _read(self) -> None:
        """Answers to the requests in order, until the connection closes; then every
        request still waiting fails."""
        while True:
            try:
                answer = self.conn.recv()
            except (EOFError, OSError):
                break
            pending = self._waiting.popleft()
            pending.answer = answer
            pending.done.set()
        with self._sending:
            self._ended = True
            while self._waiting:
                self._waiting.popleft().done.set()

    def call(self, request: object) -> Any:
        """Send ``request`` and wait for its answer.

        Raises
        ------
        GatewayWorkerError
            When the other end closed before answering.
        """
        pending = _Pending()
        with self._sending:
            if self._ended:
                raise GatewayWorkerError("the worker de-identifying the instance ended")
            self._waiting.append(pending)
            try:
                self.conn.send(request)
            except OSError:
                self._waiting.remove(pending)
                raise GatewayWorkerError("the worker de-identifying the instance ended") from None
        pending.done.wait()
        if pending.answer is None:
            raise GatewayWorkerError("the worker de-identifying the instance ended")
        return pending.answer

    def finish(self) -> None:
        """Tell the other end that no request follows (it answers those in hand first)."""
        with self._sending, contextlib.suppress(OSError):
            self.conn.send(None)

    def join(self, timeout: float) -> None:
        """Wait for the reader thread (it ends when the connection does)."""
        if self._reader.is_alive():
            self._reader.join(timeout)


class _Worker:
    """One worker process and the pipeline of requests to it."""

    def __init__(self, config: GatewayConfig) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=_serve, args=(child, config), name="dicomveil-worker", daemon=True
        )
        self.process.start()
        child.close()
        self.pipeline = _Pipeline(self.conn)

    def ready(self) -> None:
        try:
            started = self.conn.recv()
        except (EOFError, OSError):
            started = False
        if not started:
            self.process.join(5)
            raise GatewayWorkerError(
                "a worker process did not start (a Python script that starts the gateway "
                "must do so under `if __name__ == '__main__':`, as multiprocessing requires)"
            )
        self.pipeline.start()

    def call(self, request: tuple[Any, ...]) -> Any:
        return self.pipeline.call(request)

    def stop(self) -> None:
        self.pipeline.finish()
        self.process.join(30)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.pipeline.join(30)
        self.conn.close()


class WorkerPool:
    """Worker processes de-identifying received instances (see the module's docstring).

    Parameters
    ----------
    config : GatewayConfig
        The gateway's configuration (its routes are rebuilt in every worker).
    workers : int
        How many processes; 0: none (the receiving thread does the work).
    """

    def __init__(self, config: GatewayConfig, workers: int) -> None:
        self.config = config
        self.workers = workers
        self._shards: list[_Worker] = []
        self._busy: list[int] = []
        self._lock = threading.Lock()
        self._replacing = threading.Lock()

    def start(self) -> None:
        """Start the processes and wait until each has built its routes."""
        self._shards = [_Worker(self.config) for _ in range(self.workers)]
        self._busy = [0] * self.workers
        for shard in self._shards:
            shard.ready()

    def stop(self) -> None:
        """Stop the processes (waiting for the instances in hand)."""
        shards, self._shards = self._shards, []
        for shard in shards:
            shard.stop()

    def store(self, route: Route, spool: Path, task: Task, expect: tuple[str, str]) -> Stored:
        """De-identify one spooled instance (:func:`store_instance`) in a worker.

        Parameters
        ----------
        route : Route
            The route it came in on.
        spool : Path
            The spooled file.
        task : Task
            Names it in the result.
        expect : tuple of str
            The SOP Class and SOP Instance UIDs of the C-STORE request.

        Returns
        -------
        Stored
            What :func:`store_instance` returns.
        """
        if not self._shards:
            with PIPELINE_LOCK:
                return store_instance(route, spool, task, expect)
        index, shard = self._pick(route, spool)
        try:
            stored: Stored = shard.call((_STORE, route.name, str(spool), task, expect))
            return stored
        except GatewayWorkerError:
            self._replace(index, shard)  # a new one takes its place
            raise
        finally:
            with self._lock:
                self._busy[index] -= 1

    def retrieve(self, route: Route, original: Path, out: Path) -> Path | None:
        """De-identify one retrieved original (:func:`~.cohorting.deidentify_retrieved`) in
        a worker: a C-GET or C-MOVE through the gateway uses every worker, as storing does.

        Parameters
        ----------
        route : Route
            The query route it was retrieved for.
        original : Path
            The retrieved original.
        out : Path
            The folder the de-identified file is written to.

        Returns
        -------
        Path or None
            The de-identified file; None when it is withheld, fails, or its worker ended.
        """
        if not self._shards:
            return deidentify_retrieved(route, original, out)
        index, shard = self._pick(route, original)
        try:
            answer = shard.call((_RETRIEVE, route.name, str(original), str(out)))
        except GatewayWorkerError:
            self._replace(index, shard)
            return None
        finally:
            with self._lock:
                self._busy[index] -= 1
        return Path(answer) if answer else None

    def _replace(self, index: int, broken: _Worker) -> None:
        """A new worker in place of ``broken`` (once: each of its waiting requests fails)."""
        with self._replacing:
            if self._shards[index] is not broken:
                return  # another of its requests had it replaced
            fresh = _Worker(self.config)
            fresh.ready()
            with self._lock:
                self._shards[index] = fresh
        broken.stop()

    def _pick(self, route: Route, spool: Path) -> tuple[int, _Worker]:
        """The worker for this instance: the patient's, or the least busy one."""
        with self._lock:
            if route.engine().reads_patients:
                index = _shard_of(_patient(spool), len(self._shards))
            else:
                index = min(range(len(self._busy)), key=self._busy.__getitem__)
            self._busy[index] += 1
            return index, self._shards[index]


def _patient(spool: Path) -> str:
    """The patient's ID and issuer as received (never logged), or "" when unreadable."""
    try:
        ds = dcmread(spool, stop_before_pixels=True, specific_tags=[0x00100020, 0x00100021])
    except Exception:
        return ""
    return f"{ds.get('PatientID', '')}|{ds.get('IssuerOfPatientID', '')}"


def _shard_of(key: str, count: int) -> int:
    digest: Any = hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=8)
    return int.from_bytes(digest.digest(), "big") % count
