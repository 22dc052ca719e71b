"""The walk of one dataset: every element looked up in the compiled profile, its action
applied by the action's handler (:mod:`dicomveil.engine.handlers`), sequences recursed.

Elements the profile keeps unchanged are never decoded: pydicom's raw elements pass through
untouched. At the top level, the fate of most elements is one look-up per (tag, IOD),
remembered by the engine across datasets.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, MutableSequence
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import TYPE_CHECKING, Any, TypeGuard

from pydicom import config as _pydicom_config
from pydicom._uid_dict import UID_dictionary
from pydicom.datadict import dictionary_has_tag, dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag
from pydicom.valuerep import VR

from dicomveil.cleaners.base import as_list
from dicomveil.cleaners.structured import decision_in_structure, person_key, person_pseudonym
from dicomveil.cleaners.text import Identifiers
from dicomveil.engine.handlers import HANDLERS, At
from dicomveil.engine.report import ElementReport
from dicomveil.engine.values import (
    CLASS_UID_TAGS,
    ascii_value,
    check_length,
    collapse,
    creator_of,
    numeric_text,
    pad,
    text_of,
    vr_of,
)
from dicomveil.identity.dates import DateError, cap_age, shift_da, shift_dt
from dicomveil.io.encoding import Encoder
from dicomveil.profiles import render_template
from dicomveil.standard.actions import Action, Code, Decision, dummy_value
from dicomveil.standard.options import Option

if TYPE_CHECKING:
    from dicomveil.engine.core import Engine

_new_raw = tuple.__new__  # a RawDataElement without NamedTuple's Python-level constructor
_UID_TEXT = re.compile(r"^[0-9]+(\.[0-9]+){2,}$")
# Kept elements of these VRs still need a look: UIDs mapped, dates shifted, ages capped,
# sequences walked, unknown VRs resolved.
_SWEPT_VRS = frozenset({"UI", "DA", "DT", "AS", "SQ", "UN"})
# The VRs of PS3.5; an element read with other VR bytes is damaged and never copied.
_VALID_VRS = frozenset(vr.value for vr in VR)
_NUMERIC_STRING_VRS = frozenset({"DS", "IS"})  # kept as they are when they hold numbers
_PLAIN_VRS = _VALID_VRS - _SWEPT_VRS - _NUMERIC_STRING_VRS  # kept: no look needed
# VRs with a 32-bit length, like SQ: a sequence whose VR bytes were damaged into one of
# these still holds its items (UN is resolved by pydicom itself).
_DAMAGED_SEQUENCE_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UC", "UR", "UT"})
# Verdicts of the top-level fast path (see Walk._verdict).
KEPT, REMOVED, LOOK = object(), object(), object()
# The largest value of a sequence walked, or of a text cleaned, once per engine
# (Walk.sequence, Walk.cleaned_key).
_REMEMBERED_BYTES = 1 << 16
# Text VRs whose cleaned values an engine remembers (Walk.cleaned_key).
_REMEMBERED_TEXT_VRS = frozenset({"SH", "LO", "ST", "LT", "UT", "UC"})


# What an anonymised file's patient is called: no one's name (a file whose PatientName and
# private values were all set to "Anon" before it came here).
_PLACEHOLDERS = frozenset(
    {"anon", "anonymous", "anonymized", "anonymised", "unknown", "none", "test", "patient"}
)


@dataclass
class Walk:
    """State of one dataset's walk: template fields, the UID map, reports."""

    engine: Engine
    types: Mapping[str, str]  # the attribute Types of the IOD
    iod: str | None
    fields: dict[str, str]
    offset: int | None
    explain: bool
    uid_map: dict[str, str] = field(default_factory=dict)
    reports: list[ElementReport] = field(default_factory=list)
    identifiers: Identifiers | None = field(default=None, repr=False)  # for C of free text
    patient_name: str = field(default="", repr=False)
    patient_id: str = field(default="", repr=False)
    birth_date: str = field(default="", repr=False)
    structured: bool = False  # inside a sequence an option's C action cleans, or a D sequence
    dummy_text: bool = False  # inside a D sequence: texts the table keeps become dummies
    # each dataset's character sets (held with the dataset: its id is not reused meanwhile)
    _charsets: dict[int, tuple[Dataset, tuple[str, ...], str | tuple[str, ...]]] = field(
        default_factory=dict, repr=False
    )

    @cached_property
    def patient_marks(self) -> tuple[str, ...]:
        """The patient's name words (three letters or more), ID and birth date, folded: what
        a kept private value must not hold (:func:`~dicomveil.engine.handlers.keep`)."""
        words = re.split(r"[\^=\s,]+", self.patient_name)
        marks = {w.casefold() for w in words if len(w) >= 3}
        marks.update(v.casefold() for v in (self.patient_id, self.birth_date) if len(v) >= 4)
        return tuple(sorted(marks - _PLACEHOLDERS))

    # ---------------------------------------------------------------------------------------
    def dataset(self, ds: Dataset, path: tuple[str, ...]) -> None:
        """Walk every element of ``ds`` (at ``path``), applying the profile."""
        profile = self.engine.profile
        creators: dict[tuple[int, int], str] = {}
        used_blocks: set[tuple[int, int]] = set()
        creator_tags: list[int] = []
        fast = not self.explain  # nothing to report: skip the bookkeeping of apply
        verdicts = (
            self.engine.top_level_verdicts.setdefault(self.iod, {})
            if fast and not path and not self.structured
            else None
        )
        for tag, elem in list(ds.items()):
            # ``tag`` (pydicom's BaseTag, the dataset's own key) is used on the dataset; plain
            # ints for dicomveil's lookups, because BaseTag compares in Python. ``elem`` is
            # the element as stored: raw (undecoded) unless something decoded it.
            group, element = tag >> 16, tag & 0xFFFF
            if group in (0x0000, 0x0002):
                # Command or file meta elements in a dataset body are illegal; the writer
                # rebuilds the real file meta.
                self.remove(ds, tag, path, "command or file meta element inside the dataset")
                continue
            if group & 1:
                if element == 0 or element < 0x0010 or group < 0x0009 or group == 0xFFFF:
                    self.remove(ds, tag, path, "not a valid private element")
                elif element <= 0x00FF:
                    creators[(group, element)] = creator_of(ds, tag)
                    creator_tags.append(tag)
                else:
                    creator = creators.get((group, element >> 8))
                    if creator is None:
                        self.remove(ds, tag, path, "private element without a private creator")
                        continue
                    decision = profile.private.get((creator, group, element & 0xFF))
                    if decision is None:
                        decision = profile.private_default
                        dated = profile.private_dates.get(elem.VR or "")
                        if dated is not None:  # the profile's date policy
                            decision = dated
                    if fast and self.resolve(decision, tag, path) is Action.REMOVE:
                        del ds[tag]
                        continue
                    if self.apply(ds, tag, decision, path):
                        used_blocks.add((group, element >> 8))
                continue
            if element == 0:
                self.remove(ds, tag, path, "group length: recomputed or dropped on write")
                continue
            if path and isinstance(elem, RawDataElement):
                # A damaged length fails the file (the top level was checked before the
                # walk, by Engine.deidentify: check_lengths).
                check_length(int(tag), elem)
            if elem.VR != "SQ" and _is_sequence(int(tag)):
                if elem.VR in _DAMAGED_SEQUENCE_VRS and isinstance(elem, RawDataElement):
                    # A sequence with damaged VR bytes: read as the sequence it is (its items
                    # de-identified like any other), never copied as bytes; if its value does
                    # not parse as items, reading it fails the file.
                    elem = ds[tag] = elem._replace(VR="SQ")
                elif elem.VR not in (None, "UN"):
                    # A short VR where a sequence belongs: the value cannot be its items, and
                    # a damaged file can carry anything there (a name, read as PN).
                    self.remove(ds, tag, path, f"VR {elem.VR} on a sequence: removed")
                    continue
            if verdicts is not None:
                # The common cases at the top level, one look-up: kept unchanged (never
                # decoded: explicit VR tells the VR), or removed.
                verdict = verdicts.get(int(tag))  # an int: pydicom's tags compare in Python
                if verdict is None:
                    verdict = verdicts[int(tag)] = self._verdict(tag)
                if verdict is KEPT:
                    if elem.VR in _PLAIN_VRS or (
                        elem.VR in _NUMERIC_STRING_VRS and numeric_text(elem.value)
                    ):
                        continue
                elif verdict is REMOVED:
                    del ds[tag]
                    continue
            decision = profile.public(tag)
            if self.structured:
                decision = self._in_structure(ds, tag, decision)
            if fast:
                code = decision.code
                if elem.VR == "UI" and (
                    code is Action.UID or (code is Action.KEEP and profile.replace_uids)
                ):
                    # Instance UIDs replaced, class UIDs kept: what apply would do for a UI
                    # element (U, or K with UIDs replaced), without its bookkeeping.
                    if int(tag) not in CLASS_UID_TAGS:
                        self.uids(ds, tag, "UI", "")
                    continue
                if code is Action.KEEP:
                    if elem.VR in _PLAIN_VRS or (
                        elem.VR in _NUMERIC_STRING_VRS and numeric_text(elem.value)
                    ):
                        continue
                elif self.resolve(decision, tag, path) is Action.REMOVE:
                    del ds[tag]
                    continue
            self.apply(ds, tag, decision, path)
        for creator_tag in creator_tags:
            if (creator_tag >> 16, creator_tag & 0xFFFF) in used_blocks:
                self.report(path, creator_tag, "LO", "K", "private creator of a kept block")
            else:
                self.remove(ds, creator_tag, path, "private creator of a block with nothing kept")

    # ---------------------------------------------------------------------------------------
    def apply(self, ds: Dataset, tag: int, decision: Decision, path: tuple[str, ...]) -> bool:
        """Apply one decision with its action's handler; True when the element stays."""
        raw = ds.get_item(tag, keep_deferred=True)
        if raw.VR is not None and raw.VR not in _VALID_VRS:
            # Damaged VR bytes: the value cannot be decoded or vouched for.
            self.remove(ds, tag, path, "unknown VR: removed (never copied through)")
            return False
        vr = vr_of(raw, tag)
        action = self.resolve(decision, tag, path)
        return HANDLERS[action](self, At(ds, tag, raw, vr, path), decision, decision.source)

    def _verdict(self, tag: int) -> object:
        """What a public element at the top level comes to, before looking at it: kept (if
        its VR needs no sweep), removed, or a closer look. The walk remembers it per IOD."""
        decision = self.engine.profile.public(tag)
        if decision.code is Action.KEEP:
            verdict = KEPT
        elif self.resolve(decision, tag, ()) is Action.REMOVE:
            verdict = REMOVED
        else:
            verdict = LOOK
        return verdict

    def resolve(self, decision: Decision, tag: int, path: tuple[str, ...]) -> Action:
        """The action of a decision here: a compound code resolved by the attribute's Type."""
        code = decision.code
        if isinstance(code, Action):
            return code
        if not code.is_compound:
            return code.resolve(None)
        if path:
            return self._resolve_compound(code, tag, path)
        # At the top level the answer depends only on the code, the tag and the IOD.
        key = (code, int(tag), self.iod)
        cache = self.engine.top_level_actions
        found = cache.get(key)
        if found is None:
            found = cache[key] = self._resolve_compound(code, tag, path)
        return found

    def _resolve_compound(self, code: Code, tag: int, path: tuple[str, ...]) -> Action:
        keyword = keyword_for_tag(tag) or f"{tag:08X}"
        key = ">".join(collapse((*(p.partition("[")[0] for p in path), keyword)))
        return code.resolve(self.types.get(key))

    def _in_structure(self, ds: Dataset, tag: int, decision: Decision) -> Decision:
        vr = vr_of(ds.get_item(tag, keep_deferred=True), tag)
        profile = self.engine.profile
        return decision_in_structure(
            tag,
            vr,
            decision,
            default=profile.public_default,
            clean_text=not self.dummy_text,
            keep_dates=self.offset is not None
            or Option.RETAIN_LONG_FULL_DATES in profile.profile.options,
        )

    # ---------------------------------------------------------------------------------------
    def sequence(
        self,
        ds: Dataset,
        tag: int,
        path: tuple[str, ...],
        *,
        structured: bool = False,
        dummy: bool = False,
    ) -> None:
        """Walk the items of a sequence; ``structured`` tightens the decisions inside (see
        :mod:`dicomveil.cleaners.structured`), ``dummy`` with it replaces texts by dummies
        instead of cleaning them (the items of a D sequence)."""
        key = self._walked_key(ds, tag, path, structured, dummy)
        if key is None:
            self._items(ds, tag, path, structured, dummy)
            return
        walked = self.engine.walked_sequences
        found = walked.get(key)
        raw = ds.get_item(tag, keep_deferred=True)
        assert isinstance(raw, RawDataElement)  # as _walked_key found it
        if found is None:
            outer_map, self.uid_map = self.uid_map, {}
            try:
                self._items(ds, tag, path, structured, dummy)
            finally:
                mapped, self.uid_map = self.uid_map, outer_map
                outer_map.update(mapped)
            value = Encoder.of(implicit=raw.is_implicit_VR, little=raw.is_little_endian).value(
                ds[tag],
                ds.get("SpecificCharacterSet", "ISO_IR 6"),  # as the writer encodes it
            )
            if value is None:
                return
            found = (value, tuple(mapped.items()))
            walked.put(key, found, len(raw.value) + len(value))
        value, mapped_uids = found
        # value_tell -1: not the input's bytes (the writer writes them, never copies those).
        ds[tag] = raw._replace(value=value, length=len(value), value_tell=-1)
        self.uid_map.update(mapped_uids)

    def _walked_key(
        self, ds: Dataset, tag: int, path: tuple[str, ...], structured: bool, dummy: bool
    ) -> tuple[Any, ...] | None:
        """What a top-level sequence's walk depends on, when its bytes as read are at hand:
        a patient's files repeat their request, procedure and code sequences byte for byte,
        so each is walked and encoded once (:meth:`sequence`). None: walked every time."""
        if path or self.explain or self.engine.reversible:
            return None
        raw = ds.get_item(tag, keep_deferred=True)
        if not _rememberable(raw) or raw.VR not in (None, "SQ"):
            return None
        return (
            int(tag),
            raw.value,
            raw.is_implicit_VR,
            raw.is_little_endian,
            *self._encodings(ds),
            structured,
            dummy,
            self.structured,
            self.dummy_text,
            self.iod,
            self.offset,
            self.identifiers,
            self.patient_name,
            tuple(self.fields.items()),
        )

    def cleaned_key(self, at: At, vr: str) -> tuple[object, ...] | None:
        """What cleaning a top-level text as read depends on: its bytes, their encoding, the
        patient's values. A patient's files repeat their descriptions and comments byte for
        byte; each is cleaned once and stored as the same bytes (:func:`handlers.clean`).
        None: cleaned every time."""
        raw = at.raw
        if (
            at.path
            or self.explain
            or self.engine.reversible
            or not _rememberable(raw)
            or raw.VR not in (None, vr)
            or vr not in _REMEMBERED_TEXT_VRS
        ):
            return None
        return (
            int(at.tag),
            vr,
            raw.value,
            raw.is_implicit_VR,
            raw.is_little_endian,
            *self._encodings(at.ds),
            self.identifiers,
        )

    def _encodings(self, ds: Dataset) -> tuple[tuple[str, ...], str | tuple[str, ...]]:
        """The dataset's character sets: its Python codecs (pydicom's), and its Specific
        Character Set as the writer encodes with it; looked up once per dataset."""
        found = self._charsets.get(id(ds))
        if found is None:
            charset = ds.get("SpecificCharacterSet", "ISO_IR 6")
            codecs = ds._character_set  # pydicom gives a list, or one str
            found = self._charsets[id(ds)] = (
                ds,
                (codecs,) if isinstance(codecs, str) else tuple(codecs),
                charset if isinstance(charset, str) else tuple(charset),
            )
        return found[1], found[2]

    def _items(
        self, ds: Dataset, tag: int, path: tuple[str, ...], structured: bool, dummy: bool
    ) -> None:
        value = ds[tag].value
        keyword = keyword_for_tag(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
        outer = (self.structured, self.dummy_text)
        if structured and not self.structured:
            self.structured, self.dummy_text = True, dummy
        try:
            for index, item in enumerate(value):
                self.dataset(item, (*path, f"{keyword}[{index}]"))
        finally:
            self.structured, self.dummy_text = outer

    def uids(self, ds: Dataset, tag: int, vr: str, source: str) -> bool:
        """Replace every instance UID of one element; True if anything changed."""
        raw = ds.get_item(tag, keep_deferred=True)
        text = ascii_value(raw) if isinstance(raw, RawDataElement) and vr == "UI" else None
        if text is not None:
            # Undecoded: the UIDs are read from the bytes, as pydicom would decode them.
            old = [part.strip("\x00 ") for part in text.split("\\")]
            mapped = [self.map_uid(uid) for uid in old]
            if mapped == old:
                return False
            # Left encoded, as the writer writes it (pydicom decodes it where it is read;
            # value_tell -1: not the input's bytes): keyed UIDs are ASCII digits and dots.
            data = "\\".join(mapped).encode("ascii")
            if len(data) % 2:
                data += b"\x00"
            ds[tag] = _new_raw(
                RawDataElement,
                (
                    tag if isinstance(tag, BaseTag) else BaseTag(tag),
                    "UI",
                    len(data),
                    data,
                    -1,
                    raw.is_implicit_VR,
                    raw.is_little_endian,
                    True,
                    False,
                ),
            )
            return True
        elem = ds[tag]
        if vr == "UI":
            values = as_list(elem.value)
            new = [self.map_uid(str(v)) for v in values]
            if new != [str(v) for v in values]:
                elem.validation_mode = _pydicom_config.IGNORE  # keyed UIDs are valid
                elem.value = new if isinstance(elem.value, MutableSequence) else new[0]
                return True
            return False
        raw_value = elem.value
        if isinstance(raw_value, bytes):
            text = raw_value.decode("ascii", "replace").rstrip("\x00 ")
            parts = text.split("\\")
            if parts and all(_UID_TEXT.match(p) for p in parts):
                mapped = "\\".join(self.map_uid(p) for p in parts)
                elem.value = pad(mapped.encode("ascii"))
                return True
        return False

    def map_uid(self, uid: str) -> str:
        """The keyed replacement of an instance UID (well-known UIDs kept), remembered."""
        value = uid.strip("\x00 ")
        if not value or value in UID_dictionary:
            return value
        new = self.engine.pseudonymizer.uid(value)
        self.uid_map[value] = new
        return new

    def shift(self, ds: Dataset, tag: int, vr: str, path: tuple[str, ...], source: str) -> None:
        """Shift a date or date-time element by the patient's offset (invalid: emptied)."""
        assert self.offset is not None
        shifter: Callable[[str, int], str] = shift_da if vr == "DA" else shift_dt
        elem = ds[tag]
        values = [str(v) for v in as_list(elem.value) if v is not None]
        if not values or all(not v for v in values):
            self.report(path, tag, vr, "K", source)
            return
        try:
            shifted = [shifter(v, self.offset) if v else "" for v in values]
        except DateError:
            ds[tag] = DataElement(tag, vr, None)
            self.report(path, tag, vr, "Z", source + " (not a valid date: emptied)")
            return
        ds[tag] = DataElement(tag, vr, shifted if len(shifted) > 1 else shifted[0])
        self.report(path, tag, vr, "shift", source)

    def cap_age(self, ds: Dataset, tag: int) -> None:
        """Ages over 89 become 90Y (PS3.15 E.3.1); an invalid age is emptied."""
        value = str(ds[tag].value or "")
        if not value:
            return
        try:
            capped = cap_age(value)
        except DateError:
            ds[tag] = DataElement(tag, "AS", None)
            return
        if capped != value:
            ds[tag] = DataElement(tag, "AS", capped)

    def dummy(self, ds: Dataset, tag: int, vr: str) -> Any:
        """The D value of an element: the profile's identity template where it has one
        (PatientName, PatientID: the pseudonym), a keyed UID, a keyed person pseudonym in
        a cleaned structure, else the VR's dummy."""
        if vr == "UI":
            original = text_of(ds, tag)
            return (
                self.map_uid(original)
                if original
                else self.engine.pseudonymizer.uid(f"dummy:{tag:08X}")
            )
        template = self.engine.profile.dummies.get(int(tag))
        if template is not None:
            return render_template(template, self.fields)
        if vr == "PN" and self.structured:
            return self._person(ds, tag)
        return dummy_value(vr)

    def _person(self, ds: Dataset, tag: int) -> Any:
        """Keyed pseudonyms for the names of a PN element in a cleaned structure."""
        names = [str(v) for v in as_list(ds[tag].value) if v is not None and str(v).strip()]
        if not names:
            return dummy_value("PN")
        patient = person_key(self.patient_name)
        new = [
            self.fields["pseudonym"]
            if patient and person_key(name) == patient
            else person_pseudonym(self.engine.pseudonymizer, name)
            for name in names
        ]
        return new if len(new) > 1 else new[0]

    def remove(self, ds: Dataset, tag: int, path: tuple[str, ...], source: str) -> None:
        """Remove an element and report it."""
        raw = ds.get_item(tag, keep_deferred=True)
        vr = vr_of(raw, tag)
        del ds[tag]
        self.report(path, tag, vr, "X", source)

    def raw_of(self, ds: Dataset, tag: int) -> tuple[bytes, tuple[str, ...]] | None:
        """The element's bytes as read and the character sets that decode them, while it is
        undecoded (a cleaner may remember its answer for equal bytes); else None."""
        stored = ds.get_item(tag, keep_deferred=True)
        if not isinstance(stored, RawDataElement) or not isinstance(stored.value, bytes):
            return None
        return stored.value, self._encodings(ds)[0]

    def report(self, path: tuple[str, ...], tag: int, vr: str, action: str, source: str) -> None:
        """Record one decision for ``explain`` (nothing when not explaining)."""
        if self.explain:
            self.reports.append(
                ElementReport(
                    path=">".join(path),
                    tag=tag,
                    keyword=keyword_for_tag(tag) or ("private" if tag >> 16 & 1 else "unknown"),
                    vr=vr,
                    action=action,
                    source=source,
                )
            )


@cache
def _is_sequence(tag: int) -> bool:
    """A public tag the dictionary gives VR SQ."""
    return dictionary_has_tag(tag) and dictionary_VR(tag) == "SQ"


def _rememberable(raw: DataElement | RawDataElement) -> TypeGuard[RawDataElement]:
    """An element still as read, with its value's bytes of a defined length not over
    :data:`_REMEMBERED_BYTES`: what an engine may remember an answer for."""
    return (
        isinstance(raw, RawDataElement)
        and isinstance(raw.value, bytes)
        and raw.length != 0xFFFFFFFF
        and len(raw.value) <= _REMEMBERED_BYTES
    )
