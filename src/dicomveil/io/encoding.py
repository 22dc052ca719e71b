"""Elements to bytes for the writer: quickly, and exactly as pydicom encodes them.

The writer (:mod:`dicomveil.io`) copies the elements the engine left untouched as bytes from
the input. The rest (values the engine replaced, emptied, shifted or mapped, and sequences
with such items) are encoded here. The common cases are encoded directly:

* pydicom's raw elements (read from the file, never decoded): their header and value bytes;
* ASCII strings of the string VRs, number strings and person names;
* empty values;
* sequences of such items, with the lengths pydicom writes.

Anything else (binary numbers, non-ASCII text in another character set, undefined-length
values, values too long for a 2-byte length) goes to pydicom's own ``write_data_element``.
So the bytes are pydicom's in every case; a test compares both on every element of real
files.
"""

from __future__ import annotations

from collections.abc import Callable, MutableSequence
from struct import Struct
from typing import Any

from pydicom.charset import convert_encodings
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element, write_dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

Encodings = str | MutableSequence[str] | None

_UNDEFINED = 0xFFFFFFFF
LONG_VRS = frozenset(str(vr) for vr in EXPLICIT_VR_LENGTH_32)  # with a 4-byte length
# VRs pydicom writes with write_string (and DA/DT/TM: the same for string values).
_STRING_VRS = {
    "AE": " ",
    "AS": " ",
    "CS": " ",
    "DA": " ",
    "DT": " ",
    "TM": " ",
    "UR": " ",
    "UI": "\0",
}
_TEXT_VRS = frozenset({"SH", "LO", "ST", "LT", "UT", "UC"})
_NUMBER_STRING_VRS = frozenset({"IS", "DS"})
# Character sets whose encoding of an ASCII string is that string's ASCII bytes.
_ASCII_CHARSETS = frozenset(
    ["", "ISO_IR 6", "ISO_IR 192", "ISO 2022 IR 6", "ISO 2022 IR 100"]
    + [f"ISO_IR {n}" for n in (100, 101, 109, 110, 126, 127, 138, 144, 148, 203)]
)


def ascii_charset(encodings: Encodings) -> bool:
    """Tell whether every text of ASCII characters encodes as its ASCII bytes.

    Parameters
    ----------
    encodings : str or MutableSequence[str] or None
        A Specific Character Set value (None: the default repertoire).

    Returns
    -------
    bool
        True when ASCII text is written as it is in these character sets.
    """
    if encodings is None or isinstance(encodings, str):
        return (encodings or "") in _ASCII_CHARSETS
    return all(isinstance(e, str) and e in _ASCII_CHARSETS for e in encodings)


