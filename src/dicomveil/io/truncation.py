"""Telling a file cut short from a complete one, where pydicom's reader does not say.

pydicom stops reading without a word where the file ends inside an element's header (fewer
than the 8 or 12 bytes of one are left), and keeps a value the end of the file cut short as
the bytes there are. Either way what was read looks like a shorter, complete object: an
image without its pixel data, a file meta without the dataset. These checks compare what
was read with where the file ends.
"""

from __future__ import annotations

from typing import BinaryIO

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

__all__ = ["check_end", "check_lengths", "check_meta_end"]

_UNDEFINED = 0xFFFFFFFF
_DELIMITERS = {  # the Sequence Delimitation Item (FFFE,E0DD) and its zero length, as stored
    True: b"\xfe\xff\xdd\xe0\x00\x00\x00\x00",
    False: b"\xff\xfe\xe0\xdd\x00\x00\x00\x00",
}


def check_lengths(ds: Dataset, size: int) -> None:
    """Raise EOFError where a raw element's value runs past ``size`` (the file's length)
    or was read shorter than its length field says.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        A dataset as pydicom read it (raw elements), or a file meta.
    size : int
        The file's length in bytes.
    """
    for tag in list(ds.keys()):
        raw = ds.get_item(tag, keep_deferred=True)
        if not isinstance(raw, RawDataElement) or raw.length == _UNDEFINED:
            continue
        if raw.value is None:
            if raw.value_tell + raw.length > size:
                raise EOFError("a value runs past the end of the file")
        elif isinstance(raw.value, bytes) and len(raw.value) < raw.length:
            raise EOFError("a value is cut short by the end of the file")


def check_end(ds: Dataset, fh: BinaryIO, size: int, little: bool, implicit: bool) -> None:
    """Raise EOFError when the file goes on past the last element pydicom read, by less
    than an element header: it ends inside the next element's header.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        What pydicom read up to the end of the file (no pixel data after it).
    fh : BinaryIO
        The file (read from anywhere).
    size : int
        The file's length in bytes.
    little, implicit : bool
        The file's encoding.
    """
    tags = list(ds.keys())
    if not tags:
        return
    last = ds.get_item(max(tags), keep_deferred=True)
    end: int | None = None
    if isinstance(last, RawDataElement):
        if last.length != _UNDEFINED:
            end = last.value_tell + last.length
        elif isinstance(last.value, bytes):  # its value, then the delimiter
            end = last.value_tell + len(last.value) + 8
    elif last.file_tell is not None and not last.is_undefined_length:
        # decoded as it was read: its length field is the bytes before its value
        wide = implicit or last.VR in EXPLICIT_VR_LENGTH_32
        fh.seek(last.file_tell - (4 if wide else 2))
        field = fh.read(4 if wide else 2)
        end = last.file_tell + int.from_bytes(field, "little" if little else "big")
    if end is None:
        # A sequence of undefined length: it ends with its delimiter, where the file does
        # or 1 to 7 bytes (a header cut short) before.
        fh.seek(max(0, size - 16))
        tail, delimiter = fh.read(), _DELIMITERS[little]
        for extra in range(8):
            stop = len(tail) - extra
            if stop >= 8 and tail[stop - 8 : stop] == delimiter:
                end = size - extra
                break
        if end is None:
            return  # not this shape: nothing to tell from here
    if end < size:
        raise EOFError("the file ends inside an element header")


def check_meta_end(meta: Dataset | None, elements: int, size: int) -> None:
    """Raise EOFError where nothing of the dataset was read (``elements`` is 0): the file
    ends inside its file meta (before the end its File Meta Information Group Length
    gives), or after it.

    Parameters
    ----------
    meta : pydicom.dataset.Dataset or None
        The file meta as pydicom read it.
    elements : int
        How many elements of the dataset were read.
    size : int
        The file's length in bytes.
    """
    if elements:
        return
    raw = meta.get_item(0x00020000, keep_deferred=True) if meta is not None else None
    if raw is not None:
        if isinstance(raw, RawDataElement):
            tell: int | None = raw.value_tell
            value = int.from_bytes(raw.value, "little") if isinstance(raw.value, bytes) else None
        else:
            tell, value = raw.file_tell, raw.value
        if tell is not None and isinstance(value, int) and size < tell + 4 + value:
            raise EOFError("the file ends inside its file meta")
    raise EOFError("nothing after the file meta")
