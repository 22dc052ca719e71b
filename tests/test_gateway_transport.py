"""The gateway's event-driven association threads (``dicomveil.gateway.transport``): the
DUL thread waits on the connection and on what is queued to be sent, the reactor waits for
the next DIMSE message, instead of both polling every millisecond."""

from __future__ import annotations

import select
import socket
import threading

from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.pdu_primitives import A_P_ABORT

from dicomveil.gateway.transport import IDLE_WAIT, LimitedSocket, _WaitingDimse


def _acceptor() -> tuple[Association, LimitedSocket, socket.socket]:
    ours, peer = socket.socketpair()
    assoc = Association(AE(), "acceptor")
    sock = LimitedSocket(assoc, client_socket=ours)
    assoc.set_socket(sock)
    sock.wake_on_send(assoc)
    return assoc, sock, peer


def test_ready_wakes_for_data_and_for_something_to_send() -> None:
    assoc, sock, peer = _acceptor()
    try:
        assert sock._wake is not None
        wake = sock._wake[0]
        assert sock.ready is False  # nothing came, nothing to send: after the wait
        peer.sendall(b"\x05\x00")
        assert sock.ready is True
        assert sock.socket is not None
        sock.socket.recv(16)
        # something queued to be sent: the wake-up end is readable, ready answers (False:
        # nothing to read) and empties it
        assoc.dul.to_provider_queue.put(A_P_ABORT())
        assert select.select([wake], [], [], 0)[0] == [wake]
        assert sock.ready is False
        assert select.select([wake], [], [], 0)[0] == []
        assert assoc.dul._run_loop_delay == 0
    finally:
        sock.close()
        peer.close()
    assert all(end.fileno() == -1 for end in sock._wake)  # closed with the connection
    assert sock.ready is False  # and never used again


def test_the_reactor_waits_for_the_next_message() -> None:
    assoc = Association(AE(), "acceptor")
    dimse = _WaitingDimse(assoc)
    assert dimse.get_msg(block=False) == (None, None)  # nothing within the wait
    message = (1, object())
    threading.Timer(IDLE_WAIT / 4, dimse.msg_queue.put, args=(message,)).start()
    assert dimse.get_msg(block=False) == message  # came during the wait: taken at once
