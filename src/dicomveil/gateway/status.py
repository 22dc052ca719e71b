"""The gateway's status: counts, throughput, queues, forwarding and recent errors.

A running gateway keeps a :class:`StatusBoard` and rewrites ``status.json`` in its state
folder atomically about once a second; :func:`read_status` reads it back (for ``dicomveil
gateway status``) with the queue depths read from disk at that moment. The status names
routes, AE titles, addresses, statuses and reasons, never values from a data set.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

from dicomveil.gateway.config import GatewayConfig
from dicomveil.gateway.events import EventKind
from dicomveil.gateway.forward import QueueForwarder
from dicomveil.gateway.queue import RouteQueue

__all__ = ["STATUS_FILE", "StatusBoard", "read_status"]

STATUS_FILE = "status.json"


class StatusBoard:
    """Counts, throughput and recent errors, written to ``status.json`` atomically.

    Parameters
    ----------
    path : Path
        The status file.
    routes : list of str
        The names of the routes (each gets its counters).
    """

    def __init__(self, path: Path, routes: list[str]) -> None:
        self.path = path
        self.started = time.time()
        self._lock = threading.Lock()
        self.counts: dict[str, Counter[str]] = {r: Counter() for r in routes}
        self.recent: dict[str, deque[float]] = {r: deque(maxlen=100000) for r in routes}
        self.errors: deque[dict[str, Any]] = deque(maxlen=20)
        self.rejected_associations = 0
        self.dirty = threading.Event()

    def rejected(self, message: str) -> None:
        """Count a rejected association and keep it among the recent errors.

        Parameters
        ----------
        message : str
            What was rejected (address and AE title, no values from a data set).
        """
        with self._lock:
            self.rejected_associations += 1
        self.error("", message)

    def count(self, route: str, what: EventKind | str, n: int = 1) -> None:
        """Add to a counter of a route (WRITTEN also feeds the throughput).

        Parameters
        ----------
        route : str
            The route's name.
        what : EventKind or str
            The counter (an event kind, or ``"queries"``).
        n : int
            How much to add.
        """
        with self._lock:
            self.counts.setdefault(route, Counter())[str(what)] += n
            if what == EventKind.WRITTEN:
                self.recent.setdefault(route, deque(maxlen=100000)).append(time.monotonic())
        self.dirty.set()

    def error(self, route: str, message: str) -> None:
        """Keep a recent error (the last 20 are in the status file).

        Parameters
        ----------
        route : str
            The route's name; empty for the gateway itself.
        message : str
            What went wrong (no values from a data set).
        """
        with self._lock:
            self.errors.append({"time": time.time(), "route": route, "message": message})
        self.dirty.set()

    def snapshot(
        self, queues: dict[str, RouteQueue], forwarders: dict[str, QueueForwarder], running: bool
    ) -> dict[str, Any]:
        """The status as written to ``status.json``.

        Parameters
        ----------
        queues : dict of str to RouteQueue
            The queue of each route that forwards.
        forwarders : dict of str to QueueForwarder
            The forwarder of each route that forwards.
        running : bool
            Whether the gateway serves.

        Returns
        -------
        dict
            Process, uptime, rejected associations, per-route counts, queue depths,
            throughput over the last minute and forwarding state, and the last errors.
        """
        now = time.monotonic()
        with self._lock:
            routes: dict[str, Any] = {}
            for name, counter in self.counts.items():
                recent = self.recent.get(name, deque())
                while recent and now - recent[0] > 60.0:
                    recent.popleft()
                queue = queues.get(name)
                forwarder = forwarders.get(name)
                routes[name] = {
                    **{k.value: counter.get(k.value, 0) for k in EventKind},
                    "queries": counter.get("queries", 0),
                    "queue_depth": queue.depth() if queue is not None else 0,
                    "queue_failed": queue.failed_count() if queue is not None else 0,
                    "written_per_second_last_minute": round(len(recent) / 60.0, 3),
                    "forwarding": forwarder.state() if forwarder is not None else None,
                }
            return {
                "pid": os.getpid(),
                "running": running,
                "started": self.started,
                "updated": time.time(),
                "uptime_seconds": round(time.time() - self.started, 3),
                "rejected_associations": self.rejected_associations,
                "routes": routes,
                "last_errors": list(self.errors),
            }


def read_status(config: GatewayConfig) -> dict[str, Any]:
    """The gateway's status file, with queue depths read from disk now and whether the
    process that wrote it is alive.

    Parameters
    ----------
    config : GatewayConfig
        The gateway's configuration (its state folder and routes).

    Returns
    -------
    dict
        As :meth:`StatusBoard.snapshot` writes it (``running`` False and no counts when
        there is no status file yet), ``running`` true only if the process is alive.
    """
    path = config.state_dir / STATUS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {"running": False, "routes": {}, "last_errors": []}
    if not isinstance(data, dict):
        data = {"running": False, "routes": {}, "last_errors": []}
    pid = data.get("pid")
    alive = False
    if isinstance(pid, int) and data.get("running"):
        try:
            os.kill(pid, 0)
            alive = True
        except (ProcessLookupError, PermissionError):
            alive = False
    data["running"] = alive
    routes = data.setdefault("routes", {})
    for route in config.routes:
        entry = routes.setdefault(route.name, {})
        if route.forward is not None:
            queue = RouteQueue(config.state_dir / "queue" / route.name)
            entry["queue_depth"] = queue.depth()
            entry["queue_failed"] = queue.failed_count()
            state = queue.read_state()
            if state:
                entry["forwarding"] = {**(entry.get("forwarding") or {}), **state}
    return data
