"""Small readers of element values and names shared by the engine's modules.

They read what a value is without changing it: the text of a short element (from its raw
bytes where pydicom has not decoded it), the VR to act on, the private creator, a path for
reports. None of them returns more of a value than the engine needs to decide.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableSequence
from functools import cache

from pydicom import config as _pydicom_config
from pydicom._uid_dict import UID_dictionary
from pydicom.datadict import dictionary_has_tag, dictionary_VM, dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from dicomveil.errors import DeidentificationError
from dicomveil.profiles import known_tag

# UIDs that name a class, syntax or scheme, not an instance: never replaced.
CLASS_UID_TAGS = frozenset(
    {
        0x00000002,  # AffectedSOPClassUID
        0x00000003,  # RequestedSOPClassUID
        0x00020002,  # MediaStorageSOPClassUID
        0x00020010,  # TransferSyntaxUID
        0x00020012,  # ImplementationClassUID
        0x00041510,  # ReferencedSOPClassUIDInFile
        0x00041512,  # ReferencedTransferSyntaxUIDInFile
        0x00080016,  # SOPClassUID
        0x0008001A,  # RelatedGeneralSOPClassUID
        0x0008001B,  # OriginalSpecializedSOPClassUID
        0x00080062,  # SOPClassesInStudy
        0x0008010C,  # CodingSchemeUID
        0x00080117,  # ContextUID
        0x00080118,  # MappingResourceUID
        0x00081150,  # ReferencedSOPClassUID
        0x0008115A,  # SOPClassesSupported
        0x04000510,  # EncryptedContentTransferSyntaxUID
    }
)


def sop_name(uid: str) -> str:
    """A SOP class by name where the dictionary knows it (never an instance UID)."""
    entry = UID_dictionary.get(uid)
    return str(entry[0]) if entry else uid


def element_path(path: tuple[str, ...], tag: int) -> str:
    """Where an element is, for reasons and reports: ``A[0]>B (GGGG,EEEE)``; no values."""
    keyword = keyword_for_tag(tag) or "element"
    return ">".join((*path, f"{keyword} ({tag >> 16:04X},{tag & 0xFFFF:04X})"))


def collapse(path: Iterable[str]) -> Iterator[str]:
    """SR content trees recurse: ContentSequence>ContentSequence>X is typed as one level."""
    previous = None
    for part in path:
        if part == "ContentSequence" and previous == "ContentSequence":
            continue
        previous = part
        yield part


def vr_of(raw: DataElement | RawDataElement, tag: int) -> str:
    vr = raw.VR
    if vr is None or vr == "UN" or " or " in vr:
        if known_tag(tag):
            dict_vr = dictionary_VR(tag)
            if " or " not in dict_vr:
                return str(dict_vr)
            return str(vr or "UN") if vr and " or " not in vr else "OB"
        return str(vr or "UN")
    return str(vr)


def creator_of(ds: Dataset, tag: int) -> str:
    raw = ds.get_item(tag, keep_deferred=True)
    value = raw.value
    if isinstance(value, bytes):
        return value.decode("latin-1").strip("\x00 ")
    return str(value or "").strip("\x00 ")


def text_of(ds: Dataset, tag: int) -> str:
    """The string value of a (short) element, '' when absent or empty."""
    elem = ds.get_item(tag, keep_deferred=True)
    if elem is None:
        return ""
    if isinstance(elem, RawDataElement):
        raw = ascii_value(elem)
        if raw is not None and "\\" not in raw:
            return raw.strip("\x00 ")  # what pydicom's decoding, then the below, would give
    value = ds[tag].value
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin-1").strip("\x00 ")
    if isinstance(value, MutableSequence):
        return "\\".join(str(v) for v in value)
    return str(value).strip("\x00 ")


# String VRs whose raw ASCII bytes are their value (pydicom decodes them as ASCII too).
_ASCII_STRING_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DT", "TM", "UI", "LO", "SH", "PN", "LT", "ST", "UT", "UC", "UR"}
)


def ascii_value(elem: RawDataElement) -> str | None:
    """The value of a raw string element with ASCII bytes, undecoded by pydicom; None when
    pydicom must decode it (another VR, a deferred value, other characters)."""
    value = elem.value
    if elem.VR not in _ASCII_STRING_VRS or not isinstance(value, bytes) or not value.isascii():
        return None
    return value.decode("ascii")


def has_pixels(ds: Dataset) -> bool:
    return any(t in ds for t in (0x7FE00010, 0x7FE00008, 0x7FE00009))


def pad(data: bytes) -> bytes:
    return data + b"\x00" if len(data) % 2 else data


def validate(tag: int, vr: str, value: str) -> None:
    try:
        from pydicom.valuerep import validate_value

        validate_value(vr, value, _pydicom_config.RAISE)
    except ValueError:
        raise DeidentificationError(
            f"the profile's replacement is not valid for VR {vr}",
            tag=f"({tag >> 16:04X},{tag & 0xFFFF:04X})",
        ) from None


_NUMBER_BYTES = b"0123456789+-Ee. \\\x00"


def numeric_text(value: object) -> bool:
    """Whether a DS or IS value holds only what numbers are written with (PS3.5 6.2).

    A damaged file can carry text into a numeric string (a bit flip, a wrong length); a
    value that is not a number is not kept as it is (see
    :func:`dicomveil.engine.handlers.keep`).

    Parameters
    ----------
    value : object
        The raw bytes, or the decoded value.

    Returns
    -------
    bool
        True for bytes or text made of digits, signs, exponents, points, spaces and
        backslashes (and a decoded number).
    """
    if isinstance(value, str):
        value = value.encode("latin-1", "replace")
    if isinstance(value, bytes):
        return not value.translate(None, _NUMBER_BYTES)
    if isinstance(value, (list, tuple, MultiValue)):
        return all(numeric_text(item) for item in value)
    return True


# Value lengths a damaged length field betrays (see length_limit).
_BINARY_BYTES = {"AT": 4, "FD": 8, "FL": 4, "SL": 4, "SS": 2, "SV": 8, "UL": 4, "US": 2, "UV": 8}
_TEXT_BYTES = {  # the longest value of each VR, PS3.5 table 6.2-1 (PN: 3 groups of 64 and 2 =)
    "AE": 16, "AS": 4, "CS": 16, "DA": 8, "DS": 16, "DT": 26, "IS": 12, "LO": 64, "LT": 10240,
    "PN": 194, "SH": 16, "ST": 1024, "TM": 14, "UI": 64,
}  # fmt: skip
# Real files overrun the longest text value (an SH of 64 bytes, an LO of 122): a text element
# is damaged only beyond this many times its bound, and 64 bytes more.
_TEXT_SLACK = 8


@cache
def length_limit(tag: int, vr: str | None) -> int | None:
    """The longest value a public element can hold, or None when its VM has no bound.

    A longer value means its length field is damaged: the element has swallowed the elements
    that followed it (names and IDs among them, as bytes of a number or a code). Numbers are
    held to their exact bound (no real file of the test corpus overruns one); text is given
    :data:`_TEXT_SLACK` times its bound, as real files overrun text bounds.

    Parameters
    ----------
    tag : int
        The element's tag (private and unknown tags have no limit).
    vr : str or None
        The VR it was read with (None in an implicit VR file: the dictionary's).

    Returns
    -------
    int or None
        The limit in bytes.
    """
    if tag >> 16 & 1 or not dictionary_has_tag(tag):
        return None
    try:
        vm = dictionary_VM(tag)
        vr = vr or dictionary_VR(tag)
    except KeyError:
        return None
    if not vm.isdigit():  # 1-n, 2-2n, 3-3n, ...: no bound
        return None
    count = int(vm)
    if vr in _BINARY_BYTES:
        return count * _BINARY_BYTES[vr]
    if vr in _TEXT_BYTES:
        return _TEXT_SLACK * count * (_TEXT_BYTES[vr] + 1) + 64
    return None


def check_length(tag: int, elem: RawDataElement) -> None:
    """Raise when a raw element's value is longer than its VR and VM allow (see
    :func:`length_limit`): the file is damaged after it, and fails."""
    limit = length_limit(tag, elem.VR)
    if limit is not None and elem.length > limit:
        raise DeidentificationError(
            "value longer than its VR and VM allow: a damaged length field, the elements "
            "after it swallowed",
            tag=f"({tag >> 16:04X},{tag & 0xFFFF:04X})",
        )


def check_lengths(ds: Dataset) -> None:
    """:func:`check_length` for every raw element of ``ds`` (not of its sequences' items:
    the walk checks those as it reads them), before anything decodes one."""
    limit_of = length_limit  # this runs for every element of every file: no call on the way
    for tag, elem in ds._dict.items():
        if isinstance(elem, RawDataElement):
            limit = limit_of(int(tag), elem.VR)
            if limit is not None and elem.length > limit:
                check_length(int(tag), elem)  # raises
