"""The gateway's event-driven association threads (``dicomveil.gateway.transport``): the
DUL thread waits on the connection and on what is queued to be sent, the reactor waits for
the next DIMSE message, instead of both polling every millisecond; C-STORE command sets read
and written without pydicom (``dicomveil.gateway.dimse``), as pynetdicom does."""

from __future__ import annotations

import itertools
import queue
import select
import socket
import threading
import time
import tracemalloc
from io import BytesIO
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.dimse_messages import C_ECHO_RQ, C_STORE_RQ, C_STORE_RSP, DIMSEMessage
from pynetdicom.dimse_primitives import C_ECHO, C_STORE
from pynetdicom.dsutils import encode
from pynetdicom.pdu_primitives import A_P_ABORT, P_DATA

from dicomveil.gateway.dimse import (
    SpillingDataSet,
    WaitingDimse,
    store_request,
    store_response_command,
)
from dicomveil.gateway.transport import (
    IDLE_WAIT,
    QUEUED_PDUS,
    ClosingSocket,
    LimitedSocket,
    bound_sending,
)


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


def test_recv_reads_what_was_asked_across_many_sends() -> None:
    # a PDU arriving in pieces is read whole, byte for byte; more than it stays unread
    _, sock, peer = _acceptor()
    payload = bytes(range(256)) * 600  # 153,600 bytes

    def send() -> None:
        for start in range(0, len(payload), 1000):
            peer.sendall(payload[start : start + 1000])

    sender = threading.Thread(target=send)
    try:
        sender.start()
        assert sock.recv(6) == payload[:6]
        assert sock.recv(len(payload) - 16) == payload[6:-10]
        sender.join(10)
        assert sock.recv(10) == payload[-10:]
    finally:
        sock.close()
        peer.close()


def test_recv_gives_what_came_when_the_peer_closes() -> None:
    # as pynetdicom's: fewer bytes than asked (its DUL then reports the closed connection)
    _, sock, peer = _acceptor()
    try:
        peer.sendall(b"\x04\x00\x00\x00")
        peer.close()
        got = sock.recv(100)
        assert got == bytearray(b"\x04\x00\x00\x00") and isinstance(got, bytearray)
        assert sock.recv(8) == bytearray()
    finally:
        sock.close()


def test_recv_does_not_trust_an_announced_length() -> None:
    # a peer we called (no PDU limit) that announces a PDU of 1 GiB and sends 10 bytes costs
    # no more memory than that
    ours, peer = socket.socketpair()
    sock = ClosingSocket(Association(AE(), "requestor"), client_socket=ours)
    try:
        peer.sendall(b"0123456789")
        peer.close()
        tracemalloc.start()
        try:
            got = sock.recv(1 << 30)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert got == bytearray(b"0123456789")
        assert peak < 16 << 20
    finally:
        sock.close()


def test_the_reactor_waits_for_the_next_message() -> None:
    assoc = Association(AE(), "acceptor")
    dimse = WaitingDimse(assoc, IDLE_WAIT)
    assert dimse.get_msg(block=False) == (None, None)  # nothing within the wait
    message = (1, object())
    threading.Timer(IDLE_WAIT / 4, dimse.msg_queue.put, args=(message,)).start()
    assert dimse.get_msg(block=False) == message  # came during the wait: taken at once


# --------------------------------------------------------------------------------------------
# C-STORE command sets read and written without pydicom data sets (dicomveil.gateway.dimse):
# always what pynetdicom's own encoding and decoding give.

_CLASSES = ["1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4.1"]
_INSTANCES = ["1.2.3.4.5", "1.2.826.0.1.3680043.8.498.12345678901234567890"]


def _response(
    sop_class: str, instance: str, status: int, comment: str | None, message_id: int
) -> C_STORE:
    rsp: Any = C_STORE()
    rsp.MessageID = rsp.MessageIDBeingRespondedTo = message_id
    rsp.AffectedSOPClassUID, rsp.AffectedSOPInstanceUID = sop_class, instance
    rsp.Status = status
    if comment is not None:
        rsp.ErrorComment = comment
    return cast(C_STORE, rsp)


