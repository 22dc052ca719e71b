"""The forwarder: a thread per route that sends the route's queue to its destination.

It claims a queued entry (:meth:`~dicomveil.gateway.queue.RouteQueue.claim`: renamed to
``*.sending``), sends it with C-STORE as the file is on disk (never decoded nor
re-encoded), and deletes it only when the destination confirmed it (success, or a warning
status). A crash at any point leaves either the entry or its claim on disk, and
:meth:`~dicomveil.gateway.queue.RouteQueue.recover` turns claims back into entries at
start-up, so nothing is lost. The price is that an instance the destination stored just
before the crash, or whose deletion was not yet on disk, is sent again: destinations may
receive an instance more than once, always with the same bytes.

While the destination is unreachable, rejects the association, aborts, or answers "out of
resources", the forwarder waits and retries with exponential backoff (``retry_initial``
doubling up to ``retry_max``), forever. An entry the destination refuses for good (a
failure status other than out-of-resources, or a SOP class / transfer syntax it does not
accept) is moved to ``failed/`` and counted: move it back into the route folder to retry it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydicom.filereader import read_file_meta_info
from pynetdicom import _config, build_context
from pynetdicom.association import Association

from dicomveil.errors import safe_reason
from dicomveil.gateway.config import Node
from dicomveil.gateway.queue import RouteQueue
from dicomveil.gateway.transport import (
    ClientAE,
    HeldCheckpoint,
    hold_reactor,
    pause_reactor,
    quiet,
    reachable,
)

__all__ = ["ForwardListener", "Forwarder", "QueueForwarder", "TransientError"]

LOGGER = logging.getLogger("dicomveil.gateway")

_BATCH = 256  # entries looked at per round
_MAX_CONTEXTS = 128  # PS3.8 9.3.2.2: at most 128 presentation contexts
_PROCESSING_FAILURE_RETRIES = 5  # 0x0110 from the destination: retried, then failed/


class ForwardListener(Protocol):
    """What the forwarder tells: instances forwarded or refused, and transient errors.

    Every call names the route first (``route``: the route's name). ``entry`` is the
    queued file as it was named in the queue (before it was deleted or moved). Reasons and
    messages never carry values from the instances (statuses, counts and configuration
    values only).
    """

    def forwarded(self, route: str, entry: Path, size: int) -> None:
        """The destination confirmed ``entry`` (``size`` bytes): it is deleted from the queue."""

    def refused(self, route: str, entry: Path, reason: str) -> None:
        """The destination refused ``entry`` for good, for ``reason``: it moved to ``failed/``."""

    def error(self, route: str, message: str) -> None:
        """Forwarding failed for now (``message`` says what failed) and will be retried."""


class TransientError(Exception):
    """The destination cannot take instances now: back off and retry."""


@dataclass
class _Pending:
    entry: Path
    context: tuple[str, str] | None  # (SOP class, transfer syntax)


class QueueForwarder(ABC):
    """A thread that sends one route's queue to its destination, retrying with backoff.

    What a destination's protocol needs is a subclass's: :meth:`_round` sends what is
    queued now (raising :class:`TransientError` when the destination cannot take it) and
    :meth:`_release` lets go of a connection. :class:`Forwarder` sends with C-STORE,
    :class:`~dicomveil.gateway.web.forward.StowForwarder` with STOW-RS.

    Parameters
    ----------
    route : str
        The route's name (logs, status, listener calls).
    queue : RouteQueue
        The queue it empties.
    label : str
        How logs and the status name the destination (no credentials).
    listener : ForwardListener
        Told of every instance forwarded or refused, and of transient errors.
    retry_initial, retry_max : float
        The first delay after a failure, doubling up to ``retry_max``, in seconds.
    linger : float
        How long an idle connection is kept for more entries, in seconds.
    """

    def __init__(
        self,
        route: str,
        queue: RouteQueue,
        label: str,
        listener: ForwardListener,
        *,
        retry_initial: float = 1.0,
        retry_max: float = 300.0,
        linger: float = 1.0,
    ) -> None:
        self.route = route
        self.queue = queue
        self.label = label
        self.listener = listener
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.linger = linger
        self._connected = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"dicomveil-forward-{route}", daemon=True
        )
        state = queue.read_state()
        self.attempts = int(state.get("attempts", 0) or 0)
        self.forwarded_total = int(state.get("forwarded_total", 0) or 0)
        self.last_error: str | None = state.get("last_error")
        self.last_success: float | None = state.get("last_success")
        self.next_attempt = 0.0  # monotonic; a restart tries at once

    # ---------------------------------------------------------------------------------------
    def start(self) -> None:
        """Recover the queue after a crash (see :meth:`RouteQueue.recover`), then start."""
        self.queue.recover()
        self._thread.start()

    def notify(self) -> None:
        """A new entry was queued."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread; the queue stays on disk.

        Parameters
        ----------
        timeout : float
            How long to wait for the thread to end, in seconds.
        """
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        """Whether the thread runs."""
        return self._thread.is_alive()

    def state(self) -> dict[str, Any]:
        """The forwarding state, as the status file shows it.

        Returns
        -------
        dict
            Route, destination, attempts, seconds until the next retry, last error, time
            of the last success and the number of instances forwarded.
        """
        delay = max(0.0, self.next_attempt - time.monotonic())
        return {
            "route": self.route,
            "destination": self.label,
            "attempts": self.attempts,
            "retry_in_seconds": round(delay, 3) if self.attempts else 0.0,
            "last_error": self.last_error,
            "last_success": self.last_success,
            "forwarded_total": self.forwarded_total,
        }

    # ---------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                wait = self.next_attempt - time.monotonic()
                if wait > 0:
                    self._stop.wait(wait)
                    continue
                try:
                    sent_any = self._round()
                except TransientError as exc:
                    self._backoff(str(exc))
                    continue
                except Exception as exc:  # never let the thread die
                    LOGGER.error("route %s: forwarding error (%s)", self.route, safe_reason(exc))
                    self._backoff(f"internal error ({type(exc).__name__})")
                    continue
                if self.attempts:
                    self.attempts = 0
                    self.last_error = None
                    self._save()
                if not sent_any:
                    self._idle()
        finally:
            self._release()
            self._save()

    def _idle(self) -> None:
        """Nothing to send: keep the association a moment for more, then release it."""
        self._wake.clear()
        if self.queue.pending():
            return
        if self._connected:
            if self._wake.wait(self.linger):
                return
            self._release()
            self._save()
        self._wake.wait(5.0)

    def _backoff(self, message: str) -> None:
        self._release(abort=True)
        self.attempts += 1
        delay = min(self.retry_max, self.retry_initial * 2 ** min(self.attempts - 1, 30))
        self.next_attempt = time.monotonic() + delay
        self.last_error = message
        LOGGER.warning(
            "route %s: forwarding to %s failed (%s); retry %d in %.1f s",
            self.route,
            self.label,
            message,
            self.attempts,
            delay,
        )
        self.listener.error(self.route, message)
        self._save()

    def _save(self) -> None:
        state = self.state()
        state["next_attempt"] = time.time() + state.pop("retry_in_seconds")
        try:
            self.queue.write_state(state)
        except OSError:
            LOGGER.warning("route %s: cannot write the queue state", self.route)

    @abstractmethod
    def _round(self) -> bool:
        """Send what is queued now; True if anything was sent or settled."""

    def _release(self, *, abort: bool = False) -> None:
        """Let go of the connection to the destination, if there is one (a subclass's)."""
        self._connected = False

    def _refuse(self, claim: Path, reason: str) -> None:
        LOGGER.error("route %s: an instance was moved to failed/: %s", self.route, reason)
        try:
            self.queue.fail(claim, reason)
        except OSError:
            self.queue.unclaim(claim)
            raise TransientError("cannot move a refused instance to failed/") from None
        self.listener.refused(self.route, claim.with_suffix(""), reason)

    def _forwarded(self, claim: Path, size: int) -> None:
        """The destination confirmed ``claim``: delete it, count it, tell the listener."""
        self.queue.done(claim)
        self.forwarded_total += 1
        self.last_success = time.time()
        self.listener.forwarded(self.route, claim.with_suffix(""), size)


class Forwarder(QueueForwarder):
    """The C-STORE forwarder of a route (see the module's docstring).

    Parameters
    ----------
    route, queue, listener, retry_initial, retry_max, linger
        As :class:`QueueForwarder`'s.
    node : Node
        The destination.
    timeout : float
        ACSE, DIMSE, network and connection timeouts, in seconds.
    max_pdu_size : int
        The largest PDU it accepts from the destination, in bytes.
    """

    def __init__(
        self,
        route: str,
        queue: RouteQueue,
        node: Node,
        listener: ForwardListener,
        *,
        retry_initial: float = 1.0,
        retry_max: float = 300.0,
        timeout: float = 30.0,
        max_pdu_size: int = 262144,
        linger: float = 1.0,
    ) -> None:
        super().__init__(
            route,
            queue,
            node.label,
            listener,
            retry_initial=retry_initial,
            retry_max=retry_max,
            linger=linger,
        )
        self.node = node
        self._ae = ClientAE(ae_title=node.calling_ae_title)
        self._ae.acse_timeout = timeout
        self._ae.dimse_timeout = timeout
        self._ae.network_timeout = timeout
        self._ae.connection_timeout = timeout
        self._ae.maximum_pdu_size = max_pdu_size
        self._tls = (node.tls.client_context(), node.host) if node.tls is not None else None
        self._assoc: Association | None = None
        self._checkpoint: HeldCheckpoint | None = None  # the association's reactor's
        self._accepted: set[tuple[str, str]] = set()
        self._proposed: set[tuple[str, str]] = set()
        self._processing_failures: dict[Path, int] = {}

    # ---------------------------------------------------------------------------------------
    def _round(self) -> bool:
        """Send what is queued now; True if anything was sent or settled."""
        batch = [_Pending(e, _context_of(e)) for e in self.queue.pending()[:_BATCH]]
        if not batch:
            return False
        settled = False
        for item in batch:
            if item.context is None:  # unreadable: cannot be sent, keep it aside
                claim = self.queue.claim(item.entry)
                if claim is not None:
                    self._refuse(claim, "the queued file cannot be read as DICOM")
                    settled = True
        wanted = [i.context for i in batch if i.context is not None]
        if not wanted:
            return settled
        if self._assoc is None or not set(wanted) <= self._proposed:
            self._associate(wanted)
        checkpoint = self._checkpoint
        if checkpoint is not None:
            checkpoint.held = True  # the reactor paused from one request to the next
        try:
            return self._send_batch(batch, settled)
        finally:
            if checkpoint is not None:
                checkpoint.let_go()  # the reactor runs between batches (release, abort)

    def _send_batch(self, batch: list[_Pending], settled: bool) -> bool:
        """Send a round's entries, the reactor held paused from one to the next."""
        for item in batch:
            if self._stop.is_set():
                break
            if item.context is None or item.context not in self._proposed:
                continue  # a later association
            claim = self.queue.claim(item.entry)
            if claim is None:
                continue
            if item.context not in self._accepted:
                sop, ts = item.context
                self._refuse(
                    claim, f"the destination does not accept SOP class {sop} in syntax {ts}"
                )
                settled = True
                continue
            if _context_of(claim) != item.context:
                # replaced in the queue since the round began (the same instance received
                # again, in another syntax): sent with the next round's association
                self.queue.unclaim(claim)
                continue
            self._send(claim)
            settled = True
        return settled

    def _associate(self, wanted: list[tuple[str, str]]) -> None:
        self._release()
        contexts: list[tuple[str, str]] = []
        for pair in wanted:
            if pair not in contexts:
                contexts.append(pair)
            if len(contexts) == _MAX_CONTEXTS:
                break
        requested = [build_context(sop, [ts]) for sop, ts in contexts]
        try:
            assoc = self._ae.associate(
                self.node.host,
                self.node.port,
                contexts=requested,
                ae_title=self.node.ae_title,
                tls_args=self._tls,
                max_pdu=self._ae.maximum_pdu_size,
            )
        except (OSError, ValueError, RuntimeError) as exc:
            raise TransientError(f"cannot connect ({type(exc).__name__})") from None
        quiet(assoc)
        if not assoc.is_established and assoc.rejected_contexts and not assoc.accepted_contexts:
            # The destination answered and accepts none of these (SOP class, syntax) pairs:
            # pynetdicom aborts such an association. That is an answer for good (each entry
            # is refused by _send_batch), not a failure to connect to retry forever.
            self._checkpoint = None
            self._proposed, self._accepted = set(contexts), set()
            return
        if not assoc.is_established:
            if assoc.is_rejected:
                raise TransientError("the destination rejected the association")
            raise TransientError("cannot connect or the association was aborted")
        self._checkpoint = hold_reactor(assoc)
        self._assoc = assoc
        self._connected = True
        self._proposed = set(contexts)
        self._accepted = {
            (str(cx.abstract_syntax), str(cx.transfer_syntax[0]))
            for cx in assoc.accepted_contexts
            if cx.transfer_syntax
        }

    def _send(self, claim: Path) -> None:
        assoc = self._assoc
        assert assoc is not None
        try:
            size = claim.stat().st_size
            # Send the file as it is on disk: pynetdicom then reads it in chunks and never
            # decodes nor re-encodes it (its documented setting for path arguments; global,
            # so it is set before every send).
            _config.STORE_SEND_CHUNKED_DATASET = True
            if not reachable(assoc):  # the held reactor did not see it go
                raise RuntimeError("the association ended")
            pause_reactor(assoc)
            status = assoc.send_c_store(claim)
        except (OSError, RuntimeError) as exc:
            self.queue.unclaim(claim)
            raise TransientError(f"sending failed ({type(exc).__name__})") from None
        except (ValueError, AttributeError, KeyError) as exc:
            self._refuse(claim, f"cannot be sent ({type(exc).__name__})")
            return
        code = status.get("Status") if status is not None else None
        if code is None:
            self.queue.unclaim(claim)
            raise TransientError("no response: the association was aborted or timed out")
        code = int(code)
        if code == 0x0000 or (code & 0xF000) == 0xB000 or code in (0x0107, 0x0116):
            self._processing_failures.pop(claim, None)
            self._forwarded(claim, size)
            return
        if (code & 0xFF00) == 0xA700 or code == 0x0213:
            self.queue.unclaim(claim)
            raise TransientError(f"the destination is out of resources (status 0x{code:04X})")
        if code == 0x0110:
            count = self._processing_failures.get(claim, 0) + 1
            self._processing_failures[claim] = count
            if count < _PROCESSING_FAILURE_RETRIES:
                self.queue.unclaim(claim)
                raise TransientError("the destination reported a processing failure (0x0110)")
            self._processing_failures.pop(claim, None)
        self._refuse(claim, f"the destination refused it (status 0x{code:04X})")

    def _release(self, *, abort: bool = False) -> None:
        if self._checkpoint is not None:
            self._checkpoint.let_go()
            self._checkpoint = None
        assoc, self._assoc = self._assoc, None
        self._connected = False
        self._accepted = set()
        self._proposed = set()
        if assoc is None:
            return
        with contextlib.suppress(Exception):
            if abort or not assoc.is_established:
                assoc.abort()
            else:
                assoc.release()


def _context_of(entry: Path) -> tuple[str, str] | None:
    """(SOP class, transfer syntax) from a queued file's meta; None if unreadable."""
    try:
        meta = read_file_meta_info(entry)
        return str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID)
    except FileNotFoundError:
        return None
    except Exception:
        return None
