"""The de-identification engine: walks a dataset and applies a compiled profile.

Pure: it changes a pydicom :class:`~pydicom.dataset.Dataset` in memory and returns what it
did. Reading, writing, naming files, running in parallel and reporting live elsewhere
(:mod:`dicomveil.io`, :mod:`dicomveil.runs.batch`), so the CLI, a gateway and a UI share it.

Elements the profile keeps unchanged are never decoded: pydicom's raw elements pass through
untouched, and bulk values (pixel data) are not part of the dataset the engine sees.
"""

from __future__ import annotations

import datetime as _dt
import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableSequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any

from pydicom import config as _pydicom_config
from pydicom._uid_dict import UID_dictionary
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from dicomveil._version import __version__
from dicomveil.cleaners import structured
from dicomveil.cleaners.text import (
    TEXT_VRS,
    VR_MAX_LENGTH,
    Category,
    Cleaned,
    Identifiers,
    TextCleaner,
)
from dicomveil.errors import CrosswalkError, DeidentificationError
from dicomveil.identity.crosswalk import Crosswalk
from dicomveil.identity.dates import DateError, cap_age, shift_da, shift_dt
from dicomveil.identity.pseudonyms import Pseudonymizer
from dicomveil.io import encoding
from dicomveil.profiles import Base, CompiledProfile, known_tag, render_template
from dicomveil.standard import conditions, tables
from dicomveil.standard.actions import Action, Code, Decision, dummy_value
from dicomveil.standard.options import BASIC_PROFILE_CODE, Option
from dicomveil.standard.risks import Risk

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

# Encapsulated Document storage (PDF, CDA, STL, OBJ, MTL): PS3.4 B.5.
_ENCAPSULATED_DOCUMENT_PREFIX = "1.2.840.10008.5.1.4.1.1.104."
# Kinds of image that often carry burned-in text when BurnedInAnnotation is not NO.
_BURNED_IN_MODALITIES = frozenset({"US", "IVUS", "OT", "SC", "XC", "ES", "GM", "DOC", "SM"})
_BURNED_IN_SOP_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.7",  # secondary capture family
    "1.2.840.10008.5.1.4.1.1.77.1",  # visible light family (endoscopy, photos, slides)
    "1.2.840.10008.5.1.4.1.1.6.",  # ultrasound
    "1.2.840.10008.5.1.4.1.1.3.1",  # ultrasound multi-frame
)
_UID_TEXT = re.compile(r"^[0-9]+(\.[0-9]+){2,}$")
_DATE_VRS = ("DA", "DT")
# Kept elements of these VRs still need a look: UIDs mapped, dates shifted, ages capped,
# sequences walked, unknown VRs resolved.
_SWEPT_VRS = frozenset({"UI", "DA", "DT", "AS", "SQ", "UN"})
_ITEM_TAG_LE = b"\xfe\xff\x00\xe0"
# Verdicts of the top-level fast path (see _Walk._verdict).
_KEPT, _REMOVED, _LOOK = object(), object(), object()
_PATIENT_AGE = 0x00101010


@dataclass(frozen=True, slots=True)
class ElementReport:
    """One decision of the engine, for ``explain`` and the audit trail. Holds no values."""

    path: str
    tag: int
    keyword: str
    vr: str
    action: str
    source: str

    @property
    def tag_text(self) -> str:
        return f"({self.tag >> 16:04X},{self.tag & 0xFFFF:04X})"


