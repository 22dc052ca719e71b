"""A run's worker processes end with the run: what ``kill -9`` of it leaves behind.

Found by an independent black-box test: after ``kill -9`` of ``dicomveil run``, its worker
processes (re-parented to init) slept on, for good.
"""

from __future__ import annotations

import os
import threading
import time

__all__ = ["exit_with_parent"]


def exit_with_parent(every: float = 1.0) -> None:
    """End this worker process when the process that started it is gone (``kill -9`` of a
    run): a pool's worker waits for its next task on a pipe whose writing end it holds too
    (it inherited it), so it would wait forever. A daemon thread looks every ``every``
    seconds; what the worker was writing is a temporary file, removed by the next run.

    Parameters
    ----------
    every : float
        Seconds between two looks.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, name="dicomveil-parent-watch", daemon=True).start()
