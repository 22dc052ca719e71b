"""The originals: where they are (files, zip members) and what each contributes to the
checks (needles, values the output must not keep, the instance UIDs it defines)."""

from __future__ import annotations

import os
import re
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Final

from pydicom.dataelem import RawDataElement

from .elements import (
    _SOP_INSTANCE_UID,
    _Data,
    _encodings,
    _items,
    _Node,
    _nodes,
    _Role,
    _text,
    _uid_role,
    _values,
    _well_known,
)
from .expectations import _Expect, _replaced, _Rules
from .needles import _MIN_TEXT, _NEEDLE_KEYWORDS, _NEEDLE_VRS, _VENDOR_KEYWORDS, _needles_of
from .reading import _Read, _read_header
from .report import Category


@dataclass
class _InputFacts:
    """What one input gives the checks. ``needles``, ``kept`` and ``defined`` leave out what
    this process already gave with an input that comes earlier in the run's order (see
    :class:`_Memo`): the caller merges them in that order, first category first, so nothing
    it would keep is missing; and a series repeats most of them, which cost their sending
    and merging."""

    source: str
    sop_uid: str
    needles: dict[str, Category] = field(default_factory=dict)
    kept: set[str] = field(default_factory=set)
    # Key -> (VR, value) of what the output must not keep: replaced values and UIDs.
    replaced: dict[tuple[int, ...], tuple[str, str]] = field(default_factory=dict)
    defined: set[str] = field(default_factory=set)


