"""A quick scan of a well-formed DICOM file into pydicom's raw elements.

pydicom's reader is general: it handles every encoding, switches between implicit and explicit
VR when a file does, reads past damaged values and warns. Most files need none of that. This
scan reads the bytes before the pixel data in one go and cuts them into the same
:class:`~pydicom.dataelem.RawDataElement` tuples pydicom builds (tag, VR, length, value bytes,
offset, encoding), so the engine, the writer and every other reader of the dataset see what
they would see after ``dcmread(..., stop_before_pixels=True)``. Values are not decoded here:
pydicom decodes each one when something asks for it.

It covers files with the ``DICM`` prefix in little endian, implicit or explicit VR, native or
encapsulated, and no value larger than :data:`DEFER`. Anything else (big endian, deflate, a
missing prefix, an unknown VR, a value that runs past the end, a sequence of undefined length
that is not explicitly a sequence) returns ``None`` and the caller reads the file with
pydicom, which reports or tolerates the problem its own way. A test checks that both readers
give the same elements for every file of pydicom's test data.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from struct import Struct
from typing import BinaryIO, cast

from pydicom.charset import convert_encodings
from pydicom.dataelem import (
    DataElement,
    RawDataElement,
    convert_raw_data_element,
    empty_value_for_VR,
)
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.tag import BaseTag
from pydicom.uid import UID
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR

DEFER = 256 * 1024  # larger values are left to pydicom, which defers them
_FIRST_READ = 16 * 1024  # most headers fit; more is read when needed
_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_VRS = {vr.encode("ascii"): str(vr) for vr in VR if len(vr) == 2}
_LONG_VRS = frozenset(str(vr) for vr in EXPLICIT_VR_LENGTH_32)
_EXPLICIT = Struct("<HH2sH")
_IMPLICIT = Struct("<HHI")
_LENGTH = Struct("<I")
_new_raw = tuple.__new__


_TRANSFER_SYNTAX = BaseTag(0x00020010)


@lru_cache(maxsize=64)
def _syntax(value: bytes) -> tuple[UID, bool] | None:
    """A Transfer Syntax UID's bytes as the scan reads them: the UID and whether it is
    implicit VR; None for one the scan leaves to pydicom (unknown, deflated, big endian)."""
    text = value.decode("latin-1").rstrip("\x00 ")
    if not text:
        return None
    uid = UID(text)
    if not uid.is_transfer_syntax or uid.is_deflated or not uid.is_little_endian:
        return None
    return uid, uid.is_implicit_VR


@lru_cache(maxsize=64)
def _codecs(value: bytes) -> tuple[str, ...]:
    """The Python codecs of a Specific Character Set's bytes, as pydicom reads them (a file
    names one of a few: decoded once, not per file)."""
    raw = RawDataElement(BaseTag(0x00080005), "CS", len(value), value, 0, False, True)
    return tuple(convert_encodings(convert_raw_data_element(raw).value))


# What pydicom's constructors leave in a new dataset's attributes: a scan makes the two
# datasets of a file from a copy of these (the constructors set each attribute through
# Dataset.__setattr__, a Python method: about 70 us of a scan's 250 per file). The state is
# taken from the constructors themselves, so it follows pydicom's version; a value of a type
# it does not expect turns this off (the constructors are called, as before).
_PLAIN = (type(None), bool, int, float, str, bytes, type(open))
_Elements = dict[BaseTag, DataElement | RawDataElement]


@lru_cache(maxsize=4)
def _state(meta: bool, implicit: bool) -> dict[str, object] | None:
    if meta:
        made: Dataset = FileMetaDataset()
        made.set_original_encoding(False, True, "iso8859")  # as pydicom's reader leaves it
    else:
        made = FileDataset("", {}, None, FileMetaDataset(), implicit, True)
        made.set_original_encoding(implicit, True, "iso8859")
    state = {k: v for k, v in vars(made).items() if k not in ("_dict", "file_meta")}
    if not all(isinstance(v, (*_PLAIN, dict, list)) for v in state.values()):
        return None
    return state


def _fill(made: Dataset, state: dict[str, object], elements: _Elements, **values: object) -> None:
    own = vars(made)
    for name, value in state.items():  # a container of its own for each dataset
        own[name] = value.copy() if isinstance(value, (dict, list)) else value
    own["_dict"] = elements
    own.update(values)


def _file_meta(elements: _Elements) -> FileMetaDataset:
    """The file meta of ``elements`` (not copied), as pydicom's reader makes it."""
    state = _state(True, False)
    if state is None:
        meta = FileMetaDataset(elements)
        meta.set_original_encoding(False, True, "iso8859")
        return meta
    meta = object.__new__(FileMetaDataset)
    _fill(meta, state, elements)
    return meta


