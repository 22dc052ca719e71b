"""The DIMSE provider of the gateway's accepted associations: pynetdicom's, with C-STORE's
request and response command sets read and written without pydicom data sets.

pynetdicom decodes every command set into a pydicom data set and converts it element by
element into a primitive, and builds, validates and encodes a data set twice for each
response: for a stream of C-STORE requests that was more than half of the receiving
process's time per instance (issue 16). Here a C-STORE request whose command set holds only
the elements PS3.7 9.3.1.1 defines, each with one value, and a C-STORE response of plain
values are read and written directly, into and from the same pynetdicom primitives (every
parameter still set through the primitive's validating properties); anything else, and
every message while a handler watches DIMSE messages (``EVT_DIMSE_RECV``/``SENT``, bound
when pynetdicom logs at INFO), goes through pynetdicom unchanged.
"""

from __future__ import annotations

import queue
import shutil
import struct
import tempfile
from io import BytesIO
from pathlib import Path
from typing import IO, Any, Final

from pynetdicom import _config, evt
from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import P_DATA

__all__ = [
    "SpillingDataSet",
    "WaitingDimse",
    "spilled_file",
    "store_request",
    "store_response_command",
    "write_data_set",
]

_ELEMENT: Final = struct.Struct("<HHI")
_US: Final = struct.Struct("<H")
_NO_DATA_SET: Final = 0x0101
# The C-STORE-RQ command elements (PS3.7 9.3.1.1) and the primitive parameter each sets.
_REQUEST_TEXT: Final = {
    0x0002: "AffectedSOPClassUID",
    0x1000: "AffectedSOPInstanceUID",
    0x1030: "MoveOriginatorApplicationEntityTitle",
}
_REQUEST_NUMBER: Final = {
    0x0110: "MessageID",
    0x0700: "Priority",
    0x1031: "MoveOriginatorMessageID",
}


class WaitingDimse(DIMSEServiceProvider):
    """The DIMSE provider of an accepted association (see the module's docstring).

    The association's reactor thread, which asks for the next message without blocking
    after sleeping a millisecond, waits for it instead (at most ``idle_wait``, then the
    reactor checks for a release or an abort as before).

    Parameters
    ----------
    assoc : Association
        The association.
    idle_wait : float
        The longest wait for a message, in seconds.
    """

    def __init__(self, assoc: Association, idle_wait: float, spill: Path | None = None) -> None:
        super().__init__(assoc)
        self.idle_wait = idle_wait
        self.spill = spill  # where a large data set goes as it arrives (SpillingDataSet)
        # A C-STORE request read here whose data set is still arriving: its context, the
        # primitive, the data set so far.
        self._incoming: tuple[int, C_STORE, SpillingDataSet] | None = None

    def get_msg(self, block: bool = False) -> Any:
        """The next message; without ``block``, waiting at most ``idle_wait``.

        Parameters
        ----------
        block : bool
            Wait as long as it takes (pynetdicom's own behaviour).

        Returns
        -------
        tuple
            ``(context ID, primitive)``, or ``(None, None)`` when none came.
        """
        if block:
            return super().get_msg(block)
        try:
            return self.msg_queue.get(timeout=self.idle_wait)
        except queue.Empty:
            return None, None

    def receive_primitive(self, primitive: P_DATA) -> None:
        """Take in one P-DATA primitive from the peer (pynetdicom's ``receive_primitive``).

        Parameters
        ----------
        primitive : P_DATA
            Fragments of one or more DIMSE messages.
        """
        values = primitive.presentation_data_value_list
        first = 0
        if self._incoming is None:
            request = self._request(values[0] if values else None)
            if request is None:
                super().receive_primitive(primitive)
                return
            self._incoming = (values[0][0], request, SpillingDataSet(self.spill))
            first = 1
        context_id, request, data_set = self._incoming
        for index in range(first, len(values)):
            data = values[index][1]
            if not data or data[0] & 1:
                # A command fragment before the data set ended: no DIMSE stream (PS3.7 6.3.1,
                # PS3.8 E.2 say a message's fragments are not interleaved).
                self._incoming = None
                data_set.close()
                self.dul.event_queue.put("Evt19")
                return
            data_set.write(memoryview(data)[1:])
            if data[0] & 2:  # the data set's last fragment
                self._incoming = None
                request.DataSet = data_set
                request._context_id = context_id
                self.msg_queue.put((context_id, request))
                if index + 1 < len(values):  # the next message begins in the same P-DATA
                    rest = P_DATA()
                    rest.presentation_data_value_list.extend(values[index + 1 :])
                    self.receive_primitive(rest)
                return

    def _request(self, value: tuple[int, bytes] | None) -> C_STORE | None:
        """A C-STORE request read from a P-DATA's first fragment, when it holds a whole
        command set we read here (see the module's docstring) and nobody watches."""
        if (
            value is None
            or self.message is not None
            or not value[1]
            or value[1][0] & 3 != 3
            or _config.STORE_RECV_CHUNKED_DATASET
            or self.assoc.get_handlers(evt.EVT_DIMSE_RECV)
        ):
            return None
        return store_request(memoryview(value[1])[1:])

    def send_msg(self, primitive: Any, context_id: int) -> None:
        """Send a DIMSE message; a C-STORE response without its pydicom data set.

        Parameters
        ----------
        primitive : pynetdicom DIMSE primitive
            The message to send.
        context_id : int
            Its presentation context.
        """
        command = None
        if (
            isinstance(primitive, C_STORE)
            and primitive.MessageIDBeingRespondedTo is not None
            and not self.assoc.get_handlers(evt.EVT_DIMSE_SENT)
        ):
            command = store_response_command(primitive)
        # pynetdicom splits a command set longer than the peer's PDU into fragments
        if command is None or (0 < self.maximum_pdu_size < len(command) + 6):
            super().send_msg(primitive, context_id)
            return
        pdata = P_DATA()
        pdata.presentation_data_value_list.append((context_id, b"\x03" + command))
        self.dul.send_pdu(pdata)


