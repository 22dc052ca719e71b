"""The de-identification engine: walks a dataset and applies a compiled profile.

Pure: it changes a pydicom :class:`~pydicom.dataset.Dataset` in memory and returns what it
did. Reading, writing, naming files, running in parallel and reporting live elsewhere
(:mod:`dicomveil.io`, :mod:`dicomveil.runs`), so the CLI, a gateway and a UI share it.

Elements the profile keeps unchanged are never decoded: pydicom's raw elements pass through
untouched, and bulk values (pixel data) are not part of the dataset the engine sees.
"""

from __future__ import annotations

import datetime as _dt
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping
from collections.abc import Sequence as Many
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Final

from pydicom import config as _pydicom_config
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from dicomveil._version import __version__
from dicomveil.cleaners import CLEANERS
from dicomveil.cleaners.text import Identifiers, TextCleaner
from dicomveil.engine.handlers import WithholdError
from dicomveil.engine.memo import Remembered
from dicomveil.engine.report import ElementReport
from dicomveil.engine.risks import (
    check_risks,
    encapsulated_note,
    is_encapsulated_document,
)
from dicomveil.engine.values import check_lengths, text_of
from dicomveil.engine.walk import Walk
from dicomveil.errors import CrosswalkError, ProfileError
from dicomveil.identity.crosswalk import Crosswalk
from dicomveil.identity.pseudonyms import Pseudonymizer
from dicomveil.io.encoding import Encoder, Encodings
from dicomveil.profiles import Base, CompiledProfile, generalize
from dicomveil.standard import conditions, tables
from dicomveil.standard.actions import Action, Code
from dicomveil.standard.options import BASIC_PROFILE_CODE, Option
from dicomveil.standard.risks import Risk

if TYPE_CHECKING:
    from dicomveil.identity.envelope import Recipient