def test_store_responses_are_encoded_as_pynetdicom_encodes_them() -> None:
    checked = 0
    for sop_class, instance, status, comment, message_id in itertools.product(
        _CLASSES,
        _INSTANCES,
        [0x0000, 0xB006, 0xC000, 0xA700],
        [None, "", "a", "x" * 64],
        [1, 65535],
    ):
        rsp = _response(sop_class, instance, status, comment, message_id)
        message = C_STORE_RSP()
        message.primitive_to_message(rsp)
        assert store_response_command(rsp) == _encoded(message)
        checked += 1
    assert checked == 128
    # what is not a plain value is left to pynetdicom
    offending: Any = _response(_CLASSES[0], _INSTANCES[0], 0xC000, None, 1)
    offending.OffendingElement = [0x00100010]
    assert store_response_command(offending) is None
    assert store_response_command(_response(_CLASSES[0], _INSTANCES[0], 0, "café", 1)) is None


def _request(
    message_id: int, priority: int, mover: str | None, mover_id: int | None
) -> tuple[C_STORE, bytes]:
    rq = C_STORE()
    rq.MessageID, rq.Priority = message_id, priority
    rq.AffectedSOPClassUID, rq.AffectedSOPInstanceUID = _CLASSES[1], _INSTANCES[1]
    if mover is not None:
        rq.MoveOriginatorApplicationEntityTitle = mover
    if mover_id is not None:
        rq.MoveOriginatorMessageID = mover_id
    rq.DataSet = BytesIO(b"\x08\x00\x16\x00")
    message = C_STORE_RQ()
    message.primitive_to_message(rq)
    return rq, _encoded(message)


def _encoded(message: DIMSEMessage) -> bytes:
    command = encode(message.command_set, True, True)
    assert command is not None
    return command


_PARAMETERS = (
    "MessageID",
    "MessageIDBeingRespondedTo",
    "AffectedSOPClassUID",
    "AffectedSOPInstanceUID",
    "Priority",
    "MoveOriginatorApplicationEntityTitle",
    "MoveOriginatorMessageID",
)


def _pynetdicom_reads(command: bytes) -> C_STORE:
    pdata = P_DATA()
    pdata.presentation_data_value_list.append((1, b"\x03" + command))
    message = DIMSEMessage()
    message.decode_msg(pdata)
    primitive = message.message_to_primitive()
    assert isinstance(primitive, C_STORE)
    return primitive


def test_store_requests_are_read_as_pynetdicom_reads_them() -> None:
    for message_id, priority, mover, mover_id in itertools.product(
        [1, 65535], [0, 1, 2], [None, "MOVER", " A B "], [None, 7]
    ):
        _, command = _request(message_id, priority, mover, mover_id)
        ours, theirs = store_request(command), _pynetdicom_reads(command)
        assert ours is not None
        for name in _PARAMETERS:
            assert getattr(ours, name) == getattr(theirs, name), name
            assert type(getattr(ours, name)) is type(getattr(theirs, name)), name
    # other messages, elements PS3.7 does not define, two values, a truncated set: pynetdicom
    echo = C_ECHO_RQ()
    echo_rq = C_ECHO()
    echo_rq.MessageID = 1
    echo.primitive_to_message(echo_rq)
    assert store_request(_encoded(echo)) is None
    _, command = _request(1, 0, None, None)
    assert store_request(command + b"\x00\x00\x02\x09\x02\x00\x00\x00\x01\x00") is None
    two = command.replace(_CLASSES[1].encode(), _CLASSES[1].encode().replace(b".1.4.1", b".1.4\\1"))
    assert two != command and store_request(two) is None
    assert store_request(command[:-3]) is None


def _dimse() -> WaitingDimse:
    """A provider of an association without pynetdicom's logging handlers (as the gateway's
    associations are when pynetdicom's logger is below INFO)."""
    assoc = Association(AE(), "acceptor")
    for event in (evt.EVT_DIMSE_RECV, evt.EVT_DIMSE_SENT):
        handlers: Any = assoc.get_handlers(event)
        for handler, _ in list(handlers):
            assoc.unbind(event, handler)
    return WaitingDimse(assoc, IDLE_WAIT)


def _pdata(*values: bytes) -> P_DATA:
    pdata = P_DATA()
    pdata.presentation_data_value_list.extend((3, value) for value in values)
    return pdata


