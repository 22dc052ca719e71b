"""Events for an audit trail: what happened to each instance the gateway received.

:class:`GatewayEvents` is the hook: an audit integration implements its callbacks and
passes it to :class:`~dicomveil.gateway.node.Gateway`; :class:`NullEvents` is the default.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from dicomveil.errors import safe_reason
from dicomveil.runs.batch import FileResult

__all__ = ["EventKind", "GatewayEvent", "GatewayEvents", "NullEvents", "emit"]

LOGGER = logging.getLogger("dicomveil.gateway")


class EventKind(StrEnum):
    """What happened to an instance; the value names the :class:`GatewayEvents` callback."""

    RECEIVED = "received"
    WRITTEN = "written"
    FORWARDED = "forwarded"
    WITHHELD = "withheld"
    FAILED = "failed"


@dataclass(frozen=True)
class GatewayEvent:
    """One thing that happened to one instance.

    ``result`` is the file result of the pipeline (as ``dicomveil run`` reports it; its
    ``patient_id`` holds the original PatientID, for an audit trail's maps, and is never
    logged). For RECEIVED it is None; for FORWARDED it names the queued file that was sent.
    """

    kind: EventKind
    route: str
    calling_ae: str = ""
    address: str = ""
    result: FileResult | None = None
    destination: str = ""
    status: int | None = None


class GatewayEvents(Protocol):
    """Callbacks for every received, written, forwarded, withheld and failed instance.

    An audit integration implements these; they run in the gateway's threads (keep them
    short) and an exception they raise is logged and otherwise ignored. Each is given the
    :class:`GatewayEvent`: the route, the sender and the file result.
    """

    def received(self, event: GatewayEvent) -> None:
        """``event``: an instance arrived (C-STORE request accepted for processing)."""

    def written(self, event: GatewayEvent) -> None:
        """``event``: an instance was de-identified and is on disk (folder and/or queue)."""

    def forwarded(self, event: GatewayEvent) -> None:
        """``event``: a queued instance was confirmed by the route's destination."""

    def withheld(self, event: GatewayEvent) -> None:
        """``event``: the profile withholds an instance (neither written nor forwarded)."""

    def failed(self, event: GatewayEvent) -> None:
        """``event``: an instance could not be stored, or its destination refused it for good."""


class NullEvents:
    """The default: nothing is recorded beyond the gateway's status file."""

    def _ignore(self, event: GatewayEvent) -> None:
        """Do nothing with ``event`` (every :class:`GatewayEvents` callback)."""

    received = written = forwarded = withheld = failed = _ignore


def emit(events: GatewayEvents, kind: EventKind, event: GatewayEvent) -> None:
    """Call the callback of ``events`` that ``kind`` names; log its exception, if any.

    Parameters
    ----------
    events : GatewayEvents
        The callbacks.
    kind : EventKind
        Which callback.
    event : GatewayEvent
        What it is told.
    """
    callback: Callable[[GatewayEvent], None] = getattr(events, kind.value)
    try:
        callback(event)
    except Exception as exc:
        LOGGER.error("a gateway event callback failed (%s: %s)", kind.value, safe_reason(exc))
