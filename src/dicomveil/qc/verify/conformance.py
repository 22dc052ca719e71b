"""The conformance check: nothing present that the profile removes, no value in what it
empties, no original value in what it replaces; private elements and creators; the preamble
and the file meta."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from dicomveil.qc.verify.context import _FileState
from dicomveil.qc.verify.elements import (
    _SOP_INSTANCE_UID,
    _STRING_VRS,
    _Data,
    _empty_binary,
    _joined,
    _Node,
    _text,
    _values,
)
from dicomveil.qc.verify.expectations import _UNKNOWN, _Expect, _replaced
from dicomveil.qc.verify.forms import _NOT_IDENTIFYING
from dicomveil.qc.verify.report import Category
from dicomveil.standard.conditions import conditions

# File meta elements a de-identified file must not carry (PS3.10 7.1: who sent it, and data
# private to an implementation).
_FORBIDDEN_META: Final = {
    0x00020016: "SourceApplicationEntityTitle",
    0x00020017: "SendingApplicationEntityTitle",
    0x00020018: "ReceivingApplicationEntityTitle",
    0x00020100: "PrivateInformationCreatorUID",
    0x00020102: "PrivateInformation",
}


def _check_preamble(check: _FileState, data: bytes) -> None:
    if check.ctx.rules.copy:
        return
    if data[:128].strip(b"\x00"):
        check.add(
            "preamble",
            Category.PREAMBLE,
            "the 128-byte preamble is not zeroed: it can carry data outside the dataset",
        )


def _check_meta(check: _FileState, meta: _Data, ds: _Data) -> None:
    if not check.ctx.rules.copy:
        for tag, keyword in _FORBIDDEN_META.items():
            if tag in meta:
                check.add(
                    keyword,
                    Category.FILE_META,
                    "the file meta names the sender or holds private data",
                )
    stored = _text(meta, 0x00020003)  # read from the bytes: pydicom logs bad values
    own = _text(ds, _SOP_INSTANCE_UID)
    if stored and own and stored != own:
        check.add(
            "MediaStorageSOPInstanceUID",
            Category.INVALID_VALUE,
            "differs from the dataset's SOP Instance UID",
        )


def _conform_sequence(
    check: _FileState, ds: _Data, node: _Node, expect: _Expect, letters: frozenset[str]
) -> bool:
    """Conformance of a sequence; False when the sequence itself is a finding."""
    count = ds.count(node)
    if "K" in letters or "C" in letters:
        return True
    if letters == {"X"}:
        _removed(check, node, expect)
        return False
    if count and letters <= {"X", "Z"}:
        check.add(
            node.path,
            Category.NOT_EMPTIED,
            f"holds {count} item(s), but the profile empties it ({expect.why})",
        )
        return False
    return True


def _removed(check: _FileState, node: _Node, expect: _Expect) -> None:
    if node.private:
        why = (
            "a private element without a private creator"
            if not node.creator
            else "a private element the profile does not keep"
        )
        check.add(node.path, Category.PRIVATE_ELEMENT, f"{why} ({expect.why})")
    elif expect is _UNKNOWN:
        check.add(node.path, Category.UNKNOWN_ELEMENT, expect.why)
    else:
        check.add(
            node.path,
            Category.REMOVED_PRESENT,
            f"present, but the profile removes it ({expect.why})",
        )


# Type 2C attributes the table removes but PS3.3 may require (``required_with`` in the
# package's data/conditions.toml): empty, at the top level, they carry nothing.
_MAY_STAY_EMPTY: Final = frozenset(c.tag for c in conditions() if c.required_with)


def _conform(
    check: _FileState, node: _Node, values: list[str], expect: _Expect, letters: frozenset[str]
) -> None:
    if "K" in letters or "C" in letters:
        return
    empty = not values if node.vr in _STRING_VRS else _empty_binary(node)
    if letters == {"X"}:
        if not (empty and node.depth == 0 and node.tag in _MAY_STAY_EMPTY):
            _removed(check, node, expect)
        return
    if empty:
        return
    if letters <= {"X", "Z"}:
        check.add(
            node.path,
            Category.NOT_EMPTIED,
            f"has a value, but the profile empties or removes it ({expect.why})",
        )
        return
    if node.vr != "UI" and values and _replaced(letters):
        check.pending.append((node, expect.why, letters, expect.value))


def _unused_creators(check: _FileState, creators: Mapping[int, str], used: set[int]) -> None:
    """Private creators (tag -> path) whose block holds no element."""
    for tag, path in creators.items():
        if tag not in used:
            check.add(
                path,
                Category.PRIVATE_CREATOR,
                "a private creator whose block holds no element",
            )


def _original_kept(check: _FileState) -> None:
    """Against the matched input: original values kept where the profile replaces them."""
    original = check.original
    for node, why, letters, literal in check.pending:
        before = original.get(node.key)
        values, _legal = _values(node)
        if before is None or _joined(values) != before[1].casefold():
            continue
        if "R" in letters and _joined(values) in _NOT_IDENTIFYING:
            continue
        if literal is not None and _joined(values) == literal.casefold():
            continue  # the rule's own value, which the input happened to hold already
        what = "a shifted date" if letters == {"S"} else "a new value"
        check.add(
            node.path,
            Category.ORIGINAL_KEPT,
            f"the original value was kept where the profile demands {what} ({why})"
            + check.ctx.value("\\".join(values)),
        )
