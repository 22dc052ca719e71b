"""Walking a dataset: elements with their VR, raw bytes, byte span and path, and their values.

Also what the standard says about elements, written down here rather than borrowed from the
engine: the VRs, the tags every check needs, and what a UI element holds.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Container, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import Any, Final, cast

from pydicom._uid_dict import UID_dictionary
from pydicom.charset import decode_bytes, python_encoding
from pydicom.datadict import get_entry
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import BaseTag

_DEFLATED: Final = "1.2.840.10008.1.2.1.99"
_PIXEL_TAGS: Final = (0x7FE00008, 0x7FE00009, 0x7FE00010)
_SOP_INSTANCE_UID: Final = 0x00080018
_CHARSET: Final = 0x00080005
_ENCAPSULATED_DOCUMENT: Final = 0x00420011
_TEXT_VRS: Final = frozenset({"LO", "LT", "PN", "SH", "ST", "UC", "UT"})
_SINGLE_VALUED: Final = frozenset({"LT", "ST", "UT", "UR"})
_STRING_VRS: Final = _TEXT_VRS | {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI", "UR"}
_STRIPPED_BOTH: Final = frozenset({"AE", "CS", "DS", "IS", "AS", "UI"})
_DATE_VRS: Final = frozenset({"DA", "DT"})
# UI elements that name a class, syntax or scheme, not an instance.
_CLASS_UID_SUFFIXES: Final = ("ClassUID", "SyntaxUID", "ClassesInStudy", "ClassesSupported")
_CLASS_UID_KEYWORDS: Final = frozenset(
    {
        "CodingSchemeUID",
        "ContextUID",
        "MappingResourceUID",
        "ReferencedSOPClassUIDInFile",
        "ReferencedTransferSyntaxUIDInFile",
        "ImplementationClassUID",
        "PrivateInformationCreatorUID",
    }
)
_REFERENCED_IN_ITEMS: Final = frozenset(
    {"StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"}
)


@cache
def _entry(tag: int) -> tuple[str, str] | None:
    """(VR, keyword) from pydicom's dictionary, repeating groups included."""
    try:
        vr, _vm, _name, _retired, keyword = get_entry(tag)
    except KeyError:
        return None
    return str(vr), str(keyword)


def _dictionary_vr(tag: int) -> str:
    entry = _entry(tag)
    return entry[0] if entry is not None else ""


def _keyword(tag: int) -> str:
    entry = _entry(tag)
    return entry[1] if entry is not None else ""


_Element = DataElement | RawDataElement


class _Data:
    """A dataset or a sequence item as the checks walk it: its elements (tag -> pydicom's raw
    or converted element, in file order) and the items of its sequences.

    :mod:`~dicomveil.qc.verify.reading`'s parser makes them with every element raw, its offset
    counted from the start of the file, and every sequence's items parsed (but for the
    input walk's top level: see :meth:`parsed_items`). A dataset pydicom
    read is wrapped as it is (:meth:`of`): pydicom converts a sequence into items when asked,
    and their elements' offsets are relative to the sequence's value (defined length) or to
    the parent's (undefined length), as :meth:`items` says.
    """

    __slots__ = ("_dataset", "_sequences", "elements", "filtered")

    def __init__(
        self,
        elements: Mapping[int, _Element],
        sequences: Mapping[int, list[_Data]],
        dataset: Dataset | None = None,
        *,
        filtered: bool = False,
    ) -> None:
        self.elements = elements
        self._sequences = sequences
        self._dataset = dataset
        self.filtered = filtered  # read without what the input walk passes over

    @classmethod
    def of(cls, ds: Dataset) -> _Data:
        """A dataset read by pydicom."""
        return cls(cast("Mapping[int, _Element]", ds._dict), {}, ds)

    @classmethod
    def joined(cls, *parts: _Data) -> _Data:
        """One dataset of parts read one after the other (verify's parser only)."""
        elements: dict[int, _Element] = {}
        sequences: dict[int, list[_Data]] = {}
        for part in parts:
            elements.update(part.elements)
            sequences.update(part._sequences)
        return cls(elements, sequences)

    def __contains__(self, tag: int) -> bool:
        return tag in self.elements

    def get(self, tag: int) -> _Element | None:
        """An element as read (not converted)."""
        return self.elements.get(tag)

    def parsed_items(self, tag: int) -> list[_Data] | None:
        """The items of a sequence as verify's parser read them; None where it did not: a
        dataset pydicom read, or a sequence of defined length at a top level read ``lazy``
        (:meth:`~dicomveil.qc.verify.reading._Parser.dataset`)."""
        return self._sequences.get(tag)

    def items(self, node: _Node) -> list[tuple[_Data, int]]:
        """A sequence's items, each with the offset its elements' offsets are relative to."""
        if self._dataset is None:
            return [(item, 0) for item in self._sequences.get(node.tag, ())]
        try:
            value = self._dataset[node.tag].value
        except Exception:  # an unparsable sequence: its bytes are still searched
            return []
        if not isinstance(value, DicomSequence):
            return []
        # Items of a defined-length sequence are parsed from its value (offsets relative to
        # its start); those of an undefined-length one straight from the stream (the parent's).
        base = node.start if isinstance(node.element, RawDataElement) else node.base
        return [(_Data.of(item), base) for item in value if isinstance(item, Dataset)]

    def count(self, node: _Node) -> int:
        """How many items a sequence holds (0 when it cannot be read)."""
        if self._dataset is None:
            return len(self._sequences.get(node.tag, ()))
        try:
            return len(self._dataset[node.tag].value)
        except Exception:
            return 0

    def value(self, tag: int) -> Any:
        """An element's value as pydicom converts it (raises as pydicom does)."""
        if self._dataset is not None:
            return self._dataset[tag].value
        element = self.elements[tag]
        if isinstance(element, RawDataElement):
            return _converted(element).value
        return element.value


