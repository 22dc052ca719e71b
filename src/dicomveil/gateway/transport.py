"""The gateway's sockets and associations, in both directions.

Accepting: :class:`AcceptorHandler` is pynetdicom's request handler with a socket timeout, a
PDU size limit (:class:`LimitedSocket`: a PDU longer than the limit is answered with an
A-ABORT and the connection closed before it is read) and the TLS handshake done in the
connection's own thread, so a peer that never completes it cannot block other connections.

Requesting (sending to destinations): :class:`ClientAE` and :class:`ClosingSocket`, whose
sockets are closed when connecting fails and send each DIMSE message at once (Nagle's
algorithm off); :func:`open_association` opens one association to another node for one SOP
class (the C-FIND and MPPS proxies). The forwarder of :mod:`dicomveil.gateway.forward` uses
the same client AE.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import select
import socket
import ssl
import struct
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from pynetdicom import AE, build_context, evt
from pynetdicom._handlers import (
    standard_dimse_recv_handler,
    standard_dimse_sent_handler,
    standard_pdu_recv_handler,
    standard_pdu_sent_handler,
)
from pynetdicom.association import Association
from pynetdicom.transport import AddressInformation, AssociationSocket, RequestHandler

from dicomveil.gateway.config import Node
from dicomveil.gateway.dimse import WaitingDimse

__all__ = [
    "MIN_PDU_LIMIT",
    "QUEUED_PDUS",
    "AcceptorHandler",
    "ClientAE",
    "ClosingSocket",
    "HeldCheckpoint",
    "LimitedSocket",
    "bound_sending",
    "hold_reactor",
    "no_delay",
    "open_association",
    "pause_reactor",
    "quiet",
    "reachable",
]

LOGGER = logging.getLogger("dicomveil.gateway")

MIN_PDU_LIMIT = 1 << 20  # association requests may be long (many contexts, identities)
# How long an association's threads wait for their next event at most (they
# wake at once when one comes): the delay before a release, an abort or a closed connection
# is noticed, and the most a stopped association's threads outlive it.
IDLE_WAIT: Final = 0.02
# The longest PDU read into a buffer of its announced length at once; a longer one (which an
# acceptor's limit refuses, but a peer we called may announce) grows as its bytes arrive.
_PREALLOCATED: Final = 4 << 20
# The most PDUs an association's queue holds for its DUL thread to send before the thread
# queueing more waits (pynetdicom queues every fragment of a data set at once: a 1 GB
# instance sent to a slower peer was held in memory whole).
QUEUED_PDUS: Final = 32
# A-ABORT PDU (PS3.8 9.3.8): source 2 (service provider), reason 6 (invalid PDU parameter).
_ABORT_INVALID_PDU = struct.pack(">BBLBBBB", 0x07, 0, 4, 0, 0, 0x02, 0x06)


def no_delay(sock: socket.socket) -> None:
    """Turn Nagle's algorithm off (DICOM sends small messages and waits for answers).

    Parameters
    ----------
    sock : socket.socket
        A TCP socket; an error setting the option is ignored.
    """
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# --------------------------------------------------------------------------------------------
# Requesting associations


class ClosingSocket(AssociationSocket):
    """pynetdicom 3.0 shuts down a socket that failed to connect before closing it; the
    shutdown raises (not connected) and the socket is left open: close it in any case.
    Nagle's algorithm is off: each DIMSE message is sent at once (no delayed-ACK stalls).

    After :meth:`wake_on_send`, its :attr:`ready` waits (at most :data:`IDLE_WAIT`) for
    data from the peer or for something to send, instead of answering at once: pynetdicom's
    DUL thread asks it in a loop, which otherwise wakes a thousand times a second per
    association (measured: four idle accepted associations took 15 % of a core, 3 % with
    the wait; the same wakeups compete for the interpreter with the threads receiving
    instances) and notices a message only at its next millisecond.
    """

    _wake: tuple[socket.socket, socket.socket] | None = None
    _release_wake: weakref.finalize[Any, Any] | None = None

    def _create_socket(self, address: AddressInformation) -> socket.socket:
        sock = super()._create_socket(address)
        no_delay(sock)
        return sock

    def _shutdown_socket(self) -> None:
        sock = self.socket
        try:
            super()._shutdown_socket()
        finally:
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()

    def recv(self, nr_bytes: int) -> bytearray:
        """Read ``nr_bytes`` from the peer, or what came before the connection closed.

        As pynetdicom's, but into one buffer, as much as has arrived at each call:
        pynetdicom's reads 4 KiB at a time, 32 reads (and with a socket timeout 32 polls,
        each releasing and taking back the interpreter) for an instance of 128 KiB.

        Parameters
        ----------
        nr_bytes : int
            How many bytes to read (a PDU's header, or its announced length).

        Returns
        -------
        bytearray
            The bytes read: fewer than ``nr_bytes`` only when the peer closed the
            connection.
        """
        sock = self.socket
        assert sock is not None
        if nr_bytes > _PREALLOCATED:  # announced, not yet sent: grown as it comes
            grown = bytearray()
            while len(grown) < nr_bytes:
                chunk = sock.recv(min(nr_bytes - len(grown), _PREALLOCATED))
                if not chunk:
                    break
                grown += chunk
            return grown
        data = bytearray(nr_bytes)
        read = 0
        with memoryview(data) as view:
            while read < nr_bytes:
                count = sock.recv_into(view[read:])
                if not count:
                    break  # the connection closed: what came so far, as pynetdicom does
                read += count
        if read < nr_bytes:
            del data[read:]
        return data

    def wake_on_send(self, assoc: Association) -> None:
        """Wake :attr:`ready` whenever the association queues something to send.

        Parameters
        ----------
        assoc : Association
            The association whose DUL thread asks this socket; not started yet.
        """
        self._wake = socket.socketpair()
        for end in self._wake:
            end.setblocking(False)
        # closed with the connection, or when the socket is collected (an association that
        # ends without closing its socket)
        self._release_wake = weakref.finalize(self, _close_all, self._wake)
        assoc.dul.to_provider_queue = _WakingQueue(self._ring)
        assoc.dul._run_loop_delay = 0  # the wait is in ready, not in a sleep

    def _ring(self) -> None:
        if self._wake is not None:
            with contextlib.suppress(OSError):  # full (already readable) or closed
                self._wake[1].send(b"\0")

    @property
    def ready(self) -> bool:
        """Whether the peer's data can be read: True as soon as it can, False after
        :data:`IDLE_WAIT` or when something was queued to be sent."""
        sock, wake = self.socket, self._wake
        if wake is None or sock is None or not self._is_connected:
            if wake is not None:
                time.sleep(0.001)  # not connected: pynetdicom's own pace between checks
            return bool(super().ready)
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        try:
            readable, _, _ = select.select([sock, wake[0]], [], [], IDLE_WAIT)
        except (OSError, ValueError):  # closed meanwhile (close() told the DUL: Evt17)
            if self._is_connected:
                self.event_queue.put("Evt17")  # as pynetdicom's
            return False
        if wake[0] in readable:
            with contextlib.suppress(OSError):
                while wake[0].recv(4096):
                    pass
        return sock in readable

    def close(self) -> None:
        """Close the connection, and the wake-up pair."""
        try:
            super().close()
        finally:
            if self._release_wake is not None:
                self._release_wake()


class ClientAE(AE):
    """An AE for associations we request; its sockets are closed when connecting fails, and
    their sending is bounded (:func:`bound_sending`)."""

    def _create_socket(
        self,
        assoc: Association,
        address: AddressInformation,
        tls_args: tuple[ssl.SSLContext, str] | None,
    ) -> AssociationSocket:
        sock = ClosingSocket(assoc, address=address)
        sock.tls_args = tls_args
        sock.wake_on_send(assoc)
        bound_sending(assoc)
        return sock


def bound_sending(assoc: Association) -> Association:
    """Have a thread that sends on ``assoc`` wait while :data:`QUEUED_PDUS` PDUs are queued
    for its DUL thread to send (pynetdicom queues every fragment of a message at once, so
    a large instance sent to a slower peer was held in memory whole: now at most that many
    PDUs of it). The DUL thread itself never waits (it is the one that sends), nor anyone
    once it has stopped.

    Parameters
    ----------
    assoc : Association
        The association, before it sends anything.

    Returns
    -------
    Association
        ``assoc``.
    """
    dul = assoc.dul
    send = dul.send_pdu
    queued = dul.to_provider_queue

    def send_pdu(primitive: Any) -> None:
        send(primitive)
        if threading.current_thread() is dul:
            return
        if queued.qsize() <= QUEUED_PDUS:
            return
        while queued.qsize() > QUEUED_PDUS // 2 and dul.is_alive() and not dul._kill_thread:
            time.sleep(0.0005)  # until half have gone: a wait per many PDUs, not per PDU

    dul.send_pdu = send_pdu  # type: ignore[method-assign]
    return assoc


_STANDARD_LOGGING = (
    (evt.EVT_DIMSE_RECV, standard_dimse_recv_handler),
    (evt.EVT_DIMSE_SENT, standard_dimse_sent_handler),
    (evt.EVT_PDU_RECV, standard_pdu_recv_handler),
    (evt.EVT_PDU_SENT, standard_pdu_sent_handler),
)


def quiet(assoc: Association) -> None:
    """Unbind pynetdicom's standard logging handlers from an association when its logger
    would drop what they say (below INFO).

    They format every PDU and DIMSE message (and copy each data set to see whether it is
    empty) before the logger discards the text: a third of the receiving thread's time per
    instance. Bound per association, so nothing process-wide changes (``_config`` stays).

    Parameters
    ----------
    assoc : Association
        A new association (acceptor or requestor).
    """
    if logging.getLogger("pynetdicom").isEnabledFor(logging.INFO):
        return
    for event, handler in _STANDARD_LOGGING:
        assoc.unbind(event, handler)


def pause_reactor(assoc: Association, timeout: float = 5.0) -> bool:
    """Stop the association's reactor thread before a request is sent on it.

    pynetdicom pauses the reactor (the thread that takes incoming DIMSE messages off the
    queue) in ``send_c_store`` by clearing an event and waiting for a flag the reactor sets
    just *before* it waits on that event. A reactor that had already passed the event when
    it was cleared still has the flag set for an instant: the sender goes on, the response
    comes back on loopback within microseconds, the reactor takes it off the queue, and the
    sender waits out its DIMSE timeout for a response that had arrived (issue 16: "no
    response", then a resend, in 2 of 9 runs). Here the event is cleared and the reactor
    is known to be paused only when its thread is *waiting* on the event (the event's
    condition has a waiter); pynetdicom's own pause then finds it paused. The event is set
    again by pynetdicom when the response is in.

    Parameters
    ----------
    assoc : Association
        An established association.
    timeout : float
        How long to wait for the reactor, in seconds.

    Returns
    -------
    bool
        True when the reactor is paused (False: it did not stop in time, or this version
        of pynetdicom works otherwise; the send goes on as before).
    """
    checkpoint = getattr(assoc, "_reactor_checkpoint", None)
    waiters = getattr(getattr(checkpoint, "_cond", None), "_waiters", None)
    if checkpoint is None or waiters is None:
        return False
    checkpoint.clear()
    deadline = time.monotonic() + timeout
    while not waiters:
        if time.monotonic() > deadline or not assoc.is_established:
            return False
        time.sleep(0.0001)
    return True


class HeldCheckpoint(threading.Event):
    """An association's reactor checkpoint that can be held clear across several requests.

    pynetdicom pauses a requestor's reactor thread for each request (the checkpoint cleared,
    then the sender waits until the thread is waiting on it) and lets it run again when the
    response is in. The reactor sleeps a millisecond each round before it waits again, so
    each request of a series waits that long (plus the hand-over of the interpreter lock)
    for the reactor to stop after the last one: a fifth of the forwarder's time per
    instance. While :attr:`held`, :meth:`set` does nothing: the reactor stays paused from
    one request to the next, until :meth:`let_go` lets it run (a kill pynetdicom asked
    meanwhile takes effect then).
    """

    def __init__(self) -> None:
        super().__init__()
        self.held = False

    def set(self) -> None:
        """Let the reactor run, unless held."""
        if not self.held:
            super().set()

    def let_go(self) -> None:
        """No longer held: the reactor runs."""
        self.held = False
        super().set()


def hold_reactor(assoc: Association) -> HeldCheckpoint | None:
    """Give a new, established association a :class:`HeldCheckpoint` (not held yet).

    Parameters
    ----------
    assoc : Association
        A requestor association, just established, its reactor running.

    Returns
    -------
    HeldCheckpoint or None
        The checkpoint now in place; None when this pynetdicom has no checkpoint event
        (the association is left as it is).
    """
    current = getattr(assoc, "_reactor_checkpoint", None)
    if not isinstance(current, threading.Event) or not current.is_set():
        return None
    checkpoint = HeldCheckpoint()
    checkpoint.set()
    assoc._reactor_checkpoint = checkpoint  # read anew by the reactor at each round
    return checkpoint


def reachable(assoc: Association) -> bool:
    """Whether a request can go out on ``assoc``: established, its DUL thread alive and no
    abort received (what the reactor would have noticed, were it not held)."""
    return bool(assoc.is_established and assoc.dul.is_alive() and not assoc.acse.is_aborted())


def open_association(node: Node, sop_class: str, timeout: float) -> Association | None:
    """An established association to ``node`` for one SOP class, or None.

    Parameters
    ----------
    node : Node
        The node to associate with (TLS when it has a TLS configuration).
    sop_class : str
        The SOP class UID of the one presentation context proposed (default syntaxes).
    timeout : float
        ACSE, DIMSE, network and connection timeouts, in seconds.

    Returns
    -------
    Association or None
        The association, or None when the node cannot be reached, rejects or aborts.
    """
    ae = ClientAE(ae_title=node.calling_ae_title)
    ae.acse_timeout = timeout
    ae.dimse_timeout = timeout
    ae.network_timeout = timeout
    ae.connection_timeout = timeout
    tls = (node.tls.client_context(), node.host) if node.tls is not None else None
    try:
        assoc = ae.associate(
            node.host,
            node.port,
            contexts=[build_context(sop_class)],
            ae_title=node.ae_title,
            tls_args=tls,
        )
    except (OSError, ValueError, RuntimeError):
        return None
    quiet(assoc)
    return assoc if assoc.is_established else None


# --------------------------------------------------------------------------------------------
# Accepting associations: PDU size limit and TLS in the connection's own thread


class LimitedSocket(ClosingSocket):
    """Refuses a PDU longer than ``limit`` before reading it: A-ABORT, then close."""

    limit = MIN_PDU_LIMIT

    def recv(self, nr_bytes: int) -> bytearray:
        """Read ``nr_bytes`` from the peer, unless that is more than ``limit``.

        Parameters
        ----------
        nr_bytes : int
            How many bytes pynetdicom wants to read (a PDU's announced length).

        Returns
        -------
        bytearray
            The bytes read.

        Raises
        ------
        OSError
            When ``nr_bytes`` is over the limit: an A-ABORT was sent and the association
            ends.
        """
        if nr_bytes > self.limit:
            LOGGER.warning("aborted an association: a PDU of %d bytes is too long", nr_bytes)
            with contextlib.suppress(OSError):
                if self.socket is not None:
                    self.socket.sendall(_ABORT_INVALID_PDU)
            raise OSError("PDU too long")
        return super().recv(nr_bytes)


class AcceptorHandler(RequestHandler):
    """pynetdicom's request handler with a PDU size limit, a socket timeout, and the TLS
    handshake done here (in the connection's thread) rather than in the accept loop, so a
    peer that never completes it cannot block other connections.

    Parameters
    ----------
    request, client_address, server
        As for :class:`socketserver.BaseRequestHandler`.
    tls : ssl.SSLContext or None
        The server context, or None for plain TCP.
    limit : int
        The longest PDU accepted, in bytes.
    timeout : float
        The socket timeout, in seconds (the TLS handshake included).
    spill : Path or None
        Where a large received data set goes as it arrives
        (:class:`~dicomveil.gateway.dimse.SpillingDataSet`); None: held in memory.
    """

    def __init__(
        self,
        request: Any,
        client_address: Any,
        server: Any,
        *,
        tls: ssl.SSLContext | None,
        limit: int,
        timeout: float,
        spill: Path | None = None,
    ) -> None:
        self._tls = tls
        self._limit = limit
        self._timeout = timeout
        self._spill = spill
        super().__init__(request, client_address, server)

    def handle(self) -> None:
        """Set the timeout, do the TLS handshake if any, then serve the association."""
        sock = self.request
        assert isinstance(sock, socket.socket)
        sock.settimeout(self._timeout)
        no_delay(sock)
        if self._tls is not None:
            try:
                self.request = self._tls.wrap_socket(sock, server_side=True)
            except (OSError, ValueError) as exc:
                LOGGER.warning(
                    "TLS handshake with %s failed (%s)", self.client_address[0], type(exc).__name__
                )
                with contextlib.suppress(OSError):
                    sock.close()
                return
        super().handle()

    def _create_association(self) -> Association:
        # As RequestHandler._create_association, with our socket class.
        assoc = Association(self.ae, "acceptor")
        assoc._server = self.server
        assoc.name = f"AcceptorThread@{time.strftime('%Y%m%d%H%M%S')}"
        sock = LimitedSocket(assoc, client_socket=self.request)
        sock.limit = self._limit
        assoc.set_socket(sock)
        sock.wake_on_send(assoc)
        assoc.dimse = WaitingDimse(assoc, IDLE_WAIT, self._spill)
        bound_sending(assoc)
        assoc.acceptor.maximum_length = self.ae.maximum_pdu_size
        assoc.acceptor.ae_title = self.server.ae_title
        assoc.acceptor.address_info = self.local
        assoc.acceptor.implementation_class_uid = self.ae.implementation_class_uid
        assoc.acceptor.implementation_version_name = self.ae.implementation_version_name
        assoc.acceptor.supported_contexts = list(self.server.contexts)
        assoc.requestor.address_info = self.remote
        for event, handlers in self.server._handlers.items():
            if event.is_intervention and handlers:
                assoc.bind(event, *handlers)
            elif isinstance(event, evt.NotificationEvent):
                for handler in handlers:
                    assoc.bind(event, handler[0], handler[1])  # type: ignore[index]
        quiet(assoc)
        return assoc


def _close_all(ends: tuple[socket.socket, ...]) -> None:
    for end in ends:
        end.close()


class _WakingQueue(queue.Queue[Any]):
    """A queue that calls ``wake`` after each put (the DUL's primitives to send)."""

    def __init__(self, wake: Callable[[], None]) -> None:
        super().__init__()
        self._wake_up = wake

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self._wake_up()