@dataclass
class Result:
    """What the engine did to one dataset.

    Attributes
    ----------
    dataset : pydicom.dataset.Dataset or None
        The de-identified dataset, or None when it is withheld.
    withheld : Risk or None
        Why it is withheld (the risk), when it is.
    withheld_detail : str
        The reason in words: the element, value class and what would let it through.
    patient_pseudonym : str
        The patient's pseudonym (or crosswalk study ID); also of a withheld dataset ("" when
        it has none to give).
    date_offset_days : int or None
        The patient's date shift, when dates are shifted.
    uid_map : dict of str to str
        Original instance UID -> new UID, for every UID replaced (the dataset's own and
        those it refers to).
    instance_uids : tuple of str
        The dataset's own original Study, Series and SOP Instance UIDs, in that order (""
        for one it lacks): which of :attr:`uid_map`'s UIDs name this instance rather than
        one it refers to (a prior study, a source image).
    patient_id_original : str
        The original PatientID (for the crosswalk and the audit trail; never logged).
    reports : list of ElementReport
        One per decision, when explaining.
    notes : list of str
        Warnings for the user (no values).
    """

    dataset: Dataset | None
    withheld: Risk | None = None
    withheld_detail: str = ""
    patient_pseudonym: str = ""
    date_offset_days: int | None = None
    uid_map: dict[str, str] = field(default_factory=dict)
    instance_uids: tuple[str, str, str] = field(default=("", "", ""), repr=False)
    patient_id_original: str = field(default="", repr=False)
    reports: list[ElementReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # warnings for the user (no values)

    @property
    def ok(self) -> bool:
        """True when the dataset was de-identified (not withheld)."""
        return self.dataset is not None


class Engine:
    """Applies one compiled profile with one key; reusable for any number of datasets.

    Parameters
    ----------
    profile : CompiledProfile
        The profile, compiled (``Profile.compile()``).
    pseudonymizer : Pseudonymizer
        Keyed pseudonyms, UIDs and date shifts.
    crosswalk : Crosswalk, optional
        Study IDs by original PatientID, used instead of keyed pseudonyms.
    today : datetime.date, optional
        The date for the ``{today}`` template (default: today).
    patients : Mapping of str to Identifiers, optional
        What every file of each patient holds, by :meth:`patient_values`'s key (a run's
        first pass): the free-text cleaners look for all of it, not only for what the file
        itself holds.
    remember : bool, default False
        Learn each patient's values from the files this engine de-identifies, and look for
        them in the patient's later files (a gateway: it cannot read ahead).
    """

    def __init__(
        self,
        profile: CompiledProfile,
        pseudonymizer: Pseudonymizer,
        *,
        crosswalk: Crosswalk | None = None,
        today: _dt.date | None = None,
        patients: Mapping[str, Identifiers] | None = None,
        remember: bool = False,
        recipients: Many[Recipient] = (),
    ) -> None:
        self.profile = profile
        self.pseudonymizer = pseudonymizer
        self.crosswalk = crosswalk
        self.today = (today or _dt.date.today()).strftime("%Y%m%d")
        self.cleaner = TextCleaner(profile.profile.clean)
        self._cleans = any(
            CLEANERS[option].reads_identifiers
            for option in profile.profile.options
            if option in CLEANERS
        )
        self.patients: Mapping[str, Identifiers] = patients or {}
        # Learned values of the latest patients (``remember``): memory stays flat.
        self._learned: OrderedDict[str, Identifiers] | None = OrderedDict() if remember else None
        self._institutions: frozenset[str] = frozenset()
        # (code, tag, IOD) -> action, for top-level elements.
        self.top_level_actions: dict[tuple[Code, int, str | None], Action] = {}
        # IOD -> tag -> kept / removed / look, for top-level public elements.
        self.top_level_verdicts: dict[str | None, dict[int, object]] = {}
        # A top-level sequence's bytes and what its walk depends on -> (its value walked and
        # encoded, the UIDs it mapped): see Walk.sequence.
        self.walked_sequences: Remembered[tuple[bytes, tuple[tuple[str, str], ...]]] = Remembered(
            _REMEMBERED_SEQUENCES, _REMEMBERED_BYTES
        )
        # A top-level text's bytes and what cleaning it depends on -> the bytes it is stored
        # as (see Walk.cleaned_key).
        self.cleaned_texts: Remembered[bytes] = Remembered(_REMEMBERED_TEXTS, _REMEMBERED_BYTES)
        # The De-identification Method Code Sequence's value, per encoding (_method_codes).
        self._method_elements: dict[tuple[object, ...], RawDataElement] = {}
        self._made: dict[tuple[object, ...], RawDataElement] = {}  # see made()
        # The reversible option: what it changes is sealed for these recipients.
        self.recipients = tuple(recipients)
        self.reversible = Option.REVERSIBLE in profile.profile.options and not profile.copy
        if self.reversible and not self.recipients:
            raise ProfileError(
                "the reversible option needs at least one recipient certificate "
                "(--recipient CERT.pem)"
            )

    # ---------------------------------------------------------------------------------------
    def check_risks(
        self, ds: Dataset, has_pixel_data: bool | None = None
    ) -> tuple[Risk, str] | None:
        """The first risk that withholds ``ds`` under the profile, if any.

        Parameters
        ----------
        ds : pydicom.dataset.Dataset
            The object, as read.
        has_pixel_data : bool, optional
            Whether it has pixel data the caller streams separately (default: look at
            ``ds``).

        Returns
        -------
        tuple of (Risk, str) or None
            The risk and its reason (see :func:`dicomveil.engine.risks.check_risks`).
        """
        return check_risks(self.profile, ds, has_pixel_data)

    def deidentify(
        self, ds: Dataset, *, explain: bool = False, has_pixel_data: bool | None = None
    ) -> Result:
        """De-identify ``ds`` in place.

        Parameters
        ----------
        ds : pydicom.dataset.Dataset
            The dataset, as read (raw elements stay undecoded where the profile keeps them).
        explain : bool
            Record one :class:`ElementReport` per decision.
        has_pixel_data : bool, optional
            Tells the risk checks about pixel data the caller streams separately.

        Returns
        -------
        Result
            The dataset, or why it was withheld.

        Raises
        ------
        CrosswalkError
            With a crosswalk, when the patient is not in it.
        DeidentificationError
            When a rule's replacement is not valid for the element's VR.
        """
        if self.profile.copy:
            return Result(dataset=ds, patient_pseudonym=self._identity(ds)[0])
        check_lengths(ds)  # a damaged length fails the file before any value is read
        risk = self.check_risks(ds, has_pixel_data)
        if risk is not None:
            subject = self.subject_of(ds)  # the dataset is as read: filed under its subject
            return Result(
                dataset=None, withheld=risk[0], withheld_detail=risk[1], patient_pseudonym=subject
            )
        pseudonym, patient_key, original_id = self._identity(ds)
        offset = (
            self.pseudonymizer.date_offset_days(patient_key) if self.profile.shift_dates else None
        )
        sop_class = text_of(ds, 0x00080016)
        iod = tables.sop_class_iod(sop_class) if sop_class else None
        encapsulated = is_encapsulated_document(ds, sop_class)
        walk = Walk(
            engine=self,
            types=tables.attribute_types(iod) if iod else {},
            iod=iod,
            fields={
                "pseudonym": pseudonym,
                "today": self.today,
                "patient_id_hash": self.pseudonymizer.patient_id_hash(
                    text_of(ds, 0x00100021), text_of(ds, 0x00100020)
                ),
                "issuer_hash": self.pseudonymizer.issuer_hash(text_of(ds, 0x00100021)),
            },
            offset=offset,
            explain=explain,
            identifiers=self._identifiers(ds, patient_key, original_id) if self._cleans else None,
            patient_name=text_of(ds, 0x00100010),
            patient_id=original_id,
            birth_date=text_of(ds, 0x00100030),
        )
        before = frozenset(t for t in conditions.watched() if t in ds)
        instance_uids = (text_of(ds, 0x0020000D), text_of(ds, 0x0020000E), text_of(ds, 0x00080018))
        original = None
        if self.reversible:  # cryptography and asn1crypto: loaded only for this option
            from dicomveil.engine import reversible

            original = reversible.snapshot(ds)
        try:
            with warnings.catch_warnings():
                # Real-world values break VR rules often; reading them must not warn or fail.
                warnings.simplefilter("ignore", UserWarning)
                walk.dataset(ds, ())
            conditions.apply(
                ds, before, lambda tag, vr, action, why: walk.report((), tag, vr, action, why)
            )
        except WithholdError as exc:
            return Result(
                dataset=None,
                withheld=exc.risk,
                withheld_detail=exc.detail,
                patient_pseudonym=pseudonym,
            )
        if self.profile.profile.generalize.active:
            for tag, vr, how in generalize.apply(ds, self.profile.profile.generalize):
                walk.report((), tag, vr, "generalize", f"the profile's generalize table: {how}")
        self._record(ds, offset)
        if original is not None:
            from dicomveil.engine import reversible

            sealed = reversible.sealed_changes(original, ds, self.recipients)
            ds.add_new(reversible.ENCRYPTED_ATTRIBUTES, "SQ", Sequence([sealed]))
        notes = [encapsulated_note(ds)] if encapsulated else []
        return Result(
            dataset=ds,
            patient_pseudonym=pseudonym,
            date_offset_days=offset,
            uid_map=walk.uid_map,
            instance_uids=instance_uids,
            patient_id_original=original_id,
            reports=walk.reports,
            notes=notes,
        )

    # ---------------------------------------------------------------------------------------
    @property
    def reads_patients(self) -> bool:
        """Whether a free-text cleaner of the profile looks for the patient's values (then a
        run's first pass gathers them: :meth:`patient_values`)."""
        return self._cleans and not self.profile.copy

    @property
    def patient_elements(self) -> Callable[[int, str | None], bool]:
        """Which top-level elements :meth:`patient_values` reads: (tag, VR as read, None in
        implicit VR) -> True for those naming the patient and those that may hold an
        identifying value; a reader may leave out every other (a run's first pass does)."""
        return _patient_element

    def patient_values(self, ds: Dataset) -> tuple[str, Identifiers]:
        """The patient's key and the identifying values this file holds (for a run's first
        pass: ``patients`` of a later engine is these, pooled per key).

        Parameters
        ----------
        ds : pydicom.dataset.Dataset
            A file of the patient, as read (all of it, or the elements
            :meth:`patient_elements` keeps).

        Returns
        -------
        tuple of (str, Identifiers)
            The key the engine knows the patient by, and the file's values.
        """
        key, original_id = self._patient_key(ds)
        return key, Identifiers.from_dataset(ds, extra_ids=(original_id,))

    def _identifiers(self, ds: Dataset, key: str, original_id: str) -> Identifiers:
        """The file's values, with what the run knows of its patient from other files."""
        known = self.patients.get(key)
        if known is not None and self._learned is None:
            return known  # the first pass read this file too: its values are in already
        own = Identifiers.from_dataset(ds, extra_ids=(original_id,))
        pooled = own.union(known) if known is not None else own
        learned = self._learned
        if learned is not None:
            before = learned.pop(key, None)
            pooled = pooled.union(before) if before is not None else pooled
            learned[key] = pooled
            while len(learned) > _REMEMBERED_PATIENTS:
                learned.popitem(last=False)
            # The institutions of every patient received (as a run's first pass pools them).
            places = self._institutions
            if len(places) < _REMEMBERED_INSTITUTIONS and not pooled.institutions <= places:
                self._institutions = places | pooled.institutions
            pooled = pooled.union(Identifiers(institutions=self._institutions))
        return pooled

    def _patient_key(self, ds: Dataset) -> tuple[str, str]:
        """(patient key, original PatientID): who the file is of, as :meth:`_identity`
        keys pseudonyms and date shifts."""
        patient_id = text_of(ds, 0x00100020)
        issuer = text_of(ds, 0x00100021)
        if patient_id:
            return f"id\x00{issuer}\x00{patient_id}", patient_id
        name, birth = text_of(ds, 0x00100010), text_of(ds, 0x00100030)
        study = text_of(ds, 0x0020000D)
        return (f"name\x00{name}\x00{birth}" if name else f"study\x00{study}"), patient_id

    def subject_of(self, ds: Dataset) -> str:
        """The subject's pseudonym (or crosswalk study ID) for a dataset as read, without
        de-identifying it: what the audit trail files a withheld input under.

        Parameters
        ----------
        ds : pydicom.dataset.Dataset
            The dataset, as read.

        Returns
        -------
        str
            The pseudonym; "" when there is none to give (a crosswalk without the patient)
            or the patient's elements cannot be read.
        """
        try:
            return self._identity(ds)[0]
        except Exception:  # a crosswalk without the patient, a value that cannot be decoded
            return ""

    def _identity(self, ds: Dataset) -> tuple[str, str, str]:
        """(pseudonym, patient key, original PatientID) of the dataset's patient."""
        key, patient_id = self._patient_key(ds)
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
        charset = ds.get("SpecificCharacterSet", "ISO_IR 6")
        # PatientIdentityRemoved, DeidentificationMethod
        ds[0x00120062] = self.made(ds, 0x00120062, "CS", "YES", charset)
        ds[0x00120063] = self.made(ds, 0x00120063, "LO", methods, charset)
        if codes is None:
            return
        # The code items are shared by every dataset of this engine: nothing writes to them.
        ds[0x00120064] = self._method_codes(ds, codes, charset)
        options = self.profile.profile.options
        if offset is not None:
            flag = "MODIFIED"
        elif Option.RETAIN_LONG_FULL_DATES in options:
            flag = "UNMODIFIED"
        else:
            flag = "REMOVED"
        # LongitudinalTemporalInformationModified
        ds[0x00280303] = self.made(ds, 0x00280303, "CS", flag, charset)

    def made(
        self, ds: Dataset, tag: int, vr: str, value: str | list[str] | None, charset: Encodings
    ) -> DataElement | RawDataElement:
        """An element of the engine's own making, the same in many files (the method, an
        emptied element): in a dataset read from a file, a raw element of its encoding made
        once per engine and shared by every such dataset (a tuple: where pydicom reads it,
        it converts a copy for that dataset; the writer writes its bytes); else a new
        :class:`~pydicom.dataelem.DataElement`.

        Parameters
        ----------
        ds : pydicom.dataset.Dataset
            The dataset it goes into (its encoding, as read).
        tag : int
            The element's tag (public: pydicom gives a private element its creator).
        vr : str
            Its VR (not SQ).
        value : str or list of str or None
            Its value; None for an empty element.
        charset : str or list of str or None
            The dataset's Specific Character Set, as pydicom gives it.

        Returns
        -------
        RawDataElement or DataElement
            The element to store.
        """
        implicit, little = ds.original_encoding
        key: tuple[object, ...] = (
            tag,
            vr,
            value if not isinstance(value, list) else tuple(value),
            implicit,
            little,
            charset if isinstance(charset, str) or charset is None else tuple(charset),
        )
        known = self._made.get(key)
        if known is not None:
            return known
        element = DataElement(tag, vr, value, validation_mode=_pydicom_config.IGNORE)
        if implicit is None or little is None:
            return element  # built in memory: the writer encodes it
        data = Encoder.of(implicit=implicit, little=little).encoded(element, charset)
        if data is None:
            return element
        raw = _own_raw(tag, vr, data, implicit, little)
        if len(self._made) < _MADE_ELEMENTS:
            self._made[key] = raw
        return raw

    def _method_codes(
        self, ds: Dataset, codes: list[Dataset], charset: Encodings
    ) -> DataElement | RawDataElement:
        """The De-identification Method Code Sequence: encoded once per encoding of the
        files (the same items in every dataset), as the writer would encode them, and
        shared as a raw element (see :meth:`made`)."""
        implicit, little = ds.original_encoding
        key = (implicit, little, charset if isinstance(charset, str) else tuple(charset or ()))
        known = self._method_elements.get(key)
        if known is not None:
            return known
        element = DataElement(
            0x00120064, "SQ", Sequence(codes), validation_mode=_pydicom_config.IGNORE
        )
        if implicit is None or little is None:
            return element  # built in memory: the writer encodes it
        value = Encoder.of(implicit=implicit, little=little).value(element, charset)
        if value is None:
            return element
        raw = _own_raw(0x00120064, "SQ", value, implicit, little)
        self._method_elements[key] = raw
        return raw

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


# What _patient_key reads: Patient ID, Issuer of Patient ID, Patient's Name, Birth Date, Study
# Instance UID.
_PATIENT_KEY_TAGS: Final = frozenset({0x00100020, 0x00100021, 0x00100010, 0x00100030, 0x0020000D})


@lru_cache(maxsize=8192)
def _patient_element(tag: int, vr: str | None) -> bool:
    return tag in _PATIENT_KEY_TAGS or Identifiers.collects(tag, vr)


# Sequences walked and texts cleaned an engine remembers (Walk.sequence, Walk.cleaned_key):
# how many, and how many bytes (inputs and answers) in all.
_REMEMBERED_SEQUENCES = 512
_REMEMBERED_TEXTS = 4096
_REMEMBERED_BYTES = 16 << 20


def _own_raw(tag: int, vr: str, data: bytes, implicit: bool, little: bool) -> RawDataElement:
    """An element of the engine's making as a raw element of an encoding. value_tell -1:
    not the input's bytes (the writer writes them, never copies those)."""
    return RawDataElement(
        BaseTag(tag), None if implicit else vr, len(data), data, -1, implicit, little, True, False
    )


_MADE_ELEMENTS = 4096  # elements of its own making an engine shares (Engine.made)
_REMEMBERED_PATIENTS = 256  # patients an engine that learns as it goes remembers (the latest)
_REMEMBERED_INSTITUTIONS = 4096  # institution names it remembers (the first)
