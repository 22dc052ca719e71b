"""One handler per action: what X, Z, D, K, U, C and replace do to one element.

:data:`HANDLERS` maps each resolved :class:`~dicomveil.standard.actions.Action` to its
handler; the walk (:mod:`dicomveil.engine.walk`) resolves a decision to an action and calls
the handler. Every handler has the same signature and returns True when the element stays
in the dataset (kept, replaced or emptied), False when it is removed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from pydicom import config as _pydicom_config
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicomveil.cleaners import CLEANERS, Cleaning, Context, Element, Outcome
from dicomveil.cleaners.free_text import stored_value
from dicomveil.cleaners.structured import (
    CLEANED_D_SEQUENCES,
    CODE_MEANING,
    CONTENT_TREE_SEQUENCES,
    dummy_code_item,
    is_code_sequence,
    repeater_vr,
    standard_code,
)
from dicomveil.engine.risks import content_tree_reason
from dicomveil.engine.values import CLASS_UID_TAGS, numeric_text, validate
from dicomveil.io import encoding
from dicomveil.profiles import TIME_OF_DAY, render_template
from dicomveil.standard.actions import Action, Code, Decision
from dicomveil.standard.options import Option
from dicomveil.standard.risks import Risk

if TYPE_CHECKING:
    from dicomveil.engine.walk import Walk


@dataclass(frozen=True, slots=True)
class At:
    """The element a handler acts on: its dataset, tag, element as stored, VR and path."""

    ds: Dataset
    tag: int
    raw: DataElement | RawDataElement
    vr: str
    path: tuple[str, ...]


Handler = Callable[["Walk", At, Decision, str], bool]
# An emptied public element of these VRs is one the engine makes once and shares (not a
# sequence, which holds items; not UN, which the writer re-encodes with the dictionary's VR).
_SHARED_EMPTY_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI"}
    | {"UR", "UT"}
)

_DATE_VRS = ("DA", "DT")
_ITEM_TAG_LE = b"\xfe\xff\x00\xe0"
_PATIENT_AGE = 0x00101010


class WithholdError(Exception):
    """Raised inside the walk when an element withholds the whole object."""

    def __init__(self, risk: Risk, detail: str) -> None:
        self.risk = risk
        self.detail = detail
        super().__init__(detail)


def remove(walk: Walk, at: At, decision: Decision, source: str) -> bool:
    """X: the element is removed."""
    ds, tag, vr, path = at.ds, at.tag, at.vr, at.path
    del ds[tag]
    walk.report(path, tag, vr, "X", source)
    return False


def keep(walk: Walk, at: At, decision: Decision, source: str) -> bool:
    """K: kept, with what the profile does to every kept value (UIDs mapped, dates shifted,
    ages capped, sequences walked); an unparsed sequence is removed."""
    ds, tag, raw, vr, path = at.ds, at.tag, at.raw, at.vr, at.path
    if vr == "SQ":
        walk.sequence(ds, tag, path)
        walk.report(path, tag, vr, "K", source)
        return True
    profile = walk.engine.profile
    if vr == "UN" and isinstance(raw.value, bytes) and raw.value.startswith(_ITEM_TAG_LE):
        # A sequence pydicom could not parse: its items cannot be de-identified.
        del ds[tag]
        walk.report(path, tag, vr, "X", source + " (an unparsed sequence: removed)")
        return False
    if vr == "UI" or (vr == "UN" and tag >> 16 & 1):
        if profile.replace_uids and tag not in CLASS_UID_TAGS:
            changed = walk.uids(ds, tag, vr, source)
            walk.report(path, tag, vr, "U" if changed else "K", source)
            return True
    elif vr in _DATE_VRS and walk.offset is not None:
        walk.shift(ds, tag, vr, path, source)
        return tag in ds
    elif vr in ("DS", "IS") and not numeric_text(raw.value):
        # Not a number: a damaged value, which may carry text from elsewhere in the file.
        ds[tag] = DataElement(tag, vr, None)
        walk.report(path, tag, vr, "Z", source + " (not a number: emptied)")
        return True
    elif tag == _PATIENT_AGE:
        walk.cap_age(ds, tag)
    if (
        tag >> 16 & 1
        and tag & 0xFF00  # not a private creator: its block's elements would be orphaned
        and profile.private_default.code is not Action.KEEP  # a preset keeping them all
        and vr in _PRIVATE_TEXT_VRS
        and _holds_patient(walk, vr, raw.value)
    ):
        # a private element kept where the others go (the safe list, TCIA's, a rule) is
        # kept for what vendors put there: one holding the patient's name, ID or birth
        # date is not that (the list presets, which keep every private element, as before)
        del ds[tag]
        why = " (holds the patient's name, ID or birth date: removed)"
        walk.report(path, tag, vr, "X", source + why)
        return False
    walk.report(path, tag, vr, "K", source)
    return True


_PRIVATE_TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "PN", "CS", "DS", "IS", "UN"})


def _holds_patient(walk: Walk, vr: str, value: object) -> bool:
    """Whether a kept private value holds the patient's name words, ID or birth date: a
    text anywhere in it, a number only as the whole value (a DS of 19610317)."""
    if value is None:
        return False
    text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
    text = text.strip("\x00 ")
    if vr == "UN" and not text.isprintable():
        return False  # binary: a vendor's structure, not a text to search
    if vr in ("DS", "IS"):
        whole = {walk.patient_id.strip(), walk.birth_date.strip()} - {""}
        return any(v.strip() in whole for v in text.split("\\"))
    folded = text.casefold()
    return any(mark in folded for mark in walk.patient_marks)


def uid(walk: Walk, at: At, decision: Decision, source: str) -> bool:
    """U: instance UIDs replaced by keyed UIDs (a reference sequence: in its items)."""
    ds, tag, raw, vr, path = at.ds, at.tag, at.raw, at.vr, at.path
    if vr == "SQ":
        if not _references(walk, ds, tag, raw):
            walk.sequence(ds, tag, path)
    elif not walk.uids(ds, tag, vr, source) and vr != "UI":
        # not a UID (a private element's text, a custom rule's U on a date): never kept
        return remove(walk, at, decision, source + " (U on a value that is not a UID: removed)")
    walk.report(path, tag, vr, "U", source)
    return True


def empty(walk: Walk, at: At, decision: Decision, source: str) -> bool:
    """Z: the element stays with an empty value (an empty sequence)."""
    ds, tag, vr, path = at.ds, at.tag, at.vr, at.path
    if vr in _SHARED_EMPTY_VRS and not tag >> 16 & 1:
        # The same empty element in every file: shared, immutable (Engine.made).
        ds[tag] = walk.engine.made(ds, tag, vr, None, None)
    else:
        ds[tag] = DataElement(
            tag, vr, Sequence() if vr == "SQ" else None, validation_mode=_pydicom_config.IGNORE
        )
    walk.report(path, tag, vr, "Z", source)
    return True


def dummy(walk: Walk, at: At, decision: Decision, source: str) -> bool:
    """D: a dummy value valid for the VR (see :meth:`Walk.dummy`); a sequence becomes a
    valid dummy sequence (see :func:`_dummy_sequence`)."""
    ds, tag, vr, path = at.ds, at.tag, at.vr, at.path
    if vr == "SQ":
        return _dummy_sequence(walk, ds, tag, path, source)
    ds[tag] = DataElement(tag, vr, walk.dummy(ds, tag, vr))
    template = walk.engine.profile.dummies.get(int(tag))
    if template is not None and vr != "UI":
        source += f" (dummy {template}: {walk.engine.profile.dummies_source})"
    walk.report(path, tag, vr, "D", source)
    return True


def replace(walk: Walk, at: At, decision: Decision, source: str) -> bool:
    """replace: the rule's template, rendered (a sequence cannot take a text: removed)."""
    ds, tag, vr, path = at.ds, at.tag, at.vr, at.path
    assert decision.value is not None
    fields = walk.fields
    if TIME_OF_DAY in decision.value:  # a date-time keeps its own time of day
        raw = at.raw.value if vr == "DT" else None
        original = raw.decode("ascii", "replace") if isinstance(raw, bytes) else str(raw or "")
        fields = {**fields, "time_of_day": original[8:].strip()}
    value = render_template(decision.value, fields)
    if vr == "SQ":
        # A text cannot stand for a sequence (NiDB's seeds try): remove it instead.
        del ds[tag]
        walk.report(path, tag, vr, "X", source + " (a sequence cannot take a text: removed)")
        return False
    if vr in ("UN", "OB", "OW"):
        # A text (the VR unknown to the reader: implicit VR private elements) is padded
        # as text is, with a space: a NUL would be invalid once the VR is known (LO).
        data = value.encode("ascii", "replace")
        ds[tag] = DataElement(tag, vr, data + b" " if len(data) % 2 else data)
    else:
        validate(tag, vr, value)
        ds[tag] = DataElement(tag, vr, value)
    walk.report(path, tag, vr, "replace", source)
    return True


