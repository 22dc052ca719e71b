"""What each element of an original contributes to the checks: needles for the leak search,
values the output must not keep, texts kept on purpose, the instance UIDs it defines; and the
per-process memo that spares a series' repeated elements their decoding.

:func:`_walk_values` walks a dataset read (by verify's reader or pydicom) into contributions;
:class:`~dicomveil.qc.verify.inputs._InputWalk` does the same for a header as it reads it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import ClassVar, Final, NamedTuple

from pydicom.dataelem import RawDataElement

from dicomveil.cleaners.text import not_names
from dicomveil.qc.verify.elements import (
    _Data,
    _encodings,
    _is_instance_uid_element,
    _items,
    _Node,
    _nodes,
    _Role,
    _uid_role,
    _values,
    _well_known,
)
from dicomveil.qc.verify.expectations import _replaced, _Rules
from dicomveil.qc.verify.forms import (
    _DEVICE_KEYWORDS,
    _MIN_TEXT,
    _NEEDLE_KEYWORDS,
    _NEEDLE_VRS,
    _VENDOR_KEYWORDS,
    _VOCABULARY_KEYWORDS,
    _forms,
    _meaningful,
)
from dicomveil.qc.verify.report import Category


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
        """The memo for ``rules``: emptied first when it held another rules' or grew large.

        Parameters
        ----------
        rules : _Rules
            The profile's rules the contributions were worked out with.

        Returns
        -------
        type[_Memo]
            The memo (class attributes: one per process).
        """
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
    wholesale: bool  # kept only as a list profile keeps all it does not list
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
            wholesale=expect.wholesale,
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
        # no one: a name component or institution equal to one of them or their words is
        # noise ("Perfusion^MCA Stroke", a phantom, ImageType PERFUSION); in a code meaning,
        # only a clinical term ("Abdomen" in "Chest, Abdomen and Pelvis"): any other word
        # of it may be the patient's own ("Head of Smith", a local code).
        vendor = t.keyword in _VENDOR_KEYWORDS or t.vr == "CS"  # defined terms: PERFUSION
        terms = not_names()  # clinical, vendor and function words (the cleaner's word list)
        for value in values:
            words = [w for w in _WORD_SPLIT.split(value) if w]
            if vendor or all(w.casefold() in terms or w.isdigit() for w in words):
                kept_texts.append(value)
            kept_texts.extend(
                w for w in words if len(w) >= _MIN_TEXT and (vendor or w.casefold() in terms)
            )
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
        elif t.kept and not (t.wholesale and category in _PERSONAL):
            kept_texts.append(text)
        elif meaningful:
            # a person's name, ID or phone number a list profile keeps only because it
            # keeps all it does not list is still looked for (Other Patient Names under
            # lab-dicombrowser: the patient's name was never looked for, found by a
            # black-box test); one a rule or an option keeps is kept on purpose
            needles.append((text, category))
    if t.kept and t.vr in _KEPT_TEXT_VRS and t.keyword in _KEPT_ORGANISATION_KEYWORDS:
        # An organisation's name kept on purpose (an institution's under
        # retain-institution-identity) is in the output by the profile's decision: a word
        # of it that is also a word of an identifier (a physician the animal hospital is
        # named after, the issuer "CCHS" of "CCHS CLEVELAND CLINIC") discloses nothing more
        # where else it stands. Not any text kept: a list preset keeps descriptions, whose
        # words would then never be looked for (a black-box test: verify of a
        # lab-dicombrowser output reported no name at all).
        for value in values:
            kept_texts.extend(
                w for w in _WORD_SPLIT.split(value) if len(w) >= _MIN_TEXT and not w.isdigit()
            )
    return _Contribution(replaced, defined, tuple(kept_texts), tuple(needles))


_KEPT_TEXT_VRS: Final = frozenset({"LO", "SH", "ST", "LT", "UT", "UC"})
_PERSONAL: Final = frozenset({Category.NAME, Category.ID, Category.PHONE})
_KEPT_ORGANISATION_KEYWORDS: Final = _DEVICE_KEYWORDS | {
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "IssuerOfPatientID",
    "IssuerOfAdmissionID",
    "IssuerOfAccessionNumberSequence",
}


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
            node.tag,
            node.creator,
            node.depth,
            encodings,
            element.is_implicit_VR,
            element.is_little_endian,
            element.length,
            node.raw,
        )
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


_WORD_SPLIT: Final = re.compile(r"[^0-9A-Za-z]+")


def _vocabulary(node: _Node) -> bool:
    """Coded values, code meanings and vendor names: never a person's, whatever the input
    says; labels and other texts are not: an overlay label may carry the patient's name."""
    return not node.private and (node.vr == "CS" or node.keyword in _VOCABULARY_KEYWORDS)


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