IN_MEMORY: Final = 8 << 20  # a data set longer than this is received into a file


class SpillingDataSet(BytesIO):
    """A received data set, in memory up to :data:`IN_MEMORY` bytes; past that, in an
    unnamed owner-only file of ``folder`` (the gateway's spool folder), which goes when it
    is closed: a large instance (a multi-frame CT, a whole-slide image) is never held in
    RAM, only its last fragment. A ``BytesIO`` for pynetdicom's C-STORE primitive; empty
    once it has spilled, when :attr:`file` holds the data set.

    Parameters
    ----------
    folder : Path or None
        Where to spill; None: never (all of it in memory).
    limit : int, optional
        The most bytes held in memory.
    """

    def __init__(self, folder: Path | None, limit: int = IN_MEMORY) -> None:
        super().__init__()
        self.folder = folder
        self.limit = limit
        self.file: IO[bytes] | None = None

    def write(self, data: Any) -> int:
        """Append ``data`` (in memory, or to the file once it has spilled)."""
        if self.file is None:
            size = memoryview(data).nbytes
            if self.folder is None or self.tell() + size <= self.limit:
                return super().write(data)
            self.file = tempfile.TemporaryFile(dir=self.folder)  # noqa: SIM115 (closed by close)
            with self.getbuffer() as held:
                self.file.write(held)
            self.seek(0)
            self.truncate()
        return self.file.write(data)

    def close(self) -> None:
        """Drop the data set (the file too)."""
        if self.file is not None:
            self.file.close()
        super().close()


def spilled_file(received: BytesIO) -> IO[bytes] | None:
    """The unnamed file a received data set spilled into (None: it is all in memory)."""
    return received.file if isinstance(received, SpillingDataSet) else None


def write_data_set(fh: IO[bytes], held: memoryview, received: BytesIO) -> None:
    """Write a received data set to ``fh``: ``held`` (its buffer in memory), then what
    spilled into its file, if anything (the caller closes that file)."""
    fh.write(held)
    spilled = spilled_file(received)
    if spilled is not None:
        spilled.seek(0)
        shutil.copyfileobj(spilled, fh, 1 << 20)