def clean(walk: Walk, at: At, decision: Decision, source: str) -> bool:
    """C: the option's cleaner (:data:`dicomveil.cleaners.CLEANERS`); where it cannot
    clean the element, the Basic Profile's action for it."""
    ds, tag, vr, path = at.ds, at.tag, at.vr, at.path
    if tag == CODE_MEANING and standard_code(ds):
        walk.report(path, tag, vr, "K", source + " (a standard coding scheme's meaning: kept)")
        return True
    option = decision.option
    cleaner = CLEANERS.get(option) if option is not None else None
    if cleaner is not None:
        cleaned_vr = repeater_vr(tag, vr)
        key = walk.cleaned_key(at, cleaned_vr)
        if key is not None:
            found = walk.engine.cleaned_texts.get(key)
            if found is not None:
                if found is not _UNCHANGED:
                    assert isinstance(at.raw, RawDataElement)  # as cleaned_key found it
                    ds[tag] = at.raw._replace(value=found, length=len(found), value_tell=-1)
                return True
        element = Element(int(tag), cleaned_vr, lambda: ds[tag].value, walk.raw_of(ds, tag))
        cleaning = cleaner.clean(element, Context(walk.engine.cleaner, walk.identifiers))
        if cleaning is not None:
            kept = _cleaned(walk, at, cleaned_vr, cleaning, source)
            if key is not None and cleaning.outcome is Outcome.TEXT:
                _remember_text(walk, key, at, cleaning)
            return kept
    fallback = decision.fallback or Code.X
    action = walk.resolve(Decision(fallback, source), tag, path)
    why = f" (VR {vr} cannot be cleaned: the Basic Profile's {fallback.value})"
    return HANDLERS[action](walk, at, decision, source + why)