def _file_dataset(
    elements: _Elements,
    meta: FileMetaDataset,
    implicit: bool,
    encoding: str | list[str],
    preamble: bytes,
    path: str,
) -> FileDataset:
    """The dataset of ``elements`` (not copied), as pydicom's reader makes it (not its
    modification time, which only its deferred values need: the scan defers none)."""
    state = _state(False, implicit)
    if state is None:
        made = FileDataset("", elements, preamble, meta, implicit, True)
        made.set_original_encoding(implicit, True, encoding)
        made.filename, made.fileobj_type = path, open
        return made
    made = object.__new__(FileDataset)
    _fill(made, state, elements, file_meta=meta, preamble=preamble, filename=path,
          fileobj_type=open, _read_charset=encoding)  # fmt: skip
    return made


class _NeedsPydicomError(Exception):
    """The file needs pydicom's own reader."""


@dataclass
class Scanned:
    """A file scanned up to its pixel data.

    Attributes
    ----------
    dataset : FileDataset
        The elements before the pixel data, as pydicom's raw elements, with the file meta.
    head : bytes
        The file's bytes up to the pixel data.
    pixel_start : int
        Where the pixel data element starts; the file size when it has none.
    size : int
        The file size.
    """

    dataset: FileDataset
    head: bytes
    pixel_start: int
    size: int


Keep = Callable[[int, "str | None"], bool]
"""Which top-level elements a scan keeps: (tag, VR as written, None in implicit VR) -> keep."""


def scan(fh: BinaryIO, path: str, keep: Keep | None = None) -> Scanned | None:
    """Scan a well-formed file up to its pixel data.

    Parameters
    ----------
    fh : BinaryIO
        The file, opened for reading at ``path``, positioned anywhere.
    path : str
        Its path, recorded as the dataset's file name.
    keep : callable, optional
        Only the top-level elements it keeps are in the dataset (the Specific Character Set
        always); None: every element. The file is scanned (and checked) whole either way.

    Returns
    -------
    Scanned or None
        The file scanned, or None when pydicom's reader should read it (anything unusual).
    """
    try:
        return _Scanner(fh, keep).run(path)
    except _NeedsPydicomError:
        return None