def _converted(element: RawDataElement) -> DataElement:
    """A raw element converted as pydicom converts it (verify's parser keeps int tags)."""
    return convert_raw_data_element(element._replace(tag=BaseTag(element.tag)))


@dataclass(slots=True)
class _Node:
    tag: int
    vr: str
    keyword: str
    prefix: str
    key: tuple[int, ...]
    raw: bytes | None  # the value's bytes, when pydicom has not converted the element
    element: DataElement | RawDataElement
    start: int  # absolute offset of the value, -1 when unknown
    length: int
    creator: str  # private data elements: the block's private creator
    encodings: tuple[str, ...]
    depth: int
    base: int  # the offset the element's own position is relative to
    private: bool

    @property
    def path(self) -> str:
        return self.prefix + _label(self.tag, self.keyword, self.creator)

    @property
    def is_creator(self) -> bool:
        return self.private and 0x0010 <= self.tag & 0xFFFF <= 0x00FF


def _nodes(
    data: _Data,
    base: int,
    key: tuple[int, ...],
    prefix: str,
    encodings: tuple[str, ...],
    depth: int,
    skip: Mapping[tuple[int, str | None], bool] | None = None,
    taken: Callable[[int, str, str, bytes], bool] | None = None,
    passable: _Passable | None = None,
    shaped: Callable[[tuple[int, ...], str, bytes, int], None] | None = None,
) -> Iterator[_Node]:
    """The elements of one dataset (not of its items), as nodes. Some are passed over without
    building one: public elements ``skip[(tag, VR)]`` says; elements read raw for which
    ``taken(tag, VR, creator, raw bytes)`` returns True (it dealt with them: the input
    walk's memo); public elements read raw that ``passable`` lets pass (the output walk's:
    ``how[(tag, VR)]`` is 2, or 1 with ``(VR, encodings, raw bytes)`` in its set), which are
    then handed to ``shaped(key, VR, raw bytes, length)`` (when 1, if given)."""
    creators: dict[tuple[int, int], str] = {}  # a block's creator sorts before its elements
    keywords, raw_type, node_type = _KEYWORDS, RawDataElement, _Node
    how, valid = passable if passable is not None else (None, None)
    # The raw dict, in file order: no Tag conversion or lookup per element, and plain int tags
    # (pydicom's BaseTag compares in Python, which every dict lookup keyed by a tag pays).
    for base_tag, element in data.elements.items():
        tag = int(base_tag)
        group = tag >> 16
        vr = element.VR
        if type(vr) is not str or vr == "UN" or len(vr) != 2:
            vr = _vr_of(element, tag)
        private = group & 1 == 1
        creator = ""
        if private:
            number = tag & 0xFFFF
            if number > 0x00FF:
                creator = creators.get((group, number >> 8), "")
            elif number >= 0x0010:
                creators[(group, number)] = _creator_text(element)
        elif skip is not None and skip[(tag, vr)]:
            continue
        raw: bytes | None = None
        if type(element) is raw_type:
            start = base + element.value_tell
            length = element.length
            value = element.value
            if type(value) is bytes:
                raw = value
                if taken is not None and taken(tag, vr, creator, raw):
                    continue
                if how is not None and not private:
                    passing = how[(tag, vr)]
                    if passing and (passing == 2 or (vr, encodings, raw) in valid):  # type: ignore[operator]
                        if shaped is not None and passing == 1:
                            shaped((*key, tag), vr, raw, element.length)
                        continue
        else:  # converted by pydicom already: its span is approximate
            tell = getattr(element, "file_tell", None)
            start = -1 if tell is None or vr == "SQ" else base + int(tell)
            length = 12 + len(_as_text(element.value)) if start >= 0 else 0
        if private:
            keyword = ""
        else:
            keyword = keywords.get(tag)  # type: ignore[assignment]
            if keyword is None:
                keyword = keywords[tag] = _keyword(tag)
        yield node_type(  # positional: this runs for every element of every file
            tag,
            vr,
            keyword,
            prefix,
            (*key, tag),
            raw,
            element,
            start,
            length,
            creator,
            encodings,
            depth,
            base,
            private,
        )