class Encoder:
    """Encodes elements and datasets in one transfer syntax's encoding, into a bytearray.

    Parameters
    ----------
    implicit : bool
        Implicit VR.
    little : bool
        Little endian.
    """

    def __init__(self, *, implicit: bool, little: bool) -> None:
        self.implicit = implicit
        self.little = little
        endian = "<" if little else ">"
        self._implicit_header = Struct(endian + "HHI").pack
        self._short_header = Struct(endian + "HH2sH").pack
        self._long_header = Struct(endian + "HH2s2xI").pack
        self._vr_bytes: dict[str, bytes] = {}
        self._pydicom_encodings: dict[Any, list[str]] = {}

    @classmethod
    def of(cls, *, implicit: bool, little: bool) -> Encoder:
        """The shared encoder of one encoding (as the constructor's parameters), made on
        first use: it holds no state between calls."""
        found = _ENCODERS.get((implicit, little))
        if found is None:
            found = _ENCODERS[(implicit, little)] = cls(implicit=implicit, little=little)
        return found

    # ---------------------------------------------------------------------------------------
    def dataset(self, out: bytearray, ds: Dataset, parent: Encodings = None) -> None:
        """Encode every element of a dataset in tag order, as pydicom's ``write_dataset`` does.

        Retired group lengths of groups above 6 are left out.

        Parameters
        ----------
        out : bytearray
            Where the bytes are appended.
        ds : Dataset
            The dataset (a sequence item, or the elements after the pixel data).
        parent : str or MutableSequence[str] or None
            The character set of the enclosing dataset, used when ``ds`` has none.
        """
        if not self._as_read(ds):
            # Read in another encoding or character set: pydicom converts every element
            # (and corrects ambiguous VRs) on the way out.
            buffer = DicomBytesIO()
            buffer.is_little_endian, buffer.is_implicit_VR = self.little, self.implicit
            write_dataset(buffer, ds, parent_encoding=_for_pydicom(parent) or "iso8859")
            out += buffer.getvalue()
            return
        charset = ds.get_item(0x00080005)
        encodings: Encodings = parent
        if charset is not None:
            encodings = ds.get("SpecificCharacterSet", parent)
        for tag, elem in sorted(ds.items(), key=by_tag):
            if tag & 0xFFFF == 0 and tag >> 16 > 6:
                continue
            if isinstance(elem, RawDataElement) and elem.value is None:
                elem = ds.get_item(tag)  # deferred: read now, as pydicom's get_item does
            self.element(out, elem, encodings)

    def _as_read(self, ds: Dataset) -> bool:
        """True when pydicom would write ``ds``'s elements as they are: read in this
        encoding and character set, or built in memory with plain VRs."""
        if ds.original_encoding == (self.implicit, self.little):
            return bool(ds.original_character_set == getattr(ds, "_character_set", None))
        if ds.original_encoding != (None, None) or 0x00080005 in ds:
            return False
        for elem in ds.values():
            if isinstance(elem, RawDataElement) or elem.VR is None or len(elem.VR) != 2:
                return False
        return True

    def element(
        self, out: bytearray, elem: DataElement | RawDataElement, encodings: Encodings
    ) -> None:
        """Encode one element: header and value.

        Parameters
        ----------
        out : bytearray
            Where the bytes are appended.
        elem : DataElement or RawDataElement
            The element; a raw element read in this encoding is copied as it is.
        encodings : str or MutableSequence[str] or None
            The character set of the dataset that holds it.
        """
        if isinstance(elem, RawDataElement):
            if not self._raw(out, elem):
                self._pydicom(out, elem, encodings)
            return
        vr = elem.VR
        if vr == "SQ":
            self._sequence(out, elem, encodings)
            return
        if elem.is_undefined_length:
            self._pydicom(out, elem, encodings)
            return
        value = self._value(elem, vr, encodings)  # None for a buffered value, among others
        if value is None or not self._header(out, elem.tag, vr, len(value)):
            self._pydicom(out, elem, encodings)
            return
        out += value

    # ---------------------------------------------------------------------------------------
    def _header(self, out: bytearray, tag: int, vr: str | None, length: int) -> bool:
        """Append the element header; False when pydicom must write it (an odd VR, a value
        too long for a 2-byte length)."""
        if self.implicit:
            out += self._implicit_header(tag >> 16, tag & 0xFFFF, length)
            return True
        if vr is None or len(vr) != 2:
            return False
        code = self._vr_bytes.get(vr)
        if code is None:
            code = self._vr_bytes[vr] = vr.encode("ascii")
        if vr in LONG_VRS:
            out += self._long_header(tag >> 16, tag & 0xFFFF, code, length)
        elif length > 0xFFFF:
            return False
        else:
            out += self._short_header(tag >> 16, tag & 0xFFFF, code, length)
        return True

    def _raw(self, out: bytearray, elem: RawDataElement) -> bool:
        value = elem.value
        if (
            value is None
            or elem.length == _UNDEFINED
            or elem.is_implicit_VR != self.implicit
            or elem.is_little_endian != self.little
        ):
            return False
        if not self._header(out, elem.tag, elem.VR, len(value)):
            return False
        out += value
        return True

    def value(self, elem: DataElement, encodings: Encodings) -> bytes | None:
        """The value bytes of a sequence of defined length, as :meth:`element` writes them
        after the header; None for a sequence of undefined length.

        Parameters
        ----------
        elem : DataElement
            A sequence (VR SQ).
        encodings : str or MutableSequence[str] or None
            The character set of the dataset that holds it.

        Returns
        -------
        bytes or None
            Its items encoded, or None when it has an undefined length.
        """
        if elem.is_undefined_length:
            return None
        return bytes(self._items(elem, encodings))

    def text_value(self, elem: DataElement, encodings: Encodings) -> bytes | None:
        """The value bytes of a text element (SH, LO, ST, LT, UT, UC) as :meth:`element`
        writes them after the header, when they are encoded here; None when pydicom writes
        the element (non-ASCII text, among others).

        Parameters
        ----------
        elem : DataElement
            The element.
        encodings : str or MutableSequence[str] or None
            The character set of the dataset that holds it.

        Returns
        -------
        bytes or None
            The value bytes, or None.
        """
        if elem.VR not in _TEXT_VRS:
            return None
        return self.encoded(elem, encodings)

    def encoded(self, elem: DataElement, encodings: Encodings) -> bytes | None:
        """The value bytes of an element that is not a sequence, as :meth:`element` writes
        them after the header, when they are encoded here; None when pydicom writes it.

        Parameters
        ----------
        elem : DataElement
            The element.
        encodings : str or MutableSequence[str] or None
            The character set of the dataset that holds it.

        Returns
        -------
        bytes or None
            The value bytes, or None.
        """
        if elem.VR == "SQ" or elem.is_undefined_length:
            return None
        value = self._value(elem, elem.VR, encodings)
        if value is None or (len(value) > 0xFFFF and elem.VR not in LONG_VRS):
            return None
        return value

    def _sequence(self, out: bytearray, elem: DataElement, encodings: Encodings) -> None:
        undefined = elem.is_undefined_length
        body = self._items(elem, encodings)
        tag = elem.tag
        length = _UNDEFINED if undefined else len(body)
        if self.implicit:
            out += self._implicit_header(tag >> 16, tag & 0xFFFF, length)
        else:
            out += self._long_header(tag >> 16, tag & 0xFFFF, b"SQ", length)
        out += body
        if undefined:
            out += self._implicit_header(0xFFFE, 0xE0DD, 0)

    def _items(self, elem: DataElement, encodings: Encodings) -> bytearray:
        body = bytearray()
        item_header = self._implicit_header
        for item in elem.value:
            if getattr(item, "is_undefined_length_sequence_item", False):
                body += item_header(0xFFFE, 0xE000, _UNDEFINED)
                self.dataset(body, item, encodings)
                body += item_header(0xFFFE, 0xE00D, 0)
            else:
                content = bytearray()
                self.dataset(content, item, encodings)
                body += item_header(0xFFFE, 0xE000, len(content))
                body += content
        return body

    def _value(self, elem: DataElement, vr: str, encodings: Encodings) -> bytes | None:
        """The value bytes pydicom would write, or None to let pydicom write the element."""
        value = elem.value
        if value is None or (isinstance(value, (str, bytes, MultiValue, list)) and not value):
            return b""
        pad = _STRING_VRS.get(vr)
        if pad is not None:
            text = _joined(value)
            if text is None:
                return None
            if len(text) % 2:
                text += pad
            try:
                return text.encode("latin-1")
            except UnicodeEncodeError:
                return None
        if vr in _TEXT_VRS:
            text = _joined(value)
            if text is None or not text.isascii() or not ascii_charset(encodings):
                return None
            return _pad(text.encode("ascii"))
        if vr in _NUMBER_STRING_VRS:
            items = value if isinstance(value, (MultiValue, list)) else [value]
            text = "\\".join(
                x.original_string if hasattr(x, "original_string") else str(x) for x in items
            )
            if len(text) % 2:
                text += " "
            try:
                return text.encode("latin-1")
            except UnicodeEncodeError:
                return None
        if vr == "PN":
            names = value if isinstance(value, (MultiValue, list)) else [value]
            if not all(hasattr(n, "encode") and not isinstance(n, str) for n in names):
                return None
            converted = self._converted(encodings)
            return _pad(b"\\".join(n.encode(converted) for n in names))
        return None

    def _converted(self, encodings: Encodings) -> list[str]:
        key = encodings if isinstance(encodings, str) or encodings is None else tuple(encodings)
        found = self._pydicom_encodings.get(key)
        if found is None:
            found = self._pydicom_encodings[key] = convert_encodings(encodings or ["iso8859"])
        return found

    def _pydicom(
        self, out: bytearray, elem: DataElement | RawDataElement, encodings: Encodings
    ) -> None:
        buffer = DicomBytesIO()
        buffer.is_little_endian = self.little
        buffer.is_implicit_VR = self.implicit
        write_data_element(buffer, elem, _for_pydicom(encodings))
        out += buffer.getvalue()


