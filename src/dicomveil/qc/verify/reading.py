"""Reading a file for the checks: verify's own parser for well-formed files, pydicom's reader
for the rest.

Verify reads every output whole and every input's header, and walks every element at every
depth. pydicom's reader is general (it switches encodings mid-file, reads past damage, defers,
converts sequences into datasets on access) and most of verify's time went there. Most files
need none of that, so verify parses them itself, into :class:`~.elements._Data` trees of
pydicom's own :class:`~pydicom.dataelem.RawDataElement` tuples: the same tag, VR, length and
value bytes pydicom reads, the offset of each value counted from the start of the file, and
the items of every sequence (pydicom would parse them into datasets when asked).

The parser is strict: little endian, implicit or explicit VR as the transfer syntax says, with
the ``DICM`` prefix, every length consistent with its container, every VR known, items and
delimiters where they belong. Anything else (big endian, deflate, no prefix, a VR switch, a
value running past its container, a sequence encoded as UN, stray bytes at the end) makes it
decline, and pydicom reads the file as before, with the same outcome as before: whatever
pydicom tolerates, reports or refuses is still handled its way. It is also written here, not
borrowed from the engine's scanner, so that verify stays independent of what it checks.
``tests/test_verify.py`` checks, for every file of pydicom's test data and damaged copies of
a real file, that the parser declines or walks to exactly the elements pydicom gives.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from struct import Struct
from typing import BinaryIO, Final, TypeVar, cast

from pydicom import dcmread
from pydicom.dataelem import RawDataElement, empty_value_for_VR
from pydicom.dataset import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    PrivateTransferSyntaxes,
)
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR

from dicomveil.qc.verify.elements import _CHARSET, _PIXEL_TAGS, _Data, _dictionary_vr

_UNDEFINED: Final = 0xFFFFFFFF
_ITEM: Final = 0xFFFEE000
_ITEM_END: Final = 0xFFFEE00D
_SEQUENCE_END: Final = 0xFFFEE0DD
_ITEM_BYTES: Final = b"\xfe\xff\x00\xe0"
_SEQUENCE_END_BYTES: Final = b"\xfe\xff\xdd\xe0"
_EXPLICIT: Final = Struct("<HH2sH")
_IMPLICIT: Final = Struct("<HHI")
_LENGTH: Final = Struct("<I")
_VRS: Final = {str(vr).encode("ascii"): str(vr) for vr in VR if len(vr) == 2}
_LONG_VRS: Final = frozenset(str(vr) for vr in EXPLICIT_VR_LENGTH_32)
# What pydicom's reader gives an empty value (RawDataElement.value), by VR.
_EMPTY: Final[dict[str | None, bytes | None]] = {
    vr: cast("bytes | None", empty_value_for_VR(vr, True)) for vr in (*_VRS.values(), None)
}
# pydicom converts the first file meta element and the group length while reading: a value
# of the wrong size there makes it refuse the file.
_SIZES: Final = {"AT": 4, "FD": 8, "FL": 4, "SL": 4, "SS": 2, "SV": 8, "UL": 4, "US": 2, "UV": 8}
# Read first: a header, unless it is long (a Siemens CSA header: 10-40 KB); then three
# times as much again (:func:`_more`), so that a long header is parsed again at most a few
# times (its whole length doubling from 16 KiB, a 36 KB MR header was parsed three times).
_HEAD: Final = 64 * 1024
# A value that may be left unread (pixel data): what pydicom would not decode as text.
_UNREAD_VRS: Final = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", None})
_new_raw = tuple.__new__
# Public elements left out of a reading, by (tag, VR as read: None in implicit VR).
_Skip = Mapping[tuple[int, str | None], bool]


class _DeclineError(Exception):
    """Not for this parser: pydicom reads the file."""


class _ShortError(Exception):
    """The buffer holds the start of the file only, and the header goes on past it."""


@dataclass(frozen=True, slots=True)
class _Read:
    """A file as the checks see it: the file meta and the dataset."""

    meta: _Data
    data: _Data
    dataset: Dataset | None = None  # pydicom's reading, when it read the file


@dataclass(frozen=True, slots=True)
class _Image:
    """An output file's bytes: all of them (``head``), or all but the pixel data's value
    (``hole``, offsets from the start of the file), which the leak search skips anyway:
    ``head`` up to it and ``tail`` after it."""

    head: bytes
    hole: tuple[int, int] | None
    tail: bytes
    size: int


@dataclass(frozen=True, slots=True)
class _Loaded:
    """An output file as read: its bytes, and its reading or why it has none."""

    image: _Image
    read: _Read | None
    error: Exception | None = None


def _parse(
    buf: bytes,
    *,
    complete: bool = True,
    stop_before_pixels: bool = False,
    skip: _Skip | None = None,
) -> _Read | None:
    """The file in ``buf`` read by verify's parser, or ``None`` when pydicom should read it.
    With ``complete`` false ``buf`` is the start of a file: raises :class:`_ShortError` when
    what it needs goes on past it. ``skip[(tag, VR)]`` leaves public elements out (not the
    Specific Character Set): what the input walk would pass over (the VR as read, None in
    implicit VR: see :meth:`~.expectations._Rules.unwanted`); the datasets read are marked
    ``filtered`` so that it need not look again."""
    try:
        return _Parser(buf, complete, stop_before_pixels, skip=skip).run()
    except _DeclineError:
        return None


_T = TypeVar("_T")


def _read_while_short(fh: BinaryIO, parse: Callable[[bytes, bool], _T]) -> tuple[_T, bytes]:
    """``parse(head, complete)`` of a file's first bytes, and those bytes: 64 KiB first,
    then three times as much again (:func:`_more`) each time ``parse`` raises
    :class:`_ShortError` (what it needs goes on past them), until it does not or the file
    ends (``complete``). A long header (a
    Siemens CSA header, an enhanced object's functional groups) costs a few more reads;
    the pixel data after it is never read whole for it (a 157 MB file with a 40 KB header
    was read whole before: 378 MB peak RSS under ``run --verify``).

    Parameters
    ----------
    fh : BinaryIO
        The file, at its start.
    parse : callable
        Reads a header from the bytes given; ``complete`` says that they are the whole file.

    Returns
    -------
    tuple
        What ``parse`` returned, and the bytes read.
    """
    head = fh.read(_HEAD)
    complete = len(head) < _HEAD
    while True:
        try:
            return parse(head, complete), head
        except _ShortError:
            if complete:
                raise
            wanted = _more(head)
            more = fh.read(wanted)
            complete = len(more) < wanted
            head += more


def _more(head: bytes) -> int:
    """How much to read after ``head`` when a header goes on past it: three times as much
    again (its length grows fourfold: a header of n bytes is parsed about log4(n / 64 KiB)
    times more, never read much past its end)."""
    return 3 * len(head)


def _load_output(path: Path) -> _Loaded:
    """An output file, read for the checks; raises OSError when it cannot be read.

    A large file is read in two parts: its header, and what follows the pixel data's value.
    Reading a whole file costs far more than parsing its header (a fresh buffer the size of
    the pixels is faulted in page by page, and slicing the value out copies it again), and
    no check reads pixel values: they are not searched, and their length is all the value
    checks need (see :func:`~.elements._unread`). Anything else is read whole: by verify's
    parser if it can, else by pydicom."""
    with path.open("rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        data = fh.read(_HEAD)
        if len(data) < size:
            split = _split(fh, data, size)
            if split is not None:
                return split
            fh.seek(len(data))
            data += fh.read()
    image = _Image(data, None, b"", len(data))
    parsed = _parse(data)
    if parsed is not None:
        return _Loaded(image, parsed)
    try:
        ds = dcmread(io.BytesIO(data))
        ds.keys()
    except Exception as exc:  # pydicom raises many kinds
        return _Loaded(image, None, exc)
    meta = getattr(ds, "file_meta", None)
    read = _Read(_Data.of(meta if isinstance(meta, Dataset) else Dataset()), _Data.of(ds), ds)
    return _Loaded(image, read)


def _split(fh: BinaryIO, head: bytes, size: int) -> _Loaded | None:
    """A file whose pixel data's value goes on past ``head``, read but for that value; None
    when it is not one (the caller reads it whole)."""
    while True:  # the header, read further while it goes on (as :func:`_read_while_short`)
        parser = _Parser(head, len(head) >= size, True)
        try:
            first = parser.run()
            if parser.pixels is None:
                return None
            tag, vr, length, value_at = parser.header(parser.pixels)
            break
        except _DeclineError:
            return None
        except _ShortError:
            if len(head) >= size:
                return None
            fh.seek(len(head))
            head += fh.read(_more(head))
    end = value_at + length
    if length == _UNDEFINED or end <= len(head) or end > size or vr not in _UNREAD_VRS:
        return None
    fh.seek(end)
    tail = fh.read()
    rest = _Parser(tail, True, True, base=end, implicit=parser.implicit)
    try:
        after, _end, stopped = rest.dataset(0, len(tail), top=True)
    except _DeclineError:
        return None
    if stopped or tag in first.data or any(t in first.data for t in after.elements):
        return None  # another pixel data element, or a tag twice: pydicom decides
    # The value is not read: None, as pydicom leaves a value it defers.
    pixels = _new_raw(
        RawDataElement, (tag, vr, length, None, value_at, parser.implicit, True, True, False)
    )
    data = _Data.joined(first.data, _Data({tag: pixels}, {}), after)
    return _Loaded(_Image(head, (value_at, end), tail, size), _Read(first.meta, data))


def _read_header(path: Path | None, data: bytes | None, skip: _Skip | None = None) -> _Read:
    """An input's header (up to its pixel data): from ``path``, or from the bytes of a zip
    member; raises what pydicom raises on what it cannot read. ``skip``: see :func:`_parse`
    (pydicom's reading has everything)."""
    if path is not None:
        with path.open("rb") as fh:

            def parse(head: bytes, complete: bool) -> _Read | None:
                return _parse(head, complete=complete, stop_before_pixels=True, skip=skip)

            parsed, head = _read_while_short(fh, parse)
            if parsed is not None:
                return parsed
            fh.seek(0)
            return _pydicom_header(fh, head[128:132] == b"DICM")
    assert data is not None
    parsed = _parse(data, stop_before_pixels=True, skip=skip)
    if parsed is not None:
        return parsed
    return _pydicom_header(io.BytesIO(data), data[128:132] == b"DICM")


def _pydicom_header(fh: BinaryIO, prefix: bool) -> _Read:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dcmread(fh, stop_before_pixels=True, force=not prefix)
    meta = getattr(ds, "file_meta", None)
    return _Read(_Data.of(meta if isinstance(meta, Dataset) else Dataset()), _Data.of(ds), ds)


class _Parser:
    def __init__(
        self,
        buf: bytes,
        complete: bool,
        stop_before_pixels: bool,
        *,
        base: int = 0,
        implicit: bool = False,
        skip: _Skip | None = None,
    ) -> None:
        self.buf = buf
        self.complete = complete
        self.stop = stop_before_pixels
        self.base = base  # the offset of buf in the file
        self.implicit = implicit
        self.skip = skip  # public elements (tag, VR as read) left out of the reading
        self.pixels: int | None = None  # where the top level stopped at pixel data

    def need(self, end: int, limit: int) -> None:
        """Bytes up to ``end`` must be there, within the container ending at ``limit``."""
        if end > limit:
            if limit >= len(self.buf) and not self.complete:
                raise _ShortError
            raise _DeclineError

    def run(self) -> _Read:
        meta, position = self.start()
        return _Read(meta, self.top(position))

    def top(self, position: int, *, lazy: bool = False) -> _Data:
        """The top-level dataset from ``position`` (where it stopped at the pixel data goes in
        ``pixels``); ``lazy``: see :meth:`dataset`."""
        data, end, stopped = self.dataset(position, len(self.buf), top=True, lazy=lazy)
        if stopped:
            self.pixels = end
        elif not self.complete:
            raise _ShortError
        return data

    def start(self) -> tuple[_Data, int]:
        """The prefix, the file meta and the transfer syntax checked: the file meta, and
        where the dataset starts."""
        buf = self.buf
        self.need(132 + 8, len(buf))
        if buf[128:132] != b"DICM":
            raise _DeclineError
        meta, position = self.meta(132)
        syntax = meta.elements.get(0x00020010)
        if syntax is None or not isinstance(syntax.value, bytes):
            raise _DeclineError
        uid = syntax.value.decode("latin-1").rstrip("\0 ")
        if "\\" in uid or uid in (DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian):
            raise _DeclineError
        if uid in PrivateTransferSyntaxes:
            raise _DeclineError
        self.implicit = uid == ImplicitVRLittleEndian  # pydicom: anything else is explicit
        self.need(position + 8, len(buf))
        if buf[position : position + 2] == b"\0\0":
            raise _DeclineError  # a command set: pydicom reads it in implicit VR
        vr = buf[position + 4 : position + 6]
        if (0x40 < vr[0] < 0x5B and 0x40 < vr[1] < 0x5B) == self.implicit:
            raise _DeclineError  # encoded otherwise than its transfer syntax says
        return meta, position

    def header(self, position: int) -> tuple[int, str | None, int, int]:
        """(tag, VR, length, where the value starts) of the element at ``position``."""
        buf = self.buf
        self.need(position + 12, len(buf))
        if self.implicit:
            group, number, length = _IMPLICIT.unpack_from(buf, position)
            return group << 16 | number, None, length, position + 8
        group, number, code, length = _EXPLICIT.unpack_from(buf, position)
        vr = _VRS.get(code)
        if vr is None:
            raise _DeclineError
        if vr in _LONG_VRS:
            (length,) = _LENGTH.unpack_from(buf, position + 8)
            return group << 16 | number, vr, length, position + 12
        return group << 16 | number, vr, length, position + 8

    def meta(self, position: int) -> tuple[_Data, int]:
        """The file meta group (explicit VR little endian), and where the dataset starts."""
        buf = self.buf
        size = len(buf)
        elements: dict[int, RawDataElement] = {}
        first = True
        while True:
            self.need(position + 8, size)
            group, number, code, length = _EXPLICIT.unpack_from(buf, position)
            if group != 0x0002:
                break
            vr = _VRS.get(code)
            if vr is None or vr == "SQ":
                raise _DeclineError
            if vr in _LONG_VRS:
                self.need(position + 12, size)
                (length,) = _LENGTH.unpack_from(buf, position + 8)
                value_at = position + 12
            else:
                value_at = position + 8
            if length == _UNDEFINED:
                raise _DeclineError
            tag = 0x00020000 | number
            if (first or tag == 0x00020000) and vr in _SIZES and length % _SIZES[vr]:
                raise _DeclineError
            first = False
            end = value_at + length
            self.need(end, size)
            if tag in elements:
                raise _DeclineError
            value = buf[value_at:end] if length else _EMPTY[vr]
            elements[tag] = _new_raw(
                RawDataElement, (tag, vr, length, value, value_at, False, True, True, False)
            )
            position = end
        if not elements:
            raise _DeclineError
        return _Data(elements, {}), position

    def dataset(
        self,
        position: int,
        limit: int,
        *,
        top: bool = False,
        undefined: bool = False,
        lazy: bool = False,
    ) -> tuple[_Data, int, bool]:
        """A dataset from ``position``: the top level (to ``limit``, the end of the buffer),
        an item of defined length (to ``limit``, its end) or of undefined length (to its
        delimiter). Returns it, where it ends, and whether it stopped at the pixel data.

        With ``lazy``, the items of a sequence of defined length are left unread (its value
        is all there is of it): the input walk (:class:`~.inputs._InputWalk`) parses them
        only when it has not seen their bytes before.

        This loop runs for every element of every file: locals, no call but the unpacking
        on the common path. Tags are plain ints, in the dict and in the tuples (pydicom's
        BaseTag compares in Python); :class:`~.elements._Data` gives pydicom a BaseTag where
        it converts a value."""
        buf = self.buf
        implicit = self.implicit
        elements: dict[int, RawDataElement] = {}
        sequences: dict[int, list[_Data]] = {}
        unpack_explicit, unpack_implicit, unpack_length = (
            _EXPLICIT.unpack_from,
            _IMPLICIT.unpack_from,
            _LENGTH.unpack_from,
        )
        vrs, long_vrs, empty, new_raw, raw_type = _VRS, _LONG_VRS, _EMPTY, _new_raw, RawDataElement
        undefined_length = _UNDEFINED
        stop = top and self.stop
        base = self.base
        skip = self.skip
        filtered = skip is not None
        last = -1
        while position < limit or undefined:
            value_at = position + 8
            if value_at > limit:
                self.need(value_at, limit)
            if implicit:
                group, number, length = unpack_implicit(buf, position)
                vr: str | None = None
            else:
                group, number, code, length = unpack_explicit(buf, position)
                vr = vrs.get(code)
                if vr is None:
                    if group != 0xFFFE:
                        raise _DeclineError
                    (length,) = unpack_length(buf, position + 4)
                elif vr in long_vrs:
                    if value_at + 4 > limit:
                        self.need(value_at + 4, limit)
                    (length,) = unpack_length(buf, value_at)
                    value_at += 4
            tag = group << 16 | number
            if tag <= last:
                raise _DeclineError  # out of order, or twice: pydicom keeps what it finds
            last = tag
            if group >= 0x7FE0:
                if group == 0xFFFE:
                    if number == 0xE00D and undefined and not length and vr is None:
                        return _Data(elements, sequences, filtered=filtered), value_at, False
                    raise _DeclineError
                if stop and tag in _PIXEL_TAGS:
                    return _Data(elements, sequences, filtered=filtered), position, True
            if length == undefined_length:
                vr, items, value_end, position = self.undefined(tag, vr, value_at, limit)
                value: bytes | None = buf[value_at:value_end]
                if vr == "SQ":
                    sequences[tag] = items
            else:
                position = value_at + length
                if position > limit:
                    self.need(position, limit)
                if skip is not None and not group & 1 and tag != _CHARSET and skip[(tag, vr)]:
                    continue
                value = buf[value_at:position] if length else empty[vr]
                if vr == "SQ" or (
                    (vr is None or vr == "UN") and not group & 1 and _dictionary_vr(tag) == "SQ"
                ):
                    if vr == "UN":
                        raise _DeclineError  # pydicom reads such a sequence its own way
                    if not lazy:
                        sequences[tag] = self.items(value_at, position)
            elements[tag] = new_raw(
                raw_type, (tag, vr, length, value, base + value_at, implicit, True, True, False)
            )
        if undefined:
            raise _DeclineError
        return _Data(elements, sequences, filtered=filtered), position, False

    def undefined(
        self, tag: int, vr: str | None, position: int, limit: int
    ) -> tuple[str, list[_Data], int, int]:
        """An element of undefined length from its value at ``position``: its VR, its items
        (none unless a sequence), where its value ends, and where the next element starts."""
        if vr is None:  # implicit VR: what pydicom decides
            if not tag >> 16 & 1 and _dictionary_vr(tag):
                vr = _dictionary_vr(tag)
            else:
                self.need(position + 4, limit)
                if self.buf[position : position + 4] != _ITEM_BYTES:
                    raise _DeclineError
                vr = "SQ"
        if vr == "SQ":
            items, end = self.undefined_items(position, limit)
            return vr, items, end, end + 8
        if vr == "UN":
            raise _DeclineError  # pydicom reads it as a sequence, in its own way
        end = self.fragments(position, limit)
        return vr, [], end, end + 8

    def items(self, position: int, end: int) -> list[_Data]:
        """The items of a sequence of defined length (its value from ``position`` to
        ``end``)."""
        found: list[_Data] = []
        buf = self.buf
        while position < end:
            self.need(position + 8, end)
            group, number, length = _IMPLICIT.unpack_from(buf, position)
            if group << 16 | number != _ITEM:
                raise _DeclineError
            item, position = self.item(position + 8, length, end)
            found.append(item)
        return found

    def item(self, position: int, length: int, limit: int) -> tuple[_Data, int]:
        """One item whose content starts at ``position`` (of ``length``, or undefined),
        inside a container ending at ``limit``; and where the next item starts."""
        if length == _UNDEFINED:
            item, position, _stopped = self.dataset(position, limit, undefined=True)
            return item, position
        self.need(position + length, limit)
        item, stop, _stopped = self.dataset(position, position + length)
        if stop != position + length:
            raise _DeclineError
        return item, stop

    def undefined_items(self, position: int, limit: int) -> tuple[list[_Data], int]:
        """The items of a sequence of undefined length, and where its delimiter starts."""
        found: list[_Data] = []
        buf = self.buf
        while True:
            self.need(position + 8, limit)
            group, number, length = _IMPLICIT.unpack_from(buf, position)
            tag = group << 16 | number
            if tag == _SEQUENCE_END and not length:
                return found, position
            if tag != _ITEM:
                raise _DeclineError
            item, position = self.item(position + 8, length, limit)
            found.append(item)

    def fragments(self, position: int, limit: int) -> int:
        """Where the delimiter of a value of undefined length (encapsulated pixel data: items
        of bytes) starts, read as pydicom reads it first."""
        buf = self.buf
        while True:
            self.need(position + 8, limit)
            marker = buf[position : position + 4]
            if marker == _SEQUENCE_END_BYTES:
                if buf[position + 4 : position + 8] != b"\0\0\0\0":
                    raise _DeclineError
                return position
            if marker != _ITEM_BYTES:
                raise _DeclineError  # pydicom would search for the delimiter bytes
            (length,) = _LENGTH.unpack_from(buf, position + 4)
            if length == _UNDEFINED:
                raise _DeclineError
            position += 8 + length