_KEYWORDS: dict[int, str] = {}  # per process: tag -> keyword ("" when unknown)
# What the output walk may pass over: how (0 never, 1 when its value is known valid, 2 always)
# by (tag, VR), and the (VR, encodings, bytes) of values known valid.
_Passable = tuple[Mapping[tuple[int, str], int], Container[tuple[str, tuple[str, ...], bytes]]]


def _spans(
    data: _Data,
    base: int,
    into: list[tuple[int, int, _Node]],
    inherited: tuple[str, ...] = ("ascii",),
    key: tuple[int, ...] = (),
    prefix: str = "",
) -> None:
    """(start, end, node) of the values of a dataset's elements, its items' included, as the
    output walk sees them: private creators and every other element but group lengths and
    sequences (whose items are walked)."""
    encodings, _unknown = _encodings(data, inherited)
    for node in _nodes(data, base, key, prefix, encodings, len(key) // 2):
        number = node.tag & 0xFFFF
        creator = node.private and 0x0010 <= number <= 0x00FF
        if not creator and number == 0 and node.tag >> 16 != 0x0002:
            continue
        if node.vr == "SQ" and not creator:
            for item, item_base, item_key, item_prefix in _items(data, node):
                _spans(item, item_base, into, encodings, item_key, item_prefix)
            continue
        if node.start >= 0 and node.length and node.length != 0xFFFFFFFF:
            into.append((node.start, node.start + node.length, node))


def _items(data: _Data, node: _Node) -> Iterator[tuple[_Data, int, tuple[int, ...], str]]:
    """(item, base offset, key, path prefix) of a sequence element."""
    path = node.path
    for index, (item, base) in enumerate(data.items(node)):
        yield item, base, (*node.key, index), f"{path}[{index}]>"


def _label(tag: int, keyword: str, creator: str) -> str:
    group, number = tag >> 16, tag & 0xFFFF
    if group & 1 and number > 0x00FF and creator:
        return f'({group:04X},"{creator}",xx{number & 0xFF:02X})'
    return keyword or f"({group:04X},{number:04X})"


def _creator_text(element: DataElement | RawDataElement) -> str:
    value = element.value
    if isinstance(value, bytes):
        return value.decode("latin-1").strip("\x00 ")
    return str(value or "").strip("\x00 ")


def _vr_of(element: DataElement | RawDataElement, tag: int) -> str:
    vr = element.VR
    if vr and vr != "UN" and " or " not in vr:
        return str(vr)
    if tag >> 16 & 1:
        return str(vr or "UN")
    known = _dictionary_vr(tag)
    if known and " or " not in known:
        return known
    return str(vr or "UN")


def _encodings(data: _Data, inherited: tuple[str, ...]) -> tuple[tuple[str, ...], list[str]]:
    """The Python codecs of the dataset's Specific Character Set, and unknown terms."""
    element = data.elements.get(_CHARSET)
    if element is None:
        return inherited, []
    if not isinstance(element, RawDataElement):
        return _codecs(element.value)
    # Converted as pydicom converts it, but not stored: the element stays raw, as read.
    key = element.value if isinstance(element.value, bytes) else None
    known = _CHARSETS.get(key) if key is not None else None
    if known is None:
        known = _codecs(_converted(element).value)
        if key is not None and len(_CHARSETS) < _MAX_VALUES:
            _CHARSETS[key] = known
    return known


# Per process: the bytes of a Specific Character Set -> its codecs and unknown terms (shared,
# never changed by a caller).
_CHARSETS: dict[bytes, tuple[tuple[str, ...], list[str]]] = {}


def _codecs(value: Any) -> tuple[tuple[str, ...], list[str]]:
    terms = [str(v).strip() for v in (value if isinstance(value, MultiValue | list) else [value])]
    unknown = [t for t in terms if t not in python_encoding]
    codecs: list[str] = []
    for i, term in enumerate(terms):
        if term in ("", "ISO_IR 6", "ISO 2022 IR 6") and i == 0:
            codecs.append("ascii")
        elif term in python_encoding:
            codecs.append(python_encoding[term])
    return (tuple(codecs) or ("ascii",)), unknown


def _decode(raw: bytes, encodings: tuple[str, ...]) -> tuple[str, bool]:
    """Text of a value, and whether its bytes are legal in the character set."""
    if len(encodings) == 1 or b"\x1b" not in raw:
        try:
            return raw.decode(encodings[0]), True
        except (UnicodeDecodeError, LookupError):
            return raw.decode("latin-1"), False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        text = decode_bytes(raw, list(encodings), set())
    return text, not caught


def _values(node: _Node) -> tuple[list[str], bool]:
    """The string values of an element (split on backslash where the VR allows many), and
    whether its bytes are legal in its character set."""
    vr = node.vr
    if vr not in _STRING_VRS:
        return [], True
    raw = node.raw
    if raw is not None:
        return _raw_values(raw, vr, node.encodings)
    value = node.element.value
    if value is None:
        return [], True
    items = value if isinstance(value, MultiValue | list | tuple) else [value]
    return _stripped(vr, [_as_text(v) for v in items]), True


def _raw_values(raw: bytes, vr: str, encodings: tuple[str, ...]) -> tuple[list[str], bool]:
    """:func:`_values` of an element of a string VR read raw."""
    if not raw:
        return [], True
    memo = (vr, encodings, raw) if len(raw) <= _MEMO_BYTES else None
    if memo is not None:
        known = _VALUES.get(memo)
        if known is not None:
            return known
    found = _values_of(raw, vr, encodings)
    if memo is not None:
        if len(_VALUES) >= _MAX_VALUES:
            _VALUES.clear()
        _VALUES[memo] = found
    return found


# Per process: (VR, encodings, bytes) -> values. Codes, dates, names and UIDs repeat from file
# to file. The lists are shared: no caller changes them.
_VALUES: dict[tuple[str, tuple[str, ...], bytes], tuple[list[str], bool]] = {}
_MAX_VALUES: Final = 1 << 16
_MEMO_BYTES: Final = 1024


def _values_of(raw: bytes, vr: str, encodings: tuple[str, ...]) -> tuple[list[str], bool]:
    legal = True
    if vr in _TEXT_VRS:
        text, legal = _decode(raw, encodings)
    else:
        text = raw.decode("latin-1")
    parts = [text] if vr in _SINGLE_VALUED or "\\" not in text else text.split("\\")
    return _stripped(vr, parts), legal


def _stripped(vr: str, parts: list[str]) -> list[str]:
    if vr in _STRIPPED_BOTH:
        stripped = [part.strip("\x00 ") for part in parts]
    else:
        stripped = [part.rstrip("\x00 ") for part in parts]
    return stripped if any(stripped) else []


def _unread(node: _Node) -> int | None:
    """The length of a value verify's reader left unread (large pixel data: see
    :func:`~.reading._load_output`), else None. pydicom reads every value verify asks it
    for, and gives None for an empty one only."""
    element = node.element
    if node.raw is None and element.value is None and isinstance(element, RawDataElement):
        length = element.length
        if length and length != 0xFFFFFFFF:
            return int(length)
    return None


def _empty_binary(node: _Node) -> bool:
    if node.raw is not None:
        return not node.raw
    if _unread(node) is not None:
        return False
    value = node.element.value
    return value is None or (isinstance(value, bytes | list | MultiValue) and not value)


def _as_text(value: Any) -> str:
    original = getattr(value, "original_string", None)  # PersonName
    if isinstance(original, bytes):
        return original.decode("latin-1")
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


def _joined(values: list[str]) -> str:
    return "\\".join(values).casefold()


def _text(data: _Data, tag: int) -> str:
    """A short element's text, read from its bytes: no conversion, so pydicom logs nothing."""
    element = data.elements.get(tag)
    if element is None:
        return ""
    value = element.value
    if isinstance(value, bytes):
        return value.decode("latin-1").strip("\x00 ")
    if isinstance(value, MultiValue | list):
        return "\\".join(str(v) for v in value)
    return str(value or "").strip("\x00 ")


class _Role(StrEnum):
    DEFINED = "defined"  # the object's own UIDs, and UIDs an item defines (dimensions, ...)
    REFERENCE = "reference"


def _uid_role(node: _Node) -> _Role | None:
    """What an instance UID element does; None for file meta and private elements."""
    if node.key[0] >> 16 == 0x0002 or node.private:
        return None
    if node.depth == 0:
        return _Role.DEFINED
    if node.keyword.startswith("Referenced") or node.keyword in _REFERENCED_IN_ITEMS:
        return _Role.REFERENCE
    return _Role.DEFINED


def _is_instance_uid_element(keyword: str) -> bool:
    return not (keyword.endswith(_CLASS_UID_SUFFIXES) or keyword in _CLASS_UID_KEYWORDS)


def _well_known(uid: str) -> bool:
    return uid in UID_dictionary