@dataclass
class Result:
    """What the engine did to one dataset."""

    dataset: Dataset | None
    withheld: Risk | None = None
    withheld_detail: str = ""
    patient_pseudonym: str = ""
    date_offset_days: int | None = None
    uid_map: dict[str, str] = field(default_factory=dict)
    patient_id_original: str = field(default="", repr=False)
    reports: list[ElementReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # warnings for the user (no values)

    @property
    def ok(self) -> bool:
        return self.dataset is not None


class Engine:
    """Applies one compiled profile with one key; reusable for any number of datasets."""

    def __init__(
        self,
        profile: CompiledProfile,
        pseudonymizer: Pseudonymizer,
        *,
        crosswalk: Crosswalk | None = None,
        today: _dt.date | None = None,
    ) -> None:
        self.profile = profile
        self.pseudonymizer = pseudonymizer
        self.crosswalk = crosswalk
        self.today = (today or _dt.date.today()).strftime("%Y%m%d")
        self.cleaner = TextCleaner(profile.profile.clean)
        self._cleans = any(option in CLEANERS for option in profile.profile.options)
        # (code, tag, IOD) -> action, for top-level elements.
        self.top_level_actions: dict[tuple[Code, int, str | None], Action] = {}
        # IOD -> tag -> _KEPT / _REMOVED / _LOOK, for top-level public elements.
        self.top_level_verdicts: dict[str | None, dict[int, object]] = {}

    # ---------------------------------------------------------------------------------------
    def check_risks(
        self, ds: Dataset, has_pixel_data: bool | None = None
    ) -> tuple[Risk, str] | None:
        """The first risk that withholds this dataset under the profile, if any, with the
        reason: what in this file raised it (element, value class, SOP class) and the option
        or ``allow`` entry that would let it through. Never a value of the file beyond the
        enumerated ones (YES, NO, a modality, a SOP class name).

        ``has_pixel_data`` tells about pixel data the caller streams separately (not in
        ``ds``); by default the dataset itself is looked at.
        """
        if self.profile.copy:
            return None
        pixels = _has_pixels(ds) if has_pixel_data is None else has_pixel_data
        sop_class = _text(ds, 0x00080016)
        burned = _text(ds, 0x00280301).upper()
        found: list[tuple[Risk, str]] = []
        if sop_class.startswith(_ENCAPSULATED_DOCUMENT_PREFIX) or 0x00420011 in ds:
            what = (
                f"SOP class {_sop_name(sop_class)}"
                if sop_class.startswith(_ENCAPSULATED_DOCUMENT_PREFIX)
                else "EncapsulatedDocument (0042,0011) present"
            )
            found.append(
                (Risk.ENCAPSULATED_DOCUMENT, f"{what}: {Risk.ENCAPSULATED_DOCUMENT.reason}")
            )
        if burned == "YES":
            found.append(
                (Risk.BURNED_IN_ANNOTATION, "BurnedInAnnotation (0028,0301) is YES: text in "
                 "the pixels cannot be cleaned without clean-pixel-data")
            )  # fmt: skip
        tree = self._content_tree(ds)
        if tree:
            found.append((Risk.STRUCTURED_CONTENT, tree))
        if _text(ds, 0x00280302).upper() == "YES":
            found.append(
                (Risk.RECOGNIZABLE_VISUAL_FEATURES, "RecognizableVisualFeatures (0028,0302) is "
                 "YES: the image may show a face")
            )  # fmt: skip
        modality = _text(ds, 0x00080060).upper()
        kinds = []
        if modality in _BURNED_IN_MODALITIES:
            kinds.append(f"Modality {modality}")
        if sop_class.startswith(_BURNED_IN_SOP_PREFIXES):
            kinds.append(f"SOP class {_sop_name(sop_class)}")
        clean_pixels = Option.CLEAN_PIXEL_DATA in self.profile.profile.options
        if clean_pixels and pixels and not kinds:
            # clean-pixel-data looks wider (ImageType, XA, devices with known text regions).
            # Its pixel step (dicomveil.cleaners.pixels) runs before the engine and sets
            # BurnedInAnnotation NO on what it has checked and cleaned.
            from dicomveil.cleaners.pixels import header_signals

            kinds.extend(header_signals(ds))
        if burned not in ("YES", "NO") and pixels and kinds:
            state = f"is {burned}" if burned else "is absent"
            found.append(
                (Risk.POSSIBLE_BURNED_IN, f"burned-in text not ruled out: {', '.join(kinds)} "
                 f"(an image of a kind that often carries it) and BurnedInAnnotation "
                 f"(0028,0301) {state}, not NO")
            )  # fmt: skip
        allow = self.profile.profile.allow
        for risk, detail in found:
            if risk not in allow:
                if clean_pixels and risk in (Risk.BURNED_IN_ANNOTATION, Risk.POSSIBLE_BURNED_IN):
                    return risk, f"{detail} (clean-pixel-data: the pixels were not checked)"
                return risk, detail
        return None

    def _content_tree(self, ds: Dataset) -> str:
        """Why the top-level SR content tree withholds the object, or '' when there is none
        or the profile keeps or cleans it on purpose (clean-structured-content, a rule).
        A profile that keeps what it does not list (the presets) keeps the tree only by
        default: that is not enough for free text about a person."""
        if 0x0040A730 not in ds:
            return ""
        decision = self.profile.public(0x0040A730)
        explicit = decision is not self.profile.public_default
        if explicit and decision.code in (Action.KEEP, Action.CLEAN, Code.K, Code.C):
            return ""
        value = ds[0x0040A730].value
        if not isinstance(value, Sequence) or len(value) == 0:
            return ""
        return _content_tree_reason((), 0x0040A730, decision.source)

    def deidentify(
        self, ds: Dataset, *, explain: bool = False, has_pixel_data: bool | None = None
    ) -> Result:
        """De-identify ``ds`` in place; the result holds it, or says why it was withheld.

        ``has_pixel_data`` tells the risk checks about pixel data the caller streams
        separately (not part of ``ds``).
        """
        if self.profile.copy:
            return Result(dataset=ds, patient_pseudonym=self._identity(ds)[0])
        risk = self.check_risks(ds, has_pixel_data)
        if risk is not None:
            return Result(dataset=None, withheld=risk[0], withheld_detail=risk[1])
        pseudonym, patient_key, original_id = self._identity(ds)
        offset = (
            self.pseudonymizer.date_offset_days(patient_key) if self.profile.shift_dates else None
        )
        sop_class = _text(ds, 0x00080016)
        iod = tables.sop_class_iod(sop_class) if sop_class else None
        encapsulated = sop_class.startswith(_ENCAPSULATED_DOCUMENT_PREFIX) or 0x00420011 in ds
        walk = _Walk(
            engine=self,
            types=tables.attribute_types(iod) if iod else {},
            iod=iod,
            fields={
                "pseudonym": pseudonym,
                "today": self.today,
                "patient_id_hash": self.pseudonymizer.patient_id_hash(
                    _text(ds, 0x00100021), _text(ds, 0x00100020)
                ),
                "issuer_hash": self.pseudonymizer.issuer_hash(_text(ds, 0x00100021)),
            },
            offset=offset,
            explain=explain,
            identifiers=Identifiers.from_dataset(ds, extra_ids=(original_id,))
            if self._cleans
            else None,
            patient_name=_text(ds, 0x00100010),
        )
        before = frozenset(t for t in conditions.watched() if t in ds)
        try:
            with warnings.catch_warnings():
                # Real-world values break VR rules often; reading them must not warn or fail.
                warnings.simplefilter("ignore", UserWarning)
                walk.dataset(ds, ())
            conditions.apply(
                ds, before, lambda tag, vr, action, why: walk._report((), tag, vr, action, why)
            )
        except _WithholdError as exc:
            return Result(dataset=None, withheld=exc.risk, withheld_detail=exc.detail)
        self._record(ds, offset)
        notes = [_encapsulated_note(ds)] if encapsulated else []
        return Result(
            dataset=ds,
            patient_pseudonym=pseudonym,
            date_offset_days=offset,
            uid_map=walk.uid_map,
            patient_id_original=original_id,
            reports=walk.reports,
            notes=notes,
        )

    # ---------------------------------------------------------------------------------------
    def _identity(self, ds: Dataset) -> tuple[str, str, str]:
        """(pseudonym, patient key, original PatientID) of the dataset's patient."""
        patient_id = _text(ds, 0x00100020)
        issuer = _text(ds, 0x00100021)
        if patient_id:
            key = f"id\x00{issuer}\x00{patient_id}"
        else:
            name, birth = _text(ds, 0x00100010), _text(ds, 0x00100030)
            study = _text(ds, 0x0020000D)
            key = f"name\x00{name}\x00{birth}" if name else f"study\x00{study}"
        if self.crosswalk is not None:
            if not patient_id:
                raise CrosswalkError("the file has no PatientID to look up in the crosswalk")
            study_id = self.crosswalk.lookup(patient_id)
            if study_id is None:
                raise CrosswalkError("the patient is not in the crosswalk")
            return study_id, key, patient_id
        return self.pseudonymizer.patient_pseudonym(key), key, patient_id

    def _record(self, ds: Dataset, offset: int | None) -> None:
        """PatientIdentityRemoved, DeidentificationMethod (+ codes), longitudinal flag."""
        methods, codes = self._method
        valid = _pydicom_config.IGNORE  # dicomveil's own values, valid by construction
        # PatientIdentityRemoved, DeidentificationMethod
        ds[0x00120062] = DataElement(0x00120062, "CS", "YES", validation_mode=valid)
        ds[0x00120063] = DataElement(0x00120063, "LO", methods, validation_mode=valid)
        if codes is None:
            return
        # The code items are shared by every dataset of this engine: nothing writes to them.
        ds[0x00120064] = DataElement(0x00120064, "SQ", Sequence(codes), validation_mode=valid)
        options = self.profile.profile.options
        if offset is not None:
            flag = "MODIFIED"
        elif Option.RETAIN_LONG_FULL_DATES in options:
            flag = "UNMODIFIED"
        else:
            flag = "REMOVED"
        # LongitudinalTemporalInformationModified
        ds[0x00280303] = DataElement(0x00280303, "CS", flag, validation_mode=valid)

    @cached_property
    def _method(self) -> tuple[list[str], list[Dataset] | None]:
        """DeidentificationMethod values and, for PS3.15 profiles, the CID 7050 code items;
        the same for every dataset of the engine, so built once."""
        profile = self.profile.profile
        methods = [f"dicomveil {__version__}", f"profile {profile.name}"]
        if profile.base is Base.PS315:
            methods.append(f"PS3.15 {tables.EDITION} Basic Profile")
        methods.extend(o.value for o in sorted(profile.options, key=lambda o: o.value))
        methods.append(f"key {self.pseudonymizer.fingerprint}")
        if profile.base is not Base.PS315:
            return [m[:64] for m in methods], None
        items = []
        codes = [BASIC_PROFILE_CODE]
        codes.extend(o.code for o in Option if o in profile.options and o.code is not None)
        for value, meaning in codes:
            item = Dataset()
            item.CodeValue = value
            item.CodingSchemeDesignator = "DCM"
            item.CodeMeaning = meaning
            items.append(item)
        return [m[:64] for m in methods], items


class _WithholdError(Exception):
    def __init__(self, risk: Risk, detail: str) -> None:
        self.risk = risk
        self.detail = detail
        super().__init__(detail)


@dataclass
class _Walk:
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
    structured: bool = False  # inside a sequence an option's C action cleans, or a D sequence
    dummy_text: bool = False  # inside a D sequence: texts the table keeps become dummies

    # ---------------------------------------------------------------------------------------
    def dataset(self, ds: Dataset, path: tuple[str, ...]) -> None:
        profile = self.engine.profile
        creators: dict[tuple[int, int], str] = {}
        used_blocks: set[tuple[int, int]] = set()
        creator_tags: list[int] = []
        fast = not self.explain  # nothing to report: skip the bookkeeping of _apply
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
                self._remove(ds, tag, path, "command or file meta element inside the dataset")
                continue
            if group & 1:
                if element == 0 or element < 0x0010 or group < 0x0009 or group == 0xFFFF:
                    self._remove(ds, tag, path, "not a valid private element")
                elif element <= 0x00FF:
                    creators[(group, element)] = _creator(ds, tag)
                    creator_tags.append(tag)
                else:
                    creator = creators.get((group, element >> 8))
                    if creator is None:
                        self._remove(ds, tag, path, "private element without a private creator")
                        continue
                    decision = profile.private.get((creator, group, element & 0xFF))
                    if decision is None:
                        decision = profile.private_default
                    if fast and self._resolve(decision, tag, path) is Action.REMOVE:
                        del ds[tag]
                        continue
                    if self._apply(ds, tag, decision, path):
                        used_blocks.add((group, element >> 8))
                continue
            if element == 0:
                self._remove(ds, tag, path, "group length: recomputed or dropped on write")
                continue
            if verdicts is not None:
                # The common cases at the top level, one look-up: kept unchanged (never
                # decoded: explicit VR tells the VR), or removed.
                verdict = verdicts.get(int(tag))  # an int: pydicom's tags compare in Python
                if verdict is None:
                    verdict = verdicts[int(tag)] = self._verdict(tag)
                if verdict is _KEPT:
                    vr = elem.VR
                    if vr is not None and vr not in _SWEPT_VRS:
                        continue
                elif verdict is _REMOVED:
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
                    # Instance UIDs replaced, class UIDs kept: what _apply would do for a UI
                    # element (U, or K with UIDs replaced), without its bookkeeping.
                    if int(tag) not in CLASS_UID_TAGS:
                        self._uids(ds, tag, "UI", "")
                    continue
                if code is Action.KEEP:
                    vr = elem.VR
                    if vr is not None and vr not in _SWEPT_VRS:
                        continue
                elif self._resolve(decision, tag, path) is Action.REMOVE:
                    del ds[tag]
                    continue
            self._apply(ds, tag, decision, path)
        for creator_tag in creator_tags:
            if (creator_tag >> 16, creator_tag & 0xFFFF) in used_blocks:
                self._report(path, creator_tag, "LO", "K", "private creator of a kept block")
            else:
                self._remove(ds, creator_tag, path, "private creator of a block with nothing kept")

    # ---------------------------------------------------------------------------------------
    def _apply(self, ds: Dataset, tag: int, decision: Decision, path: tuple[str, ...]) -> bool:
        """Apply one decision; True when the element stays (kept or replaced)."""
        raw = ds.get_item(tag, keep_deferred=True)
        vr = _vr_of(raw, tag)
        action = self._resolve(decision, tag, path)
        source = decision.source
        if action is Action.CLEAN:
            cleaned = self._clean(ds, tag, decision, vr, path)
            if cleaned is not None:
                return cleaned
            action, source = self._clean_fallback(decision, vr, tag, path)
        if action is Action.REMOVE:
            del ds[tag]
            self._report(path, tag, vr, "X", source)
            return False
        if action is Action.KEEP:
            if vr == "SQ":
                self._sequence(ds, tag, path)
                self._report(path, tag, vr, "K", source)
                return True
            return self._keep(ds, tag, raw, vr, path, source)
        if action is Action.UID:
            if vr == "SQ":
                if not self._references(ds, tag, raw):
                    self._sequence(ds, tag, path)
            else:
                self._uids(ds, tag, vr, source)
            self._report(path, tag, vr, "U", source)
            return True
        if action is Action.EMPTY:
            ds[tag] = DataElement(
                tag, vr, Sequence() if vr == "SQ" else None, validation_mode=_pydicom_config.IGNORE
            )
            self._report(path, tag, vr, "Z", source)
            return True
        if action is Action.DUMMY:
            if vr == "SQ":
                return self._dummy_sequence(ds, tag, path, source)
            ds[tag] = DataElement(tag, vr, self._dummy(ds, tag, vr))
            self._report(path, tag, vr, "D", source)
            return True
        # REPLACE
        assert decision.value is not None
        value = render_template(decision.value, self.fields)
        if vr == "SQ":
            # A text cannot stand for a sequence (NiDB's seeds try): remove it instead.
            del ds[tag]
            self._report(path, tag, vr, "X", source + " (a sequence cannot take a text: removed)")
            return False
        if vr in ("UN", "OB", "OW"):
            # A text (the VR unknown to the reader: implicit VR private elements) is padded
            # as text is, with a space: a NUL would be invalid once the VR is known (LO).
            data = value.encode("ascii", "replace")
            ds[tag] = DataElement(tag, vr, data + b" " if len(data) % 2 else data)
        else:
            _validate(tag, vr, value)
            ds[tag] = DataElement(tag, vr, value)
        self._report(path, tag, vr, "replace", source)
        return True

    def _references(self, ds: Dataset, tag: int, raw: DataElement | RawDataElement) -> bool:
        """A reference sequence still as read (items of SOP Class and Instance UIDs only)
        remapped in its bytes, without decoding it: True when done. The same as walking it,
        where the profile maps instance UIDs and keeps class UIDs; not when explaining (the
        walk reports each element)."""
        profile = self.engine.profile
        if (
            self.explain
            or self.structured
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
        value = encoding.remap_references(raw.value, raw.is_implicit_VR, self._map_uid)
        if value is None:
            return False
        # value_tell -1: not the input's bytes any more (the writer must not copy those).
        ds[tag] = raw._replace(value=value, length=len(value), value_tell=-1)
        return True

    def _verdict(self, tag: int) -> object:
        """What a public element at the top level comes to, before looking at it: kept (if
        its VR needs no sweep), removed, or a closer look. The walk remembers it per IOD."""
        decision = self.engine.profile.public(tag)
        if decision.code is Action.KEEP:
            verdict = _KEPT
        elif self._resolve(decision, tag, ()) is Action.REMOVE:
            verdict = _REMOVED
        else:
            verdict = _LOOK
        return verdict

    def _resolve(self, decision: Decision, tag: int, path: tuple[str, ...]) -> Action:
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
        key = ">".join(_collapse((*(p.partition("[")[0] for p in path), keyword)))
        return code.resolve(self.types.get(key))

    def _clean(
        self, ds: Dataset, tag: int, decision: Decision, vr: str, path: tuple[str, ...]
    ) -> bool | None:
        """C: the option's cleaner; None when it cannot clean this element (the caller then
        applies the Basic Profile's action). True when the element stays."""
        option = decision.option
        if option is Option.RETAIN_LONG_MODIFIED_DATES:
            return self._apply(
                ds, tag, Decision(Action.KEEP, decision.source + " (dates shifted)"), path
            )
        cleaning = CLEANERS.get(option) if option is not None else None
        if cleaning is None:
            return None
        source = decision.source
        vr = structured.repeater_vr(tag, vr)
        if vr == "SQ":
            self._sequence(ds, tag, path, structured=True)
            self._report(path, tag, vr, "C", source + " (items cleaned)")
            return True
        if vr in TEXT_VRS:
            return self._clean_text(ds, tag, vr, path, source)
        if cleaning is Cleaning.GRAPHICS and vr not in _NOT_GRAPHIC_VRS:
            # Overlay and curve bitmaps, geometry and numbers: kept as they are.
            self._report(path, tag, vr, "K", source + " (graphics kept)")
            return True
        return None

    def _clean_fallback(
        self, decision: Decision, vr: str, tag: int, path: tuple[str, ...]
    ) -> tuple[Action, str]:
        fallback = decision.fallback or Code.X
        action = self._resolve(Decision(fallback, decision.source), tag, path)
        return action, decision.source + (
            f" (VR {vr} cannot be cleaned: the Basic Profile's {fallback.value})"
        )

    def _clean_text(
        self, ds: Dataset, tag: int, vr: str, path: tuple[str, ...], source: str
    ) -> bool | None:
        """Replace the identifying spans of a text element; None if it cannot be done."""
        value = ds[tag].value
        if isinstance(value, bytes):
            return None  # not decodable as text
        values = [str(v) for v in _as_list(value) if v is not None]
        limit = VR_MAX_LENGTH.get(vr)
        results = [self.engine.cleaner.clean(v, self.identifiers, max_length=limit) for v in values]
        if vr == "CS" and any(r.changed for r in results):
            return None  # a code string cannot take a token: the Basic Profile's action
        new = [r.text for r in results]
        if any(r.changed for r in results):
            stored: Any = new if isinstance(value, MutableSequence) else (new[0] if new else "")
            ds[tag] = DataElement(tag, vr, stored)
        summary = _summarise(results)
        self._report(path, tag, vr, "C", f"{source} (cleaned: {summary})")
        return True

    def _in_structure(self, ds: Dataset, tag: int, decision: Decision) -> Decision:
        vr = _vr_of(ds.get_item(tag, keep_deferred=True), tag)
        profile = self.engine.profile
        return structured.decision_in_structure(
            tag,
            vr,
            decision,
            default=profile.public_default,
            clean_text=not self.dummy_text,
            keep_dates=self.offset is not None
            or Option.RETAIN_LONG_FULL_DATES in profile.profile.options,
        )

    def _dummy_sequence(self, ds: Dataset, tag: int, path: tuple[str, ...], source: str) -> bool:
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
            self._report(path, tag, "SQ", "D", source + " (empty sequence kept)")
            return True
        if tag in structured.CONTENT_TREE_SEQUENCES:
            if self._cleans_items(tag):
                self._sequence(ds, tag, path, structured=True)
                self._report(path, tag, "SQ", "D", source + " (items cleaned)")
                return True
            if Risk.STRUCTURED_CONTENT not in self.engine.profile.profile.allow:
                raise _WithholdError(
                    Risk.STRUCTURED_CONTENT, _content_tree_reason(path, tag, source)
                )
            self._sequence(ds, tag, path)
            self._report(path, tag, "SQ", "K", source + " (allowed by the profile)")
            return True
        if structured.is_code_sequence(tag):
            ds[tag] = DataElement(
                tag, "SQ", Sequence([structured.dummy_code_item()]),
                validation_mode=_pydicom_config.IGNORE,
            )  # fmt: skip
            self._report(path, tag, "SQ", "D", source + " (one dummy code item)")
            return True
        self._sequence(ds, tag, path, structured=True, dummy=not self.structured)
        self._report(path, tag, "SQ", "D", source + " (items cleaned by the table)")
        return True

    def _cleans_items(self, tag: int) -> bool:
        """A Basic Profile D sequence whose items clean-structured-content cleans."""
        options = self.engine.profile.profile.options
        return tag in structured.CLEANED_D_SEQUENCES and (
            Option.CLEAN_STRUCTURED_CONTENT in options
        )

    def _keep(
        self,
        ds: Dataset,
        tag: int,
        raw: DataElement | RawDataElement,
        vr: str,
        path: tuple[str, ...],
        source: str,
    ) -> bool:
        profile = self.engine.profile
        if vr == "UN" and isinstance(raw.value, bytes) and raw.value.startswith(_ITEM_TAG_LE):
            # A sequence pydicom could not parse: its items cannot be de-identified.
            del ds[tag]
            self._report(path, tag, vr, "X", source + " (an unparsed sequence: removed)")
            return False
        if vr == "UI" or (vr == "UN" and tag >> 16 & 1):
            if profile.replace_uids and tag not in CLASS_UID_TAGS:
                changed = self._uids(ds, tag, vr, source)
                self._report(path, tag, vr, "U" if changed else "K", source)
                return True
        elif vr in _DATE_VRS and self.offset is not None:
            self._shift(ds, tag, vr, path, source)
            return tag in ds
        elif tag == _PATIENT_AGE:
            self._cap_age(ds, tag)
        self._report(path, tag, vr, "K", source)
        return True

    # ---------------------------------------------------------------------------------------
    def _sequence(
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

    def _uids(self, ds: Dataset, tag: int, vr: str, source: str) -> bool:
        """Replace every instance UID of one element; True if anything changed."""
        raw = ds.get_item(tag, keep_deferred=True)
        text = _ascii_value(raw) if isinstance(raw, RawDataElement) and vr == "UI" else None
        if text is not None:
            # Undecoded: the UIDs are read from the bytes, as pydicom would decode them.
            old = [part.strip("\x00 ") for part in text.split("\\")]
            mapped = [self._map_uid(uid) for uid in old]
            if mapped == old:
                return False
            ds[tag] = DataElement(tag, "UI", mapped if len(mapped) > 1 else mapped[0],
                                  validation_mode=_pydicom_config.IGNORE)  # fmt: skip
            return True
        elem = ds[tag]
        if vr == "UI":
            values = _as_list(elem.value)
            new = [self._map_uid(str(v)) for v in values]
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
                mapped = "\\".join(self._map_uid(p) for p in parts)
                elem.value = _pad(mapped.encode("ascii"))
                return True
        return False

    def _map_uid(self, uid: str) -> str:
        value = uid.strip("\x00 ")
        if not value or value in UID_dictionary:
            return value
        new = self.engine.pseudonymizer.uid(value)
        self.uid_map[value] = new
        return new

    def _shift(self, ds: Dataset, tag: int, vr: str, path: tuple[str, ...], source: str) -> None:
        assert self.offset is not None
        shift: Callable[[str, int], str] = shift_da if vr == "DA" else shift_dt
        elem = ds[tag]
        values = [str(v) for v in _as_list(elem.value) if v is not None]
        if not values or all(not v for v in values):
            self._report(path, tag, vr, "K", source)
            return
        try:
            shifted = [shift(v, self.offset) if v else "" for v in values]
        except DateError:
            ds[tag] = DataElement(tag, vr, None)
            self._report(path, tag, vr, "Z", source + " (not a valid date: emptied)")
            return
        ds[tag] = DataElement(tag, vr, shifted if len(shifted) > 1 else shifted[0])
        self._report(path, tag, vr, "shift", source)

    def _cap_age(self, ds: Dataset, tag: int) -> None:
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

    def _dummy(self, ds: Dataset, tag: int, vr: str) -> Any:
        if vr == "UI":
            original = _text(ds, tag)
            return (
                self._map_uid(original)
                if original
                else self.engine.pseudonymizer.uid(f"dummy:{tag:08X}")
            )
        if tag == 0x00100020 or tag == 0x00100010:
            return self.fields["pseudonym"]
        if vr == "PN" and self.structured:
            return self._person(ds, tag)
        return dummy_value(vr)

    def _person(self, ds: Dataset, tag: int) -> Any:
        """Keyed pseudonyms for the names of a PN element in a cleaned structure."""
        names = [str(v) for v in _as_list(ds[tag].value) if v is not None and str(v).strip()]
        if not names:
            return dummy_value("PN")
        patient = structured.person_key(self.patient_name)
        new = [
            self.fields["pseudonym"]
            if patient and structured.person_key(name) == patient
            else structured.person_pseudonym(self.engine.pseudonymizer, name)
            for name in names
        ]
        return new if len(new) > 1 else new[0]

    def _remove(self, ds: Dataset, tag: int, path: tuple[str, ...], source: str) -> None:
        raw = ds.get_item(tag, keep_deferred=True)
        vr = _vr_of(raw, tag)
        del ds[tag]
        self._report(path, tag, vr, "X", source)

    def _report(self, path: tuple[str, ...], tag: int, vr: str, action: str, source: str) -> None:
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


class Cleaning(StrEnum):
    """How an option's C (clean) action cleans an element (see :mod:`dicomveil.cleaners.text` and
    :mod:`dicomveil.cleaners.structured`)."""

    TEXT = "text"  # free text: identifying spans replaced by tokens; sequences walked
    STRUCTURE = "structure"  # sequences walked with names, texts and dates cleaned
    GRAPHICS = "graphics"  # bitmaps, geometry and numbers kept; texts cleaned


# The cleaner of each option's C column. An element a cleaner cannot handle (a binary
# MakerNote, a code string that would need a token) gets the Basic Profile's action.
CLEANERS: dict[Option, Cleaning] = {
    Option.CLEAN_DESCRIPTORS: Cleaning.TEXT,
    Option.RETAIN_PATIENT_CHARACTERISTICS: Cleaning.TEXT,
    Option.CLEAN_STRUCTURED_CONTENT: Cleaning.STRUCTURE,
    Option.CLEAN_GRAPHICS: Cleaning.GRAPHICS,
}
_NOT_GRAPHIC_VRS = frozenset({"DA", "DT", "TM", "PN", "UI", "UN", "SQ"})


def _encapsulated_note(ds: Dataset) -> str:
    """The warning for an encapsulated document a profile allows: never cleaned."""
    what = "encapsulated document allowed by the profile: its content (PDF, CDA, ...) "
    if 0x00420011 not in ds:
        return what + "was not cleaned: removed"
    value = ds.get_item(0x00420011, keep_deferred=True).value
    if value in (None, b"", dummy_value("OB")):
        return what + "was not cleaned: replaced by a dummy value"
    return what + "was not cleaned: kept as it was"


def _summarise(results: Iterable[Cleaned]) -> str:
    """What the cleaner replaced in one element: categories and counts, never values."""
    counts: Counter[Category] = Counter()
    truncated = False
    for result in results:
        counts.update(result.counts())
        truncated = truncated or result.truncated
    text = ", ".join(c.counted(counts[c]) for c in Category if counts[c])
    return (text or "nothing identifying found") + (
        "; truncated to fit the VR" if truncated else ""
    )


def _sop_name(uid: str) -> str:
    """A SOP class by name where the dictionary knows it (never an instance UID)."""
    entry = UID_dictionary.get(uid)
    return str(entry[0]) if entry else uid


def _content_tree_reason(path: tuple[str, ...], tag: int, source: str) -> str:
    """Why an SR content tree withholds the object (checked before the walk at the top
    level, and in the walk wherever else one stands)."""
    return (
        f"{_element_path(path, tag)}: an SR content tree ({source}); "
        "clean-structured-content cleans it"
    )


def _element_path(path: tuple[str, ...], tag: int) -> str:
    """Where an element is, for reasons and reports: ``A[0]>B (GGGG,EEEE)``; no values."""
    keyword = keyword_for_tag(tag) or "element"
    return ">".join((*path, f"{keyword} ({tag >> 16:04X},{tag & 0xFFFF:04X})"))


def _collapse(path: Iterable[str]) -> Iterator[str]:
    """SR content trees recurse: ContentSequence>ContentSequence>X is typed as one level."""
    previous = None
    for part in path:
        if part == "ContentSequence" and previous == "ContentSequence":
            continue
        previous = part
        yield part


def _vr_of(raw: DataElement | RawDataElement, tag: int) -> str:
    vr = raw.VR
    if vr is None or vr == "UN" or " or " in vr:
        if known_tag(tag):
            dict_vr = dictionary_VR(tag)
            if " or " not in dict_vr:
                return str(dict_vr)
            return str(vr or "UN") if vr and " or " not in vr else "OB"
        return str(vr or "UN")
    return str(vr)


def _creator(ds: Dataset, tag: int) -> str:
    raw = ds.get_item(tag, keep_deferred=True)
    value = raw.value
    if isinstance(value, bytes):
        return value.decode("latin-1").strip("\x00 ")
    return str(value or "").strip("\x00 ")


def _text(ds: Dataset, tag: int) -> str:
    """The string value of a (short) element, '' when absent or empty."""
    elem = ds.get_item(tag, keep_deferred=True)
    if elem is None:
        return ""
    if isinstance(elem, RawDataElement):
        raw = _ascii_value(elem)
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


def _ascii_value(elem: RawDataElement) -> str | None:
    """The value of a raw string element with ASCII bytes, undecoded by pydicom; None when
    pydicom must decode it (another VR, a deferred value, other characters)."""
    value = elem.value
    if elem.VR not in _ASCII_STRING_VRS or not isinstance(value, bytes) or not value.isascii():
        return None
    return value.decode("ascii")


def _has_pixels(ds: Dataset) -> bool:
    return any(t in ds for t in (0x7FE00010, 0x7FE00008, 0x7FE00009))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (MultiValue, list, tuple)):
        return list(value)
    return [value]


def _pad(data: bytes) -> bytes:
    return data + b"\x00" if len(data) % 2 else data


def _validate(tag: int, vr: str, value: str) -> None:
    try:
        from pydicom.valuerep import validate_value

        validate_value(vr, value, _pydicom_config.RAISE)
    except ValueError:
        raise DeidentificationError(
            f"the profile's replacement is not valid for VR {vr}",
            tag=f"({tag >> 16:04X},{tag & 0xFFFF:04X})",
        ) from None
