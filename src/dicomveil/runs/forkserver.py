"""The fork server the workers of a local Dask cluster start from (``--dask local``).

Dask spawns each worker of a local cluster by default: a fresh interpreter that imports
Dask, then dicomveil at its first task, about 0.7 s on a 2-core machine before the first
file, each time. Forked from one server process that has imported them once, the workers
start with them. The server is multiprocessing's fork server: a process of its own with one
thread (forking the run's own process, where Dask's event loop and the progress display run
threads, would not be safe). The program starts it as soon as its command line asks for a
local cluster (:func:`start_for`, before it imports anything else), so that the server's
imports and the program's own run side by side; a run on a local cluster starts it too when
the program did not (:func:`start`). Only the standard library is imported here, and
:mod:`multiprocessing` only to start the server: every other command starts as before.

What it saves is measured in README.md, "When Dask is worth it" (``benchmarks/bench_run.py``,
its ``dask`` and ``baselinedask`` contenders).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

__all__ = ["START_METHOD", "start", "start_for"]

START_METHOD: Final = "distributed.worker.multiprocessing-method"
"""Dask's setting of how a worker process is started."""

PRELOADED: Final = ("distributed", "dicomveil.runs.batch", "dicomveil.runs.cluster")
"""What the server imports before any worker is forked from it."""


def start() -> bool:
    """Start the fork server (if it is not running), importing :data:`PRELOADED`.

    Returns
    -------
    bool
        False where the platform has no fork server (Windows): the cluster spawns its
        workers then. A server already running (started by the caller's own program) is
        used as it is.
    """
    import multiprocessing  # here: the program imports this module as it starts
    import multiprocessing.forkserver

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return False
    multiprocessing.get_context("forkserver").set_forkserver_preload(list(PRELOADED))
    multiprocessing.forkserver.ensure_running()
    return True


def start_for(argv: Sequence[str]) -> None:
    """Start the server now when ``argv`` (the program's arguments) asks for a local cluster
    (``--dask local`` or ``--dask=local``). A wrong guess costs an idle process that ends
    with the program.

    Parameters
    ----------
    argv : sequence of str
        The arguments after the program's name.
    """
    for index, arg in enumerate(argv):
        if arg == "--":
            return
        if arg == "--dask=local" or (arg == "--dask" and argv[index + 1 : index + 2] == ["local"]):
            start()
            return