def test_a_store_request_arriving_in_fragments_is_queued_whole() -> None:
    dimse = _dimse()
    _, command = _request(9, 0, None, None)
    _, second = _request(10, 0, None, None)
    # the command and the data set's first fragment; then the last one and the next message
    dimse.receive_primitive(_pdata(b"\x03" + command, b"\x00abc"))
    assert dimse.msg_queue.empty()
    dimse.receive_primitive(_pdata(b"\x00def", b"\x02gh", b"\x03" + second))
    dimse.receive_primitive(_pdata(b"\x02second"))
    queued: list[Any] = [dimse.msg_queue.get_nowait() for _ in range(2)]
    assert [(cx, rq.MessageID) for cx, rq in queued] == [(3, 9), (3, 10)]
    assert [rq.DataSet.getvalue() for _, rq in queued] == [b"abcdefgh", b"second"]
    assert all(rq._context_id == 3 for _, rq in queued)
    # a command fragment before the data set ended: not a DIMSE stream, the association ends
    dimse.receive_primitive(_pdata(b"\x03" + command, b"\x00abc"))
    dimse.receive_primitive(_pdata(b"\x03" + command))
    assert dimse.dul.event_queue.get_nowait() == "Evt19"
    assert dimse.msg_queue.empty()


def test_watched_messages_go_through_pynetdicom() -> None:
    dimse = _dimse()
    seen: list[object] = []
    dimse.assoc.bind(evt.EVT_DIMSE_RECV, lambda event: seen.append(event.message))
    _, command = _request(5, 0, None, None)
    dimse.receive_primitive(_pdata(b"\x03" + command, b"\x02abcd"))
    _, request = dimse.msg_queue.get_nowait()
    assert isinstance(request, C_STORE) and isinstance(request.DataSet, BytesIO)
    assert request.MessageID == 5 and request.DataSet.getvalue() == b"abcd"
    assert len(seen) == 1  # pynetdicom decoded it and told the handler


def test_a_data_set_spills_into_an_unnamed_file_past_its_limit(tmp_path: Path) -> None:
    """In memory up to the limit; past it, all of it in an unnamed file of the folder (no
    name appears there), in order; without a folder, never; closing drops the file."""
    kept = SpillingDataSet(tmp_path, limit=10)
    kept.write(b"0123456789")
    assert kept.file is None and kept.getvalue() == b"0123456789"
    kept.write(memoryview(b"abcdef"))
    assert kept.file is not None and kept.getvalue() == b""  # spilled: memory emptied
    kept.write(b"XYZ")
    kept.file.seek(0)
    assert kept.file.read() == b"0123456789abcdefXYZ"
    assert list(tmp_path.iterdir()) == []  # unnamed: nothing to read or to clean up
    spilled = kept.file
    kept.close()
    assert spilled.closed
    never = SpillingDataSet(None, limit=4)
    never.write(b"0123456789")
    assert never.file is None and never.getvalue() == b"0123456789"


class _SlowDul(threading.Thread):
    """A DUL thread that sends (here: takes) one queued PDU a millisecond, as to a peer
    slower than the thread queueing them, noting the longest queue it saw."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.to_provider_queue: queue.Queue[Any] = queue.Queue()
        self._kill_thread = False
        self.longest = 0
        self.sent: list[Any] = []

    def send_pdu(self, primitive: Any) -> None:
        self.to_provider_queue.put(primitive)

    def run(self) -> None:
        while not self._kill_thread:
            self.longest = max(self.longest, self.to_provider_queue.qsize())
            try:
                self.sent.append(self.to_provider_queue.get(timeout=0.01))
            except queue.Empty:
                continue
            time.sleep(0.001)


def test_a_sender_waits_while_its_association_has_many_pdus_queued() -> None:
    """pynetdicom queues every fragment of a message at once: a 1 GB instance sent to a
    slower peer was held whole (bound_sending). The thread that queues waits while more
    than QUEUED_PDUS are queued; the DUL thread itself never waits, nor anyone once it has
    stopped."""
    dul = _SlowDul()
    assoc: Any = SimpleNamespace(dul=dul)
    bound_sending(assoc)
    dul.start()
    for n in range(200):
        dul.send_pdu(n)
    deadline = time.monotonic() + 10
    while len(dul.sent) < 200 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert dul.sent == list(range(200))
    assert dul.longest <= QUEUED_PDUS + 1, dul.longest
    dul._kill_thread = True
    dul.join()
    started = time.monotonic()
    for n in range(QUEUED_PDUS * 3):  # nobody takes them: no wait once the DUL stopped
        dul.send_pdu(n)
    assert time.monotonic() - started < 1

    unbounded = _SlowDul()
    for n in range(200):  # pynetdicom's own: nothing holds the sender back
        unbounded.send_pdu(n)
    assert unbounded.to_provider_queue.qsize() == 200
