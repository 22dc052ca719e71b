"""The leak check: the needles searched case-insensitively in the raw bytes of an output file
(preamble, file meta, private elements, overlays, encapsulated documents and their compressed
PDF streams, an inflated copy of a deflated dataset; not pixel data) and in its name."""

from __future__ import annotations

import datetime as _dt
import re
import zlib
from collections import Counter
from dataclasses import dataclass
from typing import Final

from pydicom.dataelem import RawDataElement

from dicomveil.qc.verify.context import _FileState
from dicomveil.qc.verify.elements import (
    _DEFLATED,
    _ENCAPSULATED_DOCUMENT,
    _PIXEL_TAGS,
    _Data,
    _Node,
    _text,
    _values,
)
from dicomveil.qc.verify.reading import _Image
from dicomveil.qc.verify.report import Category

_PDF_STREAM: Final = re.compile(rb"stream\r?\n")
_MAX_INFLATED: Final = 64 << 20  # bytes of one compressed PDF stream searched
_WHAT: Final = {
    Category.NAME: "a person's name",
    Category.ID: "an identifier",
    Category.DATE: "a date",
    Category.TIME: "a time",
    Category.ADDRESS: "an address",
    Category.PHONE: "a phone number",
    Category.INSTITUTION: "an institution name",
    Category.DEVICE: "a device or station identifier",
    Category.UID: "an instance UID",
}


def _check_name(check: _FileState) -> None:
    seen: set[Category] = set()
    for _at, needle in check.name_hits:
        category, text = check.ctx.needles.info[needle]
        if category in seen:
            continue
        seen.add(category)
        check.add(
            "(file path)",
            category,
            f"the file or folder name holds {_WHAT[category]} of the originals"
            + check.ctx.value(text),
        )


@dataclass(frozen=True, slots=True)
class _Inflated:
    base: int  # a virtual offset past the file's bytes, so element spans do not collide
    meta_end: int
    data: bytes


def _inflated(image: _Image, meta: _Data) -> _Inflated | None:
    """A deflated dataset, inflated (pydicom reads its elements from these bytes)."""
    if _text(meta, 0x00020010) != _DEFLATED or image.hole is not None:
        return None
    data = image.head
    length = meta.value(0x00020000) if 0x00020000 in meta else 0
    start = 132 + 12 + int(length or 0)
    try:
        inflated = zlib.decompressobj(-zlib.MAX_WBITS).decompress(data[start:])
    except zlib.error:
        return None
    return _Inflated(base=len(data), meta_end=start, data=inflated)


def _pdf_streams(ds: _Data | None) -> list[bytes]:
    if ds is None or _ENCAPSULATED_DOCUMENT not in ds:
        return []
    try:
        document = ds.value(_ENCAPSULATED_DOCUMENT)
    except Exception:
        return []
    if not isinstance(document, bytes) or b"%PDF" not in document[:1024]:
        return []
    streams = []
    for match in _PDF_STREAM.finditer(document):
        try:  # a decompressor stops at the end of its stream: no need to find "endstream"
            inflated = zlib.decompressobj().decompress(document[match.end() :], _MAX_INFLATED)
        except zlib.error:
            continue
        if inflated:
            streams.append(inflated)
    return streams


def _search(
    check: _FileState,
    image: _Image,
    ds: _Data | None,
    streams: list[bytes],
    inflated: _Inflated | None = None,
) -> None:
    needles = check.ctx.needles
    if needles.empty:
        return
    regions: list[tuple[int, bytes, str | None]] = []
    if image.hole is not None:  # the pixel data's value was not read
        start, end = image.hole
        regions.append((0, image.head[:start].lower(), None))
        regions.append((end, image.tail.lower(), None))
    elif inflated is None:
        regions.extend(_regions(0, image.head, ds))
    else:
        regions.append((0, image.head[: inflated.meta_end].lower(), None))
        regions.extend(_regions(inflated.base, inflated.data, ds))
    for stream in streams:
        regions.append((-1, stream.lower(), "EncapsulatedDocument (a compressed PDF stream)"))
    seen: set[tuple[str, Category]] = set()
    for offset, lowered, fixed in regions:
        for at, needle in needles.find(lowered):
            category, text = needles.info[needle]
            node = None if fixed else _node_at(check, offset + at)
            if category is Category.DATE and node is not None and _coincidence(check, node):
                continue
            where = fixed or (node.path if node is not None else _outside(offset + at))
            if (where, category) in seen:
                continue
            seen.add((where, category))
            if category is Category.UID and where in check.original_uid_paths:
                continue  # the reference check reports it, with its element
            check.add(
                where,
                category,
                f"{_WHAT[category]} of the originals" + check.ctx.value(text),
            )


def _node_at(check: _FileState, offset: int) -> _Node | None:
    """The innermost element whose value holds the offset."""
    best: tuple[int, int, _Node] | None = None
    for span in check.spans:
        if span[0] <= offset < span[1] and (best is None or span[1] - span[0] < best[1] - best[0]):
            best = span
    return best[2] if best is not None else None


def _outside(offset: int) -> str:
    return "preamble" if offset < 128 else f"raw bytes at offset {offset}"


def _coincidence(check: _FileState, node: _Node) -> bool:
    """A date shifted like the file's other dates that happens to equal another original
    date: it reveals nothing (its own original, in the matched input, differs)."""
    rules = check.ctx.rules
    if rules.decide(node)[1] != {"S"}:
        return False
    before = check.original.get(node.key)
    shift = _days(before[1], "\\".join(_values(node)[0])) if before is not None else None
    return shift is not None and shift != 0 and shift == _usual_shift(check)


def _usual_shift(check: _FileState) -> int | None:
    """The most common shift (days) between this file's dates and the matched input's."""
    if check.shift is None:
        shifts = [
            _days(before[1], "\\".join(_values(node)[0]))
            for node, _why, letters, _literal in check.pending
            if letters == {"S"} and (before := check.original.get(node.key)) is not None
        ]
        counted = Counter(d for d in shifts if d is not None)
        check.shift = counted.most_common(1)[0][0] if counted else 0
    return check.shift or None


def _days(before: str, after: str) -> int | None:
    """Days from one DA/DT value to another (their first 8 characters), if both are dates."""
    try:
        old = _dt.datetime.strptime(before[:8], "%Y%m%d").date()
        new = _dt.datetime.strptime(after[:8], "%Y%m%d").date()
    except ValueError:
        return None
    return (new - old).days


def _regions(base: int, data: bytes, ds: _Data | None) -> list[tuple[int, bytes, str | None]]:
    """The bytes to search, lower-cased, without the pixel data's value."""
    skip = _pixel_span(ds) if ds is not None else None
    if skip is None:
        return [(base, data.lower(), None)]
    return [(base, data[: skip[0]].lower(), None), (base + skip[1], data[skip[1] :].lower(), None)]


def _pixel_span(ds: _Data) -> tuple[int, int] | None:
    for tag in _PIXEL_TAGS:
        element = ds.get(tag)
        if element is None:
            continue
        if not isinstance(element, RawDataElement) or not isinstance(element.value, bytes):
            return None
        start = element.value_tell
        if element.length == 0xFFFFFFFF:
            return start, start + len(element.value) + 8
        return start, start + element.length
    return None