_BINARY_CONTAINER_VRS = frozenset({"OB", "UN"})
_UNCHANGED = b"\x00unchanged"  # a remembered text the cleaner left as it was


def _remember_text(walk: Walk, key: tuple[object, ...], at: At, cleaning: Cleaning) -> None:
    """Remember the bytes a cleaned text was stored as (:meth:`Walk.cleaned_key`)."""
    raw = at.raw
    assert isinstance(raw, RawDataElement) and isinstance(raw.value, bytes)  # as the key has it
    if cleaning.values is None:
        value: bytes | None = _UNCHANGED
    else:
        stored = at.ds[at.tag]
        assert isinstance(stored, DataElement)
        encoder = encoding.Encoder.of(implicit=raw.is_implicit_VR, little=raw.is_little_endian)
        # in the character set the writer encodes with
        value = encoder.text_value(stored, at.ds.get("SpecificCharacterSet", "ISO_IR 6"))
    if value is not None:  # None: pydicom's own encoding, not remembered
        walk.engine.cleaned_texts.put(key, value, len(value) + len(raw.value))


def _cleaned(walk: Walk, at: At, vr: str, cleaning: Cleaning, source: str) -> bool:
    """Apply a cleaner's answer (see :class:`dicomveil.cleaners.Outcome`)."""
    ds, tag, path = at.ds, at.tag, at.path
    outcome = cleaning.outcome
    if outcome is Outcome.APPLY_KEEP:
        return walk.apply(ds, tag, Decision(Action.KEEP, source + cleaning.note), path)
    if outcome is Outcome.WALK_ITEMS:
        walk.sequence(ds, tag, path, structured=True)
    elif outcome is Outcome.KEEP_AS_IS:
        walk.report(path, tag, vr, "K", source + cleaning.note)
        return True
    elif outcome is Outcome.BYTES:
        assert cleaning.data is not None
        ds[tag] = DataElement(tag, vr if vr in _BINARY_CONTAINER_VRS else "OB", cleaning.data)
    elif cleaning.values is not None:
        ds[tag] = DataElement(tag, vr, stored_value(ds[tag].value, cleaning.values))
    walk.report(path, tag, vr, "C", source + cleaning.note)
    return True


