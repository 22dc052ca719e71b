"""The originals' facts: what each input gives the checks (needles, values the output must not
keep, the instance UIDs it defines), its header read and walked in one pass where it can be
(:class:`_InputWalk`), else read, then walked (:func:`~.contributions._walk_values`).

Where the inputs are and how a header is read: :mod:`~dicomveil.qc.verify.sources`; what an
element contributes: :mod:`~dicomveil.qc.verify.contributions`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, cast

from pydicom.dataelem import RawDataElement

from dicomveil.qc.verify.contributions import (
    _MEMO_BYTES,
    _MEMO_SEQUENCE_BYTES,
    _NOTHING,
    _contribution,
    _Found,
    _Memo,
    _walk_values,
)
from dicomveil.qc.verify.elements import (
    _CHARSET,
    _KEYWORDS,
    _SOP_INSTANCE_UID,
    _creator_text,
    _Data,
    _encodings,
    _keyword,
    _Node,
    _text,
    _vr_of,
)
from dicomveil.qc.verify.expectations import _Rules
from dicomveil.qc.verify.reading import _UNDEFINED, _Parser, _read_while_short
from dicomveil.qc.verify.report import Category
from dicomveil.qc.verify.sources import _read_input, _source_bytes


@dataclass
class _InputFacts:
    """What one input gives the checks. ``needles``, ``kept`` and ``defined`` leave out what
    this process already gave with an input that comes earlier in the run's order (see
    :class:`_Memo`): the caller merges them in that order, first category first, so nothing
    it would keep is missing; and a series repeats most of them, which cost their sending
    and merging."""

    source: str
    sop_uid: str
    # Its patient, as the input names them (PatientID, else PatientName; "" when neither):
    # what the release gate pools a patient's needles by.
    patient: str = ""
    needles: dict[str, Category] = field(default_factory=dict)
    kept: set[str] = field(default_factory=set)
    # Key -> (VR, value) of what the output must not keep: replaced values and UIDs.
    replaced: dict[tuple[int, ...], tuple[str, str]] = field(default_factory=dict)
    defined: set[str] = field(default_factory=set)


def _input_facts(source: str, rules: _Rules, order: int = 0) -> _InputFacts | None:
    """The facts of the input ``source``, the ``order``-th of the run (0 for all: repeats
    are then given again). Read and walked at once (:class:`_InputWalk`) when it can be,
    else read (by verify's reader or pydicom), then walked."""
    found: _Found = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        walked = _walk_input(source, rules, found)
        if walked is None:
            read = _read_input(source, rules)
            if read is None:
                return None
            sop, patient = _text(read.data, _SOP_INSTANCE_UID), _patient(read.data)
            found.clear()
            _walk_values(read.meta, rules, found, ("ascii",))
            _walk_values(read.data, rules, found, ("ascii",))
        else:
            sop, patient = walked
            if not sop:
                return None  # not a composite object
    facts = _InputFacts(source, sop, patient)
    replaced, needles, given = facts.replaced, facts.needles, _Memo.of(rules).given
    for key, contribution in found:
        if contribution.replaced is not None:
            replaced[key] = contribution.replaced
        if order:  # an input of a run's order (0: all are given, nothing to remember)
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


class _FallbackError(Exception):
    """The one-pass walk cannot give what reading, then walking gives: they do it."""


def _patient(data: _Data) -> str:
    """The patient as an input names them: PatientID, else PatientName ("" when neither)."""
    return _text(data, _PATIENT_ID) or _text(data, _PATIENT_NAME)


_PATIENT_ID: Final = 0x00100020
_PATIENT_NAME: Final = 0x00100010


def _walk_input(source: str, rules: _Rules, found: _Found) -> tuple[str, str] | None:
    """An input's header walked as it is read (:class:`_InputWalk`), into ``found``: its
    SOP Instance UID ("" when it has none) and its patient (:func:`_patient`), or None when
    it must be read, then walked (what ``found`` holds is then to be dropped)."""
    try:
        path = Path(source)
        if not path.exists():
            return _InputWalk(_source_bytes(source), True, rules).facts(found)
        with path.open("rb") as fh:

            def walk(head: bytes, complete: bool) -> tuple[str, str]:
                found.clear()  # what a walk of too few bytes found
                return _InputWalk(head, complete, rules).facts(found)

            return _read_while_short(fh, walk)[0]
    except Exception:  # declined, damaged, or unusual: read first, walk after
        return None


class _InputWalk(_Parser):
    """An input's top level walked as verify's reader reads it, in one pass.

    Reading an input into a :class:`_Data` and walking it after iterates every element
    twice and builds a tuple for each; most contribute what an earlier file's same bytes
    contributed. Here the top level is read leaving the items of its sequences of defined
    length unread, each element is looked up in the memo at once, and a sequence whose
    bytes this walk parsed before is not parsed again (its contributions are known).
    What it finds is what reading, then :func:`_walk_values` finds, element by element:
    the reader's checks decline the same files (it is the reader), the memo keys are the
    same, and whatever it does not handle the same way ends it (then the file is read,
    then walked): a Specific Character Set after an element that depends on it, anything
    the reader declines. Items of a sequence not seen before are read and walked as usual.
    """

    def __init__(self, buf: bytes, complete: bool, rules: _Rules) -> None:
        super().__init__(buf, complete, True, skip=rules.skip)
        self.rules = rules

    def facts(self, found: _Found) -> tuple[str, str]:
        """The SOP Instance UID ("" when none) and the patient (:func:`_patient`); what the
        header contributes goes into ``found``, in order. Raises :class:`_DeclineError`
        where verify's reader declines the file (pydicom reads it), :class:`_ShortError`
        where the buffer holds the start of the file and the header goes on past it,
        :class:`_FallbackError` for a Specific Character Set after an element that
        depends on it."""
        meta, position = self.start()
        rules = self.rules
        _walk_values(meta, rules, found, ("ascii",))
        data = self.top(position, lazy=True)
        known = _Memo.of(rules).elements
        keywords = _KEYWORDS
        encodings: tuple[str, ...] = ("ascii",)
        touched = False  # an element that depends on the character set went by
        creators: dict[tuple[int, int], str] = {}
        sop = ""
        # The rest as _nodes and _walk_values have it (verify's parser reads every element raw).
        for tag, element in cast("dict[int, RawDataElement]", data.elements).items():
            group = tag >> 16
            effective = element.VR
            if type(effective) is not str or effective == "UN" or len(effective) != 2:
                effective = _vr_of(element, tag)
            creator = ""
            if group & 1:
                number = tag & 0xFFFF
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
            value = element.value
            raw = value if type(value) is bytes else None
            if tag == _SOP_INSTANCE_UID:
                sop = raw.decode("latin-1").strip("\x00 ") if raw is not None else ""
            if effective == "SQ":
                self.sequence(element, creator, encodings, data.parsed_items(tag), found)
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
                tag,
                effective,
                keyword,
                "",
                (tag,),
                raw,
                element,
                element.value_tell,
                element.length,
                creator,
                encodings,
                0,
                0,
                bool(group & 1),
            )
            contribution = _contribution(node, rules)
            if memo_key is not None:
                known[memo_key] = contribution
            if contribution is not _NOTHING:
                found.append(((tag,), contribution))
        return sop, _patient(data)

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