def _files(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
        return

    def fail(error: OSError) -> None:
        raise error

    for folder, dirs, names in os.walk(root, onerror=fail):
        dirs.sort()
        for name in sorted(names):
            yield Path(folder) / name


def _sources(root: Path) -> Iterator[str]:
    """Every input: files under ``root`` and members of zip archives (``archive!member``)."""
    for path in _files(root):
        # The prefix first: is_zipfile reads up to 64 KiB at the end of a file that is not one.
        if not _has_prefix(path) and zipfile.is_zipfile(path):
            try:
                with zipfile.ZipFile(path) as archive:
                    names = sorted(i.filename for i in archive.infolist() if not i.is_dir())
            except (zipfile.BadZipFile, OSError):
                continue
            for name in names:
                yield f"{path}!{name}"
        else:
            yield str(path)


def _has_prefix(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def _source_bytes(source: str) -> bytes:
    path, _, member = source.partition("!")
    if member and not Path(source).exists():
        with zipfile.ZipFile(path) as archive:
            return archive.read(member)
    return Path(source).read_bytes()


def _read_input(source: str, rules: _Rules | None = None) -> _Read | None:
    """An input's header (a file's, or a zip member's, read in memory); ``None`` when it is
    not a DICOM composite object. With ``rules``, what the input walk passes over
    (:meth:`_Rules.unwanted`) may be left out of it."""
    skip = rules.skip if rules is not None else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            path = Path(source)
            if path.exists():
                read = _read_header(path, None, skip)
            else:
                read = _read_header(None, _source_bytes(source), skip)
            if not _text(read.data, _SOP_INSTANCE_UID):
                return None
    except Exception:  # not DICOM, or damaged: pydicom raises many kinds
        return None
    return read


def _input_facts(source: str, rules: _Rules, order: int = 0) -> _InputFacts | None:
    """The facts of the input ``source``, the ``order``-th of the run (0 for all: repeats
    are then given again)."""
    read = _read_input(source, rules)
    if read is None:
        return None
    facts = _InputFacts(source, _text(read.data, _SOP_INSTANCE_UID))
    found: list[tuple[tuple[int, ...], _Contribution]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _walk_values(read.meta, rules, found, ("ascii",))
        _walk_values(read.data, rules, found, ("ascii",))
    replaced, needles, given = facts.replaced, facts.needles, _Memo.of(rules).given
    for key, contribution in found:
        if contribution.replaced is not None:
            replaced[key] = contribution.replaced
        earlier = given.get(id(contribution))
        if earlier is not None and earlier[0] is contribution and earlier[1] < order:
            continue  # its needles, kept texts and UIDs went with an earlier input
        given[id(contribution)] = (contribution, order)  # held: its id is not reused
        if contribution.defined:
            facts.defined.update(contribution.defined)
        if contribution.kept:
            facts.kept.update(contribution.kept)
        for text, category in contribution.needles:
            if text not in needles:
                needles[text] = category
    return facts


@dataclass(frozen=True, slots=True)
class _Contribution:
    """What one input element adds to its file's facts."""

    replaced: tuple[str, str] | None
    defined: tuple[str, ...]
    kept: tuple[str, ...]
    needles: tuple[tuple[str, Category], ...]


_NOTHING: Final = _Contribution(None, (), (), ())
_Found = list[tuple[tuple[int, ...], _Contribution]]  # (element key, contribution), in order


class _Memo:
    """Per process, for one :class:`_Rules` at a time: the same bytes at the same place
    contribute the same. A series repeats its patient's, study's and device's elements, and
    whole sequences (the referenced study, the request, the codes): those are neither decoded
    nor parsed again. Keys hold everything a contribution depends on but the item indexes."""

    rules: ClassVar[_Rules | None] = None
    elements: ClassVar[dict[tuple[object, ...], _Contribution]] = {}
    sequences: ClassVar[
        dict[tuple[object, ...], tuple[tuple[tuple[int, ...], _Contribution], ...]]
    ] = {}
    # id -> (contribution, the earliest input it went with, in the run's order)
    given: ClassVar[dict[int, tuple[_Contribution, int]]] = {}

    @classmethod
    def of(cls, rules: _Rules) -> type[_Memo]:
        full = len(cls.elements) + len(cls.sequences) + len(cls.given) >= _MAX_MEMO
        if cls.rules is not rules or full:
            cls.rules = rules
            cls.elements.clear()
            cls.sequences.clear()
            cls.given.clear()
        return cls


_MAX_MEMO: Final = 1 << 17
_MEMO_BYTES: Final = 1024  # longer element values seldom repeat
_MEMO_SEQUENCE_BYTES: Final = 1 << 16


def _contribution(
    node: _Node, rules: _Rules, expect: _Expect, letters: frozenset[str]
) -> _Contribution:
    values, _legal = _values(node)
    if not values:
        return _NOTHING
    replaced = None
    defined: list[str] = []
    kept_texts: list[str] = []
    needles: list[tuple[str, Category]] = []
    if node.vr == "UI" or _replaced(letters):
        replaced = (node.vr, "\\".join(values))
        if node.vr == "UI" and _uid_role(node) is _Role.DEFINED:
            defined.extend(v for v in values if not _well_known(v))
    kept = expect.explicit and "K" in letters
    if "K" in letters and _vocabulary(node):
        # Codes and vendor names the profile keeps (ImageType, Manufacturer, ...) identify
        # no one: a name component or institution equal to one of their words is noise.
        for value in values:
            kept_texts.append(value)
            kept_texts.extend(w for w in _WORD_SPLIT.split(value) if len(w) >= _MIN_TEXT)
    for text, category, meaningful in _needles_of(node, values):
        if category is Category.UID:
            # With UIDs replaced, a kept private element's UIDs are replaced too.
            if not rules.replace_uids or (kept and not node.private):
                kept_texts.append(text)
            else:
                needles.append((text, category))
        elif category is Category.TIME and rules.temporal_kept:
            continue
        elif kept:
            kept_texts.append(text)
        elif meaningful:
            needles.append((text, category))
    return _Contribution(replaced, tuple(defined), tuple(kept_texts), tuple(needles))


def _add_sequence(
    found: _Found, ds: _Data, node: _Node, rules: _Rules, encodings: tuple[str, ...]
) -> None:
    key: tuple[object, ...] | None = None
    memo = _Memo.of(rules)
    element = node.element
    if (
        isinstance(element, RawDataElement)
        and node.raw is not None
        and len(node.raw) <= _MEMO_SEQUENCE_BYTES
    ):
        key = (
            node.tag, node.creator, node.depth, encodings, element.is_implicit_VR,
            element.is_little_endian, element.length, node.raw,
        )  # fmt: skip
        known = memo.sequences.get(key)
        if known is not None:
            found.extend((node.key + suffix, c) for suffix, c in known)
            return
    inner: _Found = []
    for item, item_base, item_key, item_prefix in _items(ds, node):
        _walk_values(
            item, rules, inner, encodings, item_base, item_key, item_prefix, node.depth + 1
        )
    found.extend(inner)
    if key is not None:
        size = len(node.key)
        memo.sequences[key] = tuple((k[size:], c) for k, c in inner)


def _walk_values(
    ds: _Data,
    rules: _Rules,
    found: _Found,
    inherited: tuple[str, ...],
    base: int = 0,
    key: tuple[int, ...] = (),
    prefix: str = "",
    depth: int = 0,
) -> None:
    encodings, _unknown = _encodings(ds, inherited)
    known = _Memo.of(rules).elements

    def taken(tag: int, vr: str, creator: str, raw: bytes) -> bool:
        """The memo first: on a hit, no node, no decision, no value."""
        if tag >> 16 & 1 and 0x0010 <= tag & 0xFFFF <= 0x00FF:
            return True  # a private creator: nothing of its own
        if vr == "SQ" or len(raw) > _MEMO_BYTES:
            return False
        in_meta = (key[0] if key else tag) >> 16 == 0x0002
        contribution = known.get((tag, vr, creator, depth, in_meta, encodings, raw))
        if contribution is None:
            return False
        if contribution is not _NOTHING:
            found.append(((*key, tag), contribution))
        return True

    for node in _nodes(ds, base, key, prefix, encodings, depth, rules.skip, taken):
        if node.is_creator:
            continue
        if node.vr == "SQ":
            _add_sequence(found, ds, node, rules, encodings)
            continue
        raw = node.raw
        memo: tuple[object, ...] | None = None
        if raw is not None and len(raw) <= _MEMO_BYTES:
            in_meta = node.key[0] >> 16 == 0x0002
            memo = (node.tag, node.vr, node.creator, depth, in_meta, encodings, raw)
        expect, letters = rules.decide(node)
        contribution = (
            _contribution(node, rules, expect, letters) if _wanted(node, letters) else _NOTHING
        )
        if memo is not None:
            known[memo] = contribution
        if contribution is not _NOTHING:
            found.append((node.key, contribution))


_WORD_SPLIT: Final = re.compile(r"[^0-9A-Za-z]+")


def _vocabulary(node: _Node) -> bool:
    """Coded values and vendor names: never a person's, whatever the input says (labels
    and other texts are not: an overlay label may carry the patient's name)."""
    return not node.private and (node.vr == "CS" or node.keyword in _VENDOR_KEYWORDS)


def _wanted(node: _Node, letters: frozenset[str]) -> bool:
    """Whether an input element can hold a needle or a value the output must not keep."""
    return (
        node.vr in _NEEDLE_VRS
        or node.keyword in _NEEDLE_KEYWORDS
        or node.keyword.endswith("ID")
        or (node.private and node.vr == "UN")
        or _replaced(letters)
        or ("K" in letters and _vocabulary(node))
    )


def _aligned(ds: _Data) -> dict[tuple[int, ...], tuple[str, str]]:
    """Key -> (VR, joined value) of every string element of an input, at any depth."""
    found: dict[tuple[int, ...], tuple[str, str]] = {}

    def collect(sub: _Data, inherited: tuple[str, ...], key: tuple[int, ...]) -> None:
        encodings, _unknown = _encodings(sub, inherited)
        for node in _nodes(sub, 0, key, "", encodings, 0):
            if node.vr == "SQ":
                for item, _base, item_key, _prefix in _items(sub, node):
                    collect(item, encodings, item_key)
                continue
            values, _legal = _values(node)
            if values:
                found[node.key] = (node.vr, "\\".join(values))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        collect(ds, ("ascii",), ())
    return found