HANDLERS: Mapping[Action, Handler] = MappingProxyType(
    {
        Action.REMOVE: remove,
        Action.EMPTY: empty,
        Action.DUMMY: dummy,
        Action.KEEP: keep,
        Action.UID: uid,
        Action.CLEAN: clean,
        Action.REPLACE: replace,
    }
)


def _references(walk: Walk, ds: Dataset, tag: int, raw: DataElement | RawDataElement) -> bool:
    """A reference sequence still as read (items of SOP Class and Instance UIDs only)
    remapped in its bytes, without decoding it: True when done. The same as walking it,
    where the profile maps instance UIDs and keeps class UIDs; not when explaining (the
    walk reports each element)."""
    profile = walk.engine.profile
    if (
        walk.explain
        or walk.structured
        or not isinstance(raw, RawDataElement)
        or not isinstance(raw.value, bytes)
        or not raw.is_little_endian
        or raw.length == 0xFFFFFFFF
        or not profile.replace_uids
        or profile.public(encoding.REFERENCED_SOP_CLASS_UID).code is not Action.KEEP
        or profile.public(encoding.REFERENCED_SOP_INSTANCE_UID).code
        not in (Action.UID, Action.KEEP)
    ):
        return False
    value = encoding.remap_references(raw.value, raw.is_implicit_VR, walk.map_uid)
    if value is None:
        return False
    # value_tell -1: not the input's bytes any more (the writer must not copy those).
    ds[tag] = raw._replace(value=value, length=len(value), value_tell=-1)
    return True


def _dummy_sequence(walk: Walk, ds: Dataset, tag: int, path: tuple[str, ...], source: str) -> bool:
    """D on a sequence (PS3.15 E.1-1): a dummy that is valid for the VR and the IOD.

    An empty sequence stays empty. An SR content tree cannot be made a dummy without
    losing the document: it withholds the object unless clean-structured-content cleans
    it or the profile allows structured content. A code sequence becomes one item with a
    dummy code of dicomveil's own coding scheme. Any other sequence keeps its items, each
    cleaned by the table at every depth, with the names, free texts and dates the table
    does not list replaced by dummies (or cleaned, inside a structure an option cleans).
    """
    items = ds[tag].value
    if len(items) == 0:
        walk.report(path, tag, "SQ", "D", source + " (empty sequence kept)")
        return True
    options = walk.engine.profile.profile.options
    if tag in CONTENT_TREE_SEQUENCES:
        if tag in CLEANED_D_SEQUENCES and Option.CLEAN_STRUCTURED_CONTENT in options:
            walk.sequence(ds, tag, path, structured=True)
            walk.report(path, tag, "SQ", "D", source + " (items cleaned)")
            return True
        if Risk.STRUCTURED_CONTENT not in walk.engine.profile.profile.allow:
            raise WithholdError(Risk.STRUCTURED_CONTENT, content_tree_reason(path, tag, source))
        walk.sequence(ds, tag, path)
        walk.report(path, tag, "SQ", "K", source + " (allowed by the profile)")
        return True
    if is_code_sequence(tag):
        ds[tag] = DataElement(
            tag, "SQ", Sequence([dummy_code_item()]), validation_mode=_pydicom_config.IGNORE
        )
        walk.report(path, tag, "SQ", "D", source + " (one dummy code item)")
        return True
    walk.sequence(ds, tag, path, structured=True, dummy=not walk.structured)
    walk.report(path, tag, "SQ", "D", source + " (items cleaned by the table)")
    return True