def store_request(command: bytes | memoryview) -> C_STORE | None:
    """The C-STORE request primitive of an encoded command set (implicit VR little endian),
    as pynetdicom's ``message_to_primitive`` makes it, without its data set.

    Parameters
    ----------
    command : bytes or memoryview
        The whole command set.

    Returns
    -------
    C_STORE or None
        The request; None when the command set is not a C-STORE request with a data set
        holding only PS3.7's elements each with one plain value (pynetdicom reads it then).
    """
    data = bytes(command)
    texts: dict[str, str] = {}
    numbers: dict[str, int] = {}
    field = data_set = None
    offset = 0
    while offset < len(data):
        if len(data) - offset < _ELEMENT.size:
            return None
        group, element, length = _ELEMENT.unpack_from(data, offset)
        offset += _ELEMENT.size
        value = data[offset : offset + length]
        offset += length
        if group != 0 or len(value) != length:
            return None
        if element in _REQUEST_TEXT:
            text = value.decode("latin-1")
            text = text.strip() if element == 0x1030 else text.rstrip("\0 ")
            if "\\" in text:
                return None
            texts[_REQUEST_TEXT[element]] = text
        elif element == 0x0000:
            if length != 4:
                return None
        elif length != 2:
            return None
        elif element in _REQUEST_NUMBER:
            numbers[_REQUEST_NUMBER[element]] = _US.unpack(value)[0]
        elif element == 0x0100:
            field = _US.unpack(value)[0]
        elif element == 0x0800:
            data_set = _US.unpack(value)[0]
        else:
            return None
    if field != 0x0001 or data_set is None or data_set == _NO_DATA_SET:
        return None
    request = C_STORE()
    try:
        for name, item in (*texts.items(), *numbers.items()):
            setattr(request, name, item)
    except (ValueError, TypeError):
        return None
    return request


def _uid(value: object) -> bytes | None:
    if not isinstance(value, str) or not value or not value.isascii():
        return None
    data = value.encode("ascii")
    return data + b"\x00" if len(data) % 2 else data


def store_response_command(primitive: C_STORE) -> bytes | None:
    """The command set of a C-STORE response (PS3.7 9.3.1.2), implicit VR little endian,
    as pynetdicom encodes it: the elements whose parameter is set, in tag order, after the
    Command Group Length.

    Parameters
    ----------
    primitive : C_STORE
        A response primitive (Status set).

    Returns
    -------
    bytes or None
        The encoded command set; None when a parameter is not a plain value (an empty or
        non-ASCII UID or comment, an Offending Element): pynetdicom's own encoding then.
    """
    sop_class, sop_instance = (
        _uid(primitive.AffectedSOPClassUID),
        _uid(primitive.AffectedSOPInstanceUID),
    )
    status, responding = primitive.Status, primitive.MessageIDBeingRespondedTo
    comment = primitive.ErrorComment
    if (
        sop_class is None
        or sop_instance is None
        or not isinstance(status, int)
        or not isinstance(responding, int)
        or primitive.OffendingElement is not None
        or (comment is not None and (not isinstance(comment, str) or not comment.isascii()))
    ):
        return None
    elements = [
        _implicit(0x0002, sop_class),
        _implicit(0x0100, _US.pack(0x8001)),
        _implicit(0x0120, _US.pack(responding)),
        _implicit(0x0800, _US.pack(_NO_DATA_SET)),
        _implicit(0x0900, _US.pack(status)),
    ]
    if comment is not None:
        text = comment.encode("ascii")
        elements.append(_implicit(0x0902, text + b" " if len(text) % 2 else text))
    elements.append(_implicit(0x1000, sop_instance))
    body = b"".join(elements)
    return _implicit(0x0000, struct.pack("<I", len(body))) + body


def _implicit(element: int, value: bytes) -> bytes:
    """One command element (group 0000), implicit VR little endian."""
    return _ELEMENT.pack(0x0000, element, len(value)) + value