class _Scanner:
    def __init__(self, fh: BinaryIO, keep: Keep | None = None) -> None:
        self.keep = keep
        self.fh = fh
        self.size = os.fstat(fh.fileno()).st_size
        fh.seek(0)
        self.buf = fh.read(min(self.size, _FIRST_READ))

    def need(self, end: int) -> None:
        """Make sure bytes up to ``end`` are in the buffer."""
        if end <= len(self.buf):
            return
        if end > self.size:
            raise _NeedsPydicomError  # runs past the end of the file: pydicom reports it
        more = max(end - len(self.buf), len(self.buf))
        self.fh.seek(len(self.buf))
        self.buf += self.fh.read(min(more, self.size - len(self.buf)))
        if end > len(self.buf):
            raise _NeedsPydicomError

    def run(self, path: str) -> Scanned:
        self.need(132 + 12)
        if self.buf[128:132] != b"DICM":
            raise _NeedsPydicomError
        meta_elements, position = self.elements(132, implicit=False, group=0x0002)
        meta = _file_meta(meta_elements)
        raw_syntax = meta_elements.get(_TRANSFER_SYNTAX)
        if raw_syntax is None or not isinstance(raw_syntax.value, bytes):
            raise _NeedsPydicomError
        syntax = _syntax(raw_syntax.value)
        if syntax is None:
            raise _NeedsPydicomError
        uid, implicit = syntax
        # as reading it would store it (decoded once per transfer syntax, not per file)
        meta._dict[_TRANSFER_SYNTAX] = DataElement(_TRANSFER_SYNTAX, "UI", uid)
        if position + 6 <= self.size:
            self.need(position + 6)
            vr = self.buf[position + 4 : position + 6]
            looks_explicit = 0x40 < vr[0] < 0x5B and 0x40 < vr[1] < 0x5B
            if looks_explicit == implicit:
                raise _NeedsPydicomError  # encoded otherwise than its transfer syntax says
        elements, end = self.elements(position, implicit=implicit, group=None, keep=self.keep)
        charset = cast("RawDataElement | None", elements.get(BaseTag(0x00080005)))
        encoding: str | list[str] = "iso8859"
        if charset is not None:
            value = charset.value
            encoding = (
                list(_codecs(value))
                if isinstance(value, bytes)
                else convert_encodings(convert_raw_data_element(charset).value)
            )
        result = _file_dataset(elements, meta, implicit, encoding, self.buf[:128], path)
        return Scanned(result, self.buf[:end], end, self.size)

    def elements(
        self, position: int, *, implicit: bool, group: int | None, keep: Keep | None = None
    ) -> tuple[dict[BaseTag, DataElement | RawDataElement], int]:
        """Top-level elements from ``position``: of one group (the file meta), or up to the
        pixel data or the end of the file (those ``keep`` keeps). Returns them and where
        the scan stopped."""
        found: dict[BaseTag, DataElement | RawDataElement] = {}
        size = self.size
        buf = self.buf
        vrs, long_vrs, pixel_tags = _VRS, _LONG_VRS, _PIXEL_TAGS
        unpack_explicit, unpack_implicit = _EXPLICIT.unpack_from, _IMPLICIT.unpack_from
        while position < size:
            if position + 12 > len(buf):
                if position + 8 > size:
                    raise _NeedsPydicomError  # the file ends inside an element header
                self.need(min(position + 12, size))
                buf = self.buf
            if implicit:
                group_number, element, length = unpack_implicit(buf, position)
                vr: str | None = None
                value_tell = position + 8
            else:
                group_number, element, code, length = unpack_explicit(buf, position)
                vr = vrs.get(code)
                if vr is None:
                    raise _NeedsPydicomError
                if vr in long_vrs:
                    if position + 12 > len(buf):
                        raise _NeedsPydicomError
                    (length,) = _LENGTH.unpack_from(buf, position + 8)
                    value_tell = position + 12
                else:
                    value_tell = position + 8
            if group is not None and group_number != group:
                break
            tag = group_number << 16 | element
            if group_number == 0x7FE0 or group_number == 0xFFFE:
                if tag in pixel_tags:
                    break
                if group_number == 0xFFFE:
                    raise _NeedsPydicomError  # an item or delimiter at the top level
            kept = keep is None or tag == 0x00080005 or keep(tag, vr)
            if length == _UNDEFINED:
                if vr != "SQ":
                    raise _NeedsPydicomError
                end = self.undefined_end(value_tell, implicit)
                buf = self.buf
                value: bytes | None = buf[value_tell:end] if kept else None
                next_position = end + 8
            else:
                if length > DEFER and tag != 0x00080005:
                    raise _NeedsPydicomError  # pydicom defers reading it
                next_position = value_tell + length
                if next_position > len(buf):
                    self.need(next_position)
                    buf = self.buf
                value = (
                    (buf[value_tell:next_position] if kept else None)
                    if length
                    else cast("bytes | None", empty_value_for_VR(vr, True))
                )
            if not kept:
                position = next_position
                continue
            key = BaseTag(tag)
            # RawDataElement(key, vr, ...) without the Python-level constructor of NamedTuple
            found[key] = _new_raw(
                RawDataElement, (key, vr, length, value, value_tell, implicit, True, True, False)
            )
            position = next_position
        return found, position

    def undefined_end(self, position: int, implicit: bool) -> int:
        """Where the sequence delimiter of a sequence of undefined length starts."""
        while True:
            self.need(position + 8)
            group_number, element, length = _IMPLICIT.unpack_from(self.buf, position)
            tag = group_number << 16 | element
            position += 8
            if tag == _SEQUENCE_END:
                return position - 8
            if tag != _ITEM:
                raise _NeedsPydicomError
            if length != _UNDEFINED:
                position += length
                continue
            position = self.item_end(position, implicit)

    def item_end(self, position: int, implicit: bool) -> int:
        """Past the item delimiter of an item of undefined length starting at ``position``."""
        while True:
            self.need(position + 8)
            if implicit:
                group_number, element, length = _IMPLICIT.unpack_from(self.buf, position)
                vr: str | None = None
                header = 8
            else:
                group_number, element, code, length = _EXPLICIT.unpack_from(self.buf, position)
                tag = group_number << 16 | element
                if tag in (_ITEM_END, _ITEM, _SEQUENCE_END):
                    (length,) = _LENGTH.unpack_from(self.buf, position + 4)
                    vr, header = None, 8
                else:
                    vr = _VRS.get(code)
                    if vr is None:
                        raise _NeedsPydicomError
                    header = 8
                    if vr in _LONG_VRS:
                        self.need(position + 12)
                        (length,) = _LENGTH.unpack_from(self.buf, position + 8)
                        header = 12
            tag = group_number << 16 | element
            position += header
            if tag == _ITEM_END:
                return position
            if length != _UNDEFINED:
                position += length
                continue
            if vr != "SQ":
                raise _NeedsPydicomError  # implicit VR, or undefined-length values: pydicom decides
            position = self.undefined_end(position, implicit) + 8