_ENCODERS: dict[tuple[bool, bool], Encoder] = {}


def _for_pydicom(encodings: Encodings) -> str | list[str] | None:
    return encodings if encodings is None or isinstance(encodings, str) else list(encodings)


def by_tag(item: tuple[int, Any]) -> int:
    """Sort a dataset's items by tag.

    Parameters
    ----------
    item : tuple[int, Any]
        A ``(tag, element)`` pair of ``Dataset.items()``.

    Returns
    -------
    int
        The tag as a plain int (pydicom's tags compare in Python).
    """
    return int(item[0])


def _joined(value: Any) -> str | None:
    """A string value, or the values of a multi-valued one joined by backslashes; None when
    a value is not a string."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, MultiValue)) and all(isinstance(v, str) for v in value):
        return "\\".join(value)
    return None


def _pad(data: bytes) -> bytes:
    return data + b" " if len(data) % 2 else data


# --------------------------------------------------------------------------------------------
# Reference sequences, remapped without decoding

REFERENCED_SOP_CLASS_UID = 0x00081150
REFERENCED_SOP_INSTANCE_UID = 0x00081155
_ITEM = b"\xfe\xff\x00\xe0"
_U32 = Struct("<L")
_U16 = Struct("<H")
_TAG = Struct("<HH")


def remap_references(value: bytes, implicit: bool, map_uid: Callable[[str], str]) -> bytes | None:
    """Remap the instance UIDs of a reference sequence without decoding it.

    This is what walking the items would do (class UIDs kept, instance UIDs mapped), and
    the bytes are pydicom's for the same items: UIDs padded with NUL, lengths recomputed.

    Parameters
    ----------
    value : bytes
        The value of a little-endian sequence.
    implicit : bool
        Whether it is encoded with implicit VR.
    map_uid : Callable[[str], str]
        The replacement of an instance UID.

    Returns
    -------
    bytes or None
        The remapped value; None when the value is not made of items of Referenced SOP
        Class UID and Referenced SOP Instance UID only, with defined lengths (the caller
        then walks it as pydicom reads it).
    """
    out = bytearray()
    at, end = 0, len(value)
    while at < end:
        if value[at : at + 4] != _ITEM or at + 8 > end:
            return None
        (length,) = _U32.unpack_from(value, at + 4)
        if length == _UNDEFINED or at + 8 + length > end:
            return None
        item = _remap_item(value[at + 8 : at + 8 + length], implicit, map_uid)
        if item is None:
            return None
        out += _ITEM + _U32.pack(len(item)) + item
        at += 8 + length
    return bytes(out)


def _remap_item(data: bytes, implicit: bool, map_uid: Callable[[str], str]) -> bytes | None:
    out = bytearray()
    at, end = 0, len(data)
    while at < end:
        if at + 8 > end:
            return None
        group, element = _TAG.unpack_from(data, at)
        tag = group << 16 | element
        if tag not in (REFERENCED_SOP_CLASS_UID, REFERENCED_SOP_INSTANCE_UID):
            return None
        if implicit:
            (length,) = _U32.unpack_from(data, at + 4)
            start = at + 8
        else:
            if data[at + 4 : at + 6] != b"UI":
                return None
            (length,) = _U16.unpack_from(data, at + 6)
            start = at + 8
        if start + length > end:
            return None
        raw = data[start : start + length]
        if tag == REFERENCED_SOP_INSTANCE_UID:
            if not raw.isascii():
                return None
            uids = [u.strip("\x00 ") for u in raw.decode("ascii").split("\\")]
            raw = "\\".join(map_uid(u) for u in uids).encode("ascii")
            if len(raw) % 2:
                raw += b"\x00"
        header = data[at : at + 4]
        if implicit:
            out += header + _U32.pack(len(raw)) + raw
        else:
            out += header + b"UI" + _U16.pack(len(raw)) + raw
        at = start + length
    return bytes(out)
