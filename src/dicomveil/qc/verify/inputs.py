"""The originals: where they are (files, zip members) and what each contributes to the
checks (needles, values the output must not keep, the instance UIDs it defines)."""

from __future__ import annotations

import os
import re
import warnings
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Final, NamedTuple

from pydicom.dataelem import RawDataElement

from dicomveil.qc.verify.elements import (
    _CHARSET,
    _KEYWORDS,
    _PIXEL_TAGS,
    _SOP_INSTANCE_UID,
    _creator_text,
    _Data,
    _dictionary_vr,
    _encodings,
    _is_instance_uid_element,
    _items,
    _keyword,
    _Node,
    _nodes,
    _Role,
    _text,
    _uid_role,
    _values,
    _vr_of,
    _well_known,
)
from dicomveil.qc.verify.expectations import _replaced, _Rules
from dicomveil.qc.verify.needles import (
    _MIN_TEXT,
    _NEEDLE_KEYWORDS,
    _NEEDLE_VRS,
    _VENDOR_KEYWORDS,
    _forms,
    _meaningful,
)
from dicomveil.qc.verify.reading import (
    _EMPTY,
    _EXPLICIT,
    _HEAD,
    _IMPLICIT,
    _LENGTH,
    _LONG_VRS,
    _UNDEFINED,
    _VRS,
    _DeclineError,
    _new_raw,
    _Parser,
    _Read,
    _read_header,
    _ShortError,
)
from dicomveil.qc.verify.report import Category


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
        base = Path(folder)
        for name in sorted(names):
            yield base / name


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
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))  # no file object
    except OSError:
        return False
    try:
        os.lseek(fd, 128, os.SEEK_SET)
        return os.read(fd, 4) == b"DICM"
    except OSError:
        return False
    finally:
        os.close(fd)


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
    are then given again). Read and walked at once (:class:`_InputWalk`) when it can be,
    else read (by verify's reader or pydicom), then walked."""
    found: _Found = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sop = _walk_input(source, rules, found)
        if sop is None:
            read = _read_input(source, rules)
            if read is None:
                return None
            sop = _text(read.data, _SOP_INSTANCE_UID)
            found.clear()
            _walk_values(read.meta, rules, found, ("ascii",))
            _walk_values(read.data, rules, found, ("ascii",))
        elif not sop:
            return None  # not a composite object
    facts = _InputFacts(source, sop)
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


class _Contribution(NamedTuple):
    """What one input element adds to its file's facts (a tuple: made for every value seen
    first; compared by identity, as the memo gives the same one back)."""

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
    # As ``sequences``, for sequences :class:`_InputWalk` parsed itself: bytes known to read
    # well, which it then need not parse again.
    walked: ClassVar[
        dict[tuple[object, ...], tuple[tuple[tuple[int, ...], _Contribution], ...]]
    ] = {}

    @classmethod
    def of(cls, rules: _Rules) -> type[_Memo]:
        parts = (cls.elements, cls.sequences, cls.given, cls.walked)
        if cls.rules is not rules or sum(len(p) for p in parts) >= _MAX_MEMO:
            cls.rules = rules
            for part in parts:
                part.clear()
        return cls


_MAX_MEMO: Final = 1 << 17
_MEMO_BYTES: Final = 1024  # longer element values seldom repeat
_MEMO_SEQUENCE_BYTES: Final = 1 << 16


class _Template(NamedTuple):
    """What an element's contribution depends on but its value: the same for every element
    of one (tag, VR, creator, depth, file meta or not), worked out once (see
    :func:`_template`). A value seen first then costs its decoding and its needles only."""

    wanted: bool  # can hold a needle or a value the output must not keep
    replaced: str | None  # the VR, when the output must not keep the value
    defines: bool  # instance UIDs the object or an item defines
    vocabulary: bool  # codes and vendor names kept: their words are no one's
    kept: bool  # kept on purpose
    uid: bool  # a UI element of instance UIDs: its values are needles as they are
    vr: str
    keyword: str
    private: bool
    replace_uids: bool
    temporal_kept: bool


def _template(node: _Node, rules: _Rules) -> _Template:
    """The template of a node's element (remembered by the rules' memo key)."""
    key = (node.tag, node.vr, node.creator, node.depth, node.key[0] >> 16 == 0x0002)
    known = _TEMPLATES.get(key)
    if known is None or _TEMPLATES_OF[0] is not rules:
        if _TEMPLATES_OF[0] is not rules:
            _TEMPLATES.clear()
            _TEMPLATES_OF[0] = rules
        expect, letters = rules.decide(node)
        vr = node.vr
        known = _TEMPLATES[key] = _Template(
            wanted=_wanted(node, letters),
            replaced=vr if vr == "UI" or _replaced(letters) else None,
            defines=vr == "UI" and _uid_role(node) is _Role.DEFINED,
            vocabulary="K" in letters and _vocabulary(node),
            kept=expect.explicit and "K" in letters,
            uid=vr == "UI" and (node.private or _is_instance_uid_element(node.keyword)),
            vr=vr,
            keyword=node.keyword,
            private=node.private,
            replace_uids=rules.replace_uids,
            temporal_kept=rules.temporal_kept,
        )
    return known


_TEMPLATES: dict[tuple[object, ...], _Template] = {}  # per process, for one _Rules
_TEMPLATES_OF: list[_Rules | None] = [None]


def _contribution(node: _Node, rules: _Rules) -> _Contribution:
    """What an input element adds to its file's facts."""
    template = _template(node, rules)
    if not template.wanted:
        return _NOTHING
    return _build(template, _values(node)[0])


def _build(t: _Template, values: list[str]) -> _Contribution:
    """A contribution from its template and the element's values."""
    if not values:
        return _NOTHING
    replaced = (t.replaced, "\\".join(values)) if t.replaced is not None else None
    defined = tuple(v for v in values if not _well_known(v)) if t.defines else ()
    kept_texts: list[str] = []
    needles: list[tuple[str, Category]] = []
    if t.vocabulary:
        # Codes and vendor names the profile keeps (ImageType, Manufacturer, ...) identify
        # no one: a name component or institution equal to one of their words is noise.
        for value in values:
            kept_texts.append(value)
            kept_texts.extend(w for w in _WORD_SPLIT.split(value) if len(w) >= _MIN_TEXT)
    forms: Iterable[tuple[str, Category, bool]]
    if t.vr == "UI":  # _forms of a UID, without its cache: instance UIDs are all new
        forms = [(v, Category.UID, _meaningful(v)) for v in values if t.uid and not _well_known(v)]
    elif len(values) == 1:
        forms = _forms(t.vr, t.keyword, t.private, values[0])
    else:
        forms = [f for v in values for f in _forms(t.vr, t.keyword, t.private, v)]
    for text, category, meaningful in forms:
        if category is Category.UID:
            # With UIDs replaced, a kept private element's UIDs are replaced too.
            if not t.replace_uids or (t.kept and not t.private):
                kept_texts.append(text)
            elif meaningful:  # a "UID" such as "0" identifies nothing and matches anything
                needles.append((text, category))
        elif category is Category.TIME and t.temporal_kept:
            continue
        elif t.kept:
            kept_texts.append(text)
        elif meaningful:
            needles.append((text, category))
    return _Contribution(replaced, defined, tuple(kept_texts), tuple(needles))


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

    skip = None if ds.filtered else rules.skip  # verify's reader left those out already
    for node in _nodes(ds, base, key, prefix, encodings, depth, skip, taken):
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
        contribution = _contribution(node, rules)
        if memo is not None:
            known[memo] = contribution
        if contribution is not _NOTHING:
            found.append((node.key, contribution))


class _FallbackError(Exception):
    """The one-pass walk cannot give what reading, then walking gives: they do it."""


def _walk_input(source: str, rules: _Rules, found: _Found) -> str | None:
    """An input's header walked as it is read (:class:`_InputWalk`), into ``found``: its
    SOP Instance UID ("" when it has none), or None when it must be read, then walked (what
    ``found`` holds is then to be dropped)."""
    try:
        path = Path(source)
        if not path.exists():
            return _InputWalk(_source_bytes(source), True, rules).facts(found)
        with path.open("rb") as fh:
            head = fh.read(_HEAD)
            try:
                return _InputWalk(head, len(head) < _HEAD, rules).facts(found)
            except _ShortError:
                head += fh.read()
        found.clear()
        return _InputWalk(head, True, rules).facts(found)
    except Exception:  # declined, damaged, or unusual: read first, walk after
        return None


class _InputWalk(_Parser):
    """An input's top level walked as verify's reader reads it, in one pass.

    Reading an input into a :class:`_Data` and walking it after iterates every element
    twice and builds a tuple for each; most contribute what an earlier file's same bytes
    contributed. Here each element read is looked up in the memo at once, and a sequence
    whose bytes this walk parsed before is not parsed again (its contributions are known).
    What it finds is what reading, then :func:`_walk_values` finds, element by element:
    the reader's checks decline the same files (they are its own), the memo keys are the
    same, and whatever it does not handle the same way ends it (then the file is read,
    then walked): a Specific Character Set after an element that depends on it, anything
    the reader declines. Items of a sequence not seen before are read and walked as usual.
    """

    def __init__(self, buf: bytes, complete: bool, rules: _Rules) -> None:
        super().__init__(buf, complete, True, skip=rules.skip)
        self.rules = rules

    def facts(self, found: _Found) -> str:
        """The SOP Instance UID ("" when none); what the header contributes, into found."""
        meta, position = self.start()
        _walk_values(meta, self.rules, found, ("ascii",))
        return self.top(position, found)

    def top(self, position: int, found: _Found) -> str:
        buf, limit, implicit, rules = self.buf, len(self.buf), self.implicit, self.rules
        memo = _Memo.of(rules)
        known = memo.elements
        skip, keywords = rules.skip, _KEYWORDS
        unpack_explicit, unpack_implicit, unpack_length = (
            _EXPLICIT.unpack_from, _IMPLICIT.unpack_from, _LENGTH.unpack_from,
        )  # fmt: skip
        vrs, long_vrs, empty, new_raw, raw_type = _VRS, _LONG_VRS, _EMPTY, _new_raw, RawDataElement
        encodings: tuple[str, ...] = ("ascii",)
        touched = False  # an element that depends on the character set went by
        creators: dict[tuple[int, int], str] = {}
        sop = ""
        last = -1
        while position < limit:
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
                    raise _DeclineError  # an item or delimiter at the top level, or no VR
                if vr in long_vrs:
                    if value_at + 4 > limit:
                        self.need(value_at + 4, limit)
                    (length,) = unpack_length(buf, value_at)
                    value_at += 4
            tag = group << 16 | number
            if tag <= last:
                raise _DeclineError
            last = tag
            if group >= 0x7FE0:
                if group == 0xFFFE:
                    raise _DeclineError
                if tag in _PIXEL_TAGS:
                    self.pixels = position
                    return sop
            items: list[_Data] | None = None
            if length == _UNDEFINED:
                vr, items, value_end, position = self.undefined(tag, vr, value_at, limit)
                value: bytes | None = buf[value_at:value_end]
            else:
                position = value_at + length
                if position > limit:
                    self.need(position, limit)
                if not group & 1 and tag != _CHARSET:  # what the reader leaves out
                    if vr is None or vr == "UN":
                        known_vr = _dictionary_vr(tag)
                        checked = known_vr if known_vr and " or " not in known_vr else "UN"
                    else:
                        checked = vr
                    if skip[(tag, checked)]:
                        continue
                value = buf[value_at:position] if length else empty[vr]
                if vr == "UN" and not group & 1 and _dictionary_vr(tag) == "SQ":
                    raise _DeclineError  # pydicom reads such a sequence its own way
            element = new_raw(
                raw_type, (tag, vr, length, value, value_at, implicit, True, True, False)
            )
            # The rest as _nodes and _walk_values have it.
            effective = vr
            if type(effective) is not str or effective == "UN" or len(effective) != 2:
                effective = _vr_of(element, tag)
            creator = ""
            if group & 1:
                if number > 0x00FF:
                    creator = creators.get((group, number >> 8), "")
                elif number >= 0x0010:
                    creators[(group, number)] = _creator_text(element)
                    continue  # a private creator: nothing of its own
            elif tag == _CHARSET:
                if touched:
                    raise _FallbackError  # what went before was read with others
                encodings, _unknown = _encodings(_Data({tag: element}, {}), ("ascii",))
            touched = True
            raw = value if type(value) is bytes else None
            if tag == _SOP_INSTANCE_UID:
                sop = raw.decode("latin-1").strip("\x00 ") if raw is not None else ""
            if effective == "SQ":
                self.sequence(element, creator, encodings, items, found)
                continue
            memo_key: tuple[object, ...] | None = None
            if raw is not None and len(raw) <= _MEMO_BYTES:
                memo_key = (tag, effective, creator, 0, group == 0x0002, encodings, raw)
                contribution = known.get(memo_key)
                if contribution is not None:
                    if contribution is not _NOTHING:
                        found.append(((tag,), contribution))
                    continue
            keyword = "" if group & 1 else keywords.get(tag)
            if keyword is None:
                keyword = keywords[tag] = _keyword(tag)
            node = _Node(
                tag, effective, keyword, "", (tag,), raw, element, value_at, length, creator,
                encodings, 0, 0, bool(group & 1),
            )  # fmt: skip
            contribution = _contribution(node, rules)
            if memo_key is not None:
                known[memo_key] = contribution
            if contribution is not _NOTHING:
                found.append(((tag,), contribution))
        if not self.complete:
            raise _ShortError
        return sop

    def sequence(
        self,
        element: RawDataElement,
        creator: str,
        encodings: tuple[str, ...],
        items: list[_Data] | None,
        found: _Found,
    ) -> None:
        """A top-level sequence, as :func:`_add_sequence` has it; one of defined length
        whose bytes this walk parsed before is not parsed again."""
        tag, raw, memo = element.tag, element.value, _Memo.of(self.rules)
        key: tuple[object, ...] | None = None
        if isinstance(raw, bytes) and len(raw) <= _MEMO_SEQUENCE_BYTES:
            key = (tag, creator, 0, encodings, self.implicit, True, element.length, raw)
            known = memo.walked.get(key) if items is None else None
            if known is not None:
                found.extend(((tag, *suffix), c) for suffix, c in known)
                return
        if items is None:  # defined length: its value, from where it starts
            start = element.value_tell
            items = self.items(start, start + element.length)
        inner: _Found = []
        for index, item in enumerate(items):
            _walk_values(item, self.rules, inner, encodings, 0, (tag, index), "", 1)
        found.extend(inner)
        if key is not None and element.length != _UNDEFINED:
            memo.walked[key] = tuple((k[1:], c) for k, c in inner)


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
