"""What the file itself says about the patient: :class:`Identifiers`, every identifying
value one dataset holds at any depth (names, IDs, dates, phone numbers, e-mail addresses,
addresses, institutions), and the compiled search for those values in free text.
Knowledge is per file: a value that only another file of the same patient holds is not
known.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import date
from functools import lru_cache
from typing import Any, Final

from pydicom.datadict import dictionary_has_tag, dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from dicomveil.cleaners.text.dictionary import in_eponym, name_lists
from dicomveil.cleaners.text.spans import Basis, Category, Span
from dicomveil.cleaners.text.variants import (
    _SPLIT_PHRASE,
    _address_phrases,
    _date_forms,
    _id_variants,
    _initial_forms,
    _initialism,
    _institution_phrases,
    _name_words,
    _numbers_in,
    _phone_cores,
    _phones_in,
    _Phrases,
    _spelling_variants,
)
from dicomveil.cleaners.text.vocabulary import _digits, _vocabulary, fold
from dicomveil.standard.keywords import ID_KEYWORDS

__all__ = ["Identifiers"]


# Attributes whose values identify, by category (PN values are names wherever they are).
_ID_KEYWORDS: Final = ID_KEYWORDS | {
    "PlacerOrderNumberImagingServiceRequestRetired",
    "FillerOrderNumberImagingServiceRequestRetired",
    "DeviceSerialNumber",
    "StationAETitle",
    "UniqueDeviceIdentifier",
}
_NOT_ID_KEYWORDS: Final = frozenset(
    {"ClinicalTrialProtocolID", "ClinicalTrialTimePointID", "ClinicalTrialSeriesID"}
)
_PHONE_KEYWORDS: Final = frozenset(
    {
        "PatientTelephoneNumbers",
        "PatientTelecomInformation",
        "PersonTelephoneNumbers",
        "PersonTelecomInformation",
        "ReferringPhysicianTelephoneNumbers",
        "OrderCallbackPhoneNumber",
        "OrderCallbackTelecomInformation",
    }
)
_ADDRESS_KEYWORDS: Final = frozenset(
    {
        "PatientAddress",
        "InstitutionAddress",
        "PersonAddress",
        "ReferringPhysicianAddress",
        "RegionOfResidence",
        "PatientInstitutionResidence",
        "CurrentPatientLocation",
        "AssignedLocation",
    }
)
_INSTITUTION_KEYWORDS: Final = frozenset(
    {
        "InstitutionName",
        "InstitutionalDepartmentName",
        "IssuerOfPatientID",
        "IssuerOfAdmissionID",
        "StationName",
        "PerformedStationName",
        "ScheduledStationName",
        "PerformedLocation",
        "ScheduledProcedureStepLocation",
        "RequestedProcedureLocation",
        "VerifyingOrganization",
        "ResponsibleOrganization",
        "HumanPerformerOrganization",
        "RequestingService",
        "ClinicalTrialSiteName",
        "LocalNamespaceEntityID",
        "UniversalEntityID",
    }
)
_COLLECTED_VRS: Final = frozenset({"PN", "LO", "SH", "LT", "ST", "UT", "UC", "DA", "DT", "CS"})
_COLLECTED_CODES: Final = tuple(vr.encode() for vr in sorted(_COLLECTED_VRS))


@dataclass(frozen=True)
class Identifiers:
    """The identifying values of one patient that a cleaner can look for in free text.

    Values are kept as found; :meth:`from_dataset` collects them from every level of one
    dataset (the engine sees one file at a time). Never printed or logged.

    Parameters
    ----------
    names : frozenset of str, optional
        Person names (PN values, in DICOM form: ``"SMITH^JOHN"``).
    ids : frozenset of str, optional
        IDs: of the patient, accession numbers, study and procedure IDs, serial numbers, ...
    dates : frozenset of datetime.date, optional
        Dates (of birth, of the study, ...).
    phones : frozenset of str, optional
        Phone numbers.
    emails : frozenset of str, optional
        E-mail addresses.
    addresses : frozenset of str, optional
        Addresses, regions of residence and patient locations.
    institutions : frozenset of str, optional
        Institution, department and station names, issuers of IDs.
    """

    names: frozenset[str] = frozenset()
    ids: frozenset[str] = frozenset()
    dates: frozenset[date] = frozenset()
    phones: frozenset[str] = frozenset()
    emails: frozenset[str] = frozenset()
    addresses: frozenset[str] = frozenset()
    institutions: frozenset[str] = frozenset()

    def __repr__(self) -> str:  # never show values
        return "Identifiers(...)"

    def union(self, other: Identifiers) -> Identifiers:
        """The values of both (a patient's files pooled).

        Parameters
        ----------
        other : Identifiers
            Values of another file of the patient.

        Returns
        -------
        Identifiers
            Every value either holds.
        """
        return Identifiers(
            self.names | other.names,
            self.ids | other.ids,
            self.dates | other.dates,
            self.phones | other.phones,
            self.emails | other.emails,
            self.addresses | other.addresses,
            self.institutions | other.institutions,
        )

    @classmethod
    def from_dataset(cls, ds: Dataset, *, extra_ids: Iterable[str] = ()) -> Identifiers:
        """Every identifying value of ``ds`` (all sequence depths; private PN values too).

        Parameters
        ----------
        ds : pydicom.dataset.Dataset
            The dataset of one file; decoded values are not stored back into it.
        extra_ids : iterable of str, optional
            Further IDs of this patient (the crosswalk's original ID).

        Returns
        -------
        Identifiers
            The values found, sorted into their categories.
        """
        acc: dict[str, set[str]] = {k: set() for k in ("names", "ids", "phones", "addresses")}
        acc["institutions"] = set()
        acc["emails"] = set()
        dates: set[date] = set()
        for kind, values in _elements(ds):
            if kind == "dates":
                for value in values:
                    dates.update(_dates_in(value))
            elif kind == "phones":
                for value in values:
                    (acc["emails"] if "@" in value else acc["phones"]).add(value)
            else:
                acc[kind].update(values)
        acc["ids"].update(v.strip() for v in extra_ids if v.strip())
        return cls(
            names=frozenset(acc["names"]),
            ids=frozenset(acc["ids"]),
            dates=frozenset(dates),
            phones=frozenset(acc["phones"]),
            emails=frozenset(acc["emails"]),
            addresses=frozenset(acc["addresses"]),
            institutions=frozenset(acc["institutions"]),
        )

    @staticmethod
    def collects(tag: int, vr: str | None) -> bool:
        """Whether :meth:`from_dataset` looks at a top-level element of this tag and VR as
        read: one whose values it collects, or a sequence (its items may hold some). A
        dataset of only these elements gives the same values as the whole file.

        Parameters
        ----------
        tag : int
            The element's tag.
        vr : str or None
            Its VR as written; None when the file does not say (implicit VR).

        Returns
        -------
        bool
            True when the element may hold a value :meth:`from_dataset` collects.
        """
        if tag >> 16 in (0x0000, 0x0002, 0xFFFE):
            return False
        if (vr is None or (vr == "UN" and not tag >> 16 & 1)) and dictionary_has_tag(tag):
            vr = dictionary_VR(tag)  # implicit VR, or UN where the VR is known (as pydicom)
        if vr == "SQ" or (vr == "UN" and not tag >> 16 & 1 and _dictionary_sq(tag)):
            return True
        return vr is not None and _kind(tag, str(vr)) is not None

    def find(self, text: str, folded: str | None = None) -> list[Span]:
        """Where this patient's known values occur in ``text``.

        Parameters
        ----------
        text : str
            The text to search.
        folded : str or None, optional
            ``fold(text)`` if already computed; ``None``: folded here.

        Returns
        -------
        list of Span
            The spans of the known values (basis :attr:`Basis.DATASET`), not merged: they
            may overlap.
        """
        folded = fold(text) if folded is None else folded
        spans = _matcher(self).find(text, folded)
        if self.institutions:
            # the patient's own values first: a word that is a name and an institution's
            # word is the name
            found = {(s.start, s.end) for s in spans}
            spans.extend(
                s for s in _places_in(self.institutions, text) if (s.start, s.end) not in found
            )
        return spans


@lru_cache(maxsize=16)
def _matcher(known: Identifiers) -> _Matcher:
    """The compiled search for one patient's values but the institutions (:func:`_places`);
    the files of a series share it."""
    return _Matcher(replace(known, institutions=frozenset()))


@lru_cache(maxsize=16)
def _places(institutions: frozenset[str]) -> _Matcher:
    """The compiled search for institution names: apart, as a run gives every patient the
    same (those of the whole run, :mod:`dicomveil.runs.knowledge`), compiled once."""
    return _Matcher(Identifiers(institutions=institutions))


@lru_cache(maxsize=4096)
def _places_in(institutions: frozenset[str], text: str) -> tuple[Span, ...]:
    """Where the institution names occur in ``text``, remembered: a run gives every patient
    the same names (:func:`_places`), and its patients' files the same descriptions."""
    return tuple(_places(institutions).find(text, fold(text)))


@lru_cache(maxsize=4096)
def _kind(tag: int, vr: str) -> str | None:
    """What an element's values are ("names", "dates", "phones", "addresses",
    "institutions", "ids"), or None when they identify no one: decided before any value is
    decoded."""
    if vr not in _COLLECTED_VRS or (tag >> 16 & 1 and vr != "PN"):
        return None
    if vr == "PN":
        return "names"
    if vr in ("DA", "DT"):
        return "dates"
    keyword = keyword_for_tag(tag) or ""
    if keyword in _PHONE_KEYWORDS:
        return "phones"
    if keyword in _ADDRESS_KEYWORDS:
        return "addresses"
    if keyword in _INSTITUTION_KEYWORDS:
        return "institutions"
    if keyword in _ID_KEYWORDS or (
        keyword.endswith(("ID", "IDs")) and vr in ("LO", "SH") and keyword not in _NOT_ID_KEYWORDS
    ):
        return "ids"
    return None


def _elements(ds: Dataset) -> Iterator[tuple[str, list[str]]]:
    """(kind, string values) of the identifying elements (:func:`_kind`), at every depth,
    without storing decoded values back into the dataset (kept elements stay raw for the
    writer); a value a series repeats is decoded once (:func:`_values`)."""
    charset: tuple[str, ...] | None = None
    for stored, raw in list(ds._dict.items()):  # as stored: raw elements stay raw
        tag = int(stored)  # a plain int: compared and hashed in C (BaseTag's __eq__ is Python)
        if tag >> 16 in (0x0000, 0x0002) or tag >> 16 == 0xFFFE:
            continue
        vr = raw.VR
        if (vr is None or (vr == "UN" and not tag >> 16 & 1)) and dictionary_has_tag(tag):
            vr = dictionary_VR(tag)  # implicit VR, or UN where the VR is known (as pydicom)
        if vr == "SQ" or (vr == "UN" and not tag >> 16 & 1 and _dictionary_sq(tag)):
            if charset is None:
                charset = _charsets(ds)
            yield from _sequence(ds, tag, raw, charset)
            continue
        kind = _kind(tag, str(vr)) if vr is not None else None
        if kind is None or raw.value is None:
            continue
        if isinstance(raw, DataElement):
            values = _strings(raw.value)
        elif kind == "dates" and isinstance(raw.value, bytes):
            # ASCII in every character set: the digits as written (each file has its own
            # acquisition date-time; decoding it as a pydicom DT would parse it)
            values = _strings(raw.value.decode("latin-1").strip(" \x00").split("\\"))
        else:
            value = raw.value
            if charset is None:
                charset = _charsets(ds)
            key = (tag, str(vr), value, charset) if len(value) <= 256 else None
            known = _DECODED.get(key) if key is not None else None
            if known is None:
                elem = _decoded(ds, raw, charset)
                if elem is None:
                    continue
                known = _strings(elem.value)
                if key is not None:
                    if len(_DECODED) >= _MAX_DECODED:
                        _DECODED.clear()
                    _DECODED[key] = known
            values = known
        if values:
            yield kind, values


def _sequence(
    ds: Dataset, tag: int, raw: DataElement | RawDataElement, charset: tuple[str, ...]
) -> Iterator[tuple[str, list[str]]]:
    """What the items of a sequence hold; a sequence a series repeats byte for byte (the
    same request, procedure and code items in every file) is parsed once (``_SEQUENCES``),
    and one whose explicit-VR bytes name none of the VRs collected (references: UIDs only)
    not at all."""
    value = raw.value
    if (
        isinstance(raw, RawDataElement)
        and raw.VR == "SQ"
        and not raw.is_implicit_VR
        and isinstance(value, bytes)
        and not any(code in value for code in _COLLECTED_CODES)
    ):
        return  # explicit VR: every element says its VR; none that holds a value we collect
    key = None
    if isinstance(raw, RawDataElement) and isinstance(value, bytes) and len(value) <= 1 << 14:
        key = (tag, value, raw.is_implicit_VR, raw.is_little_endian, charset)
        known = _SEQUENCES.get(key)
        if known is not None:
            yield from known
            return
    found = [pair for item in _items(ds, tag) for pair in _elements(item)]
    if key is not None:
        if len(_SEQUENCES) >= _MAX_DECODED:
            _SEQUENCES.clear()
        _SEQUENCES[key] = found
    yield from found


def _strings(value: Any) -> list[str]:
    values = [str(v).strip() for v in _as_list(value) if v is not None]
    return [v for v in values if v]


# (tag, VR, raw bytes, character sets) -> decoded strings: a series repeats its patient's.
_DECODED: dict[tuple[int, str, bytes, tuple[str, ...]], list[str]] = {}
_MAX_DECODED: Final = 1 << 14
_SEQUENCES: dict[tuple[int, bytes, bool, bool, tuple[str, ...]], list[tuple[str, list[str]]]] = {}


def _items(ds: Dataset, tag: int) -> list[Dataset]:
    try:
        items = ds[tag].value
    except Exception:  # a sequence pydicom cannot parse: the engine removes it
        return []
    return [item for item in items or () if isinstance(item, Dataset)]


def _charsets(ds: Dataset) -> tuple[str, ...]:
    """The Python codecs of a dataset's character sets (pydicom gives a list, or one str)."""
    found = ds._character_set
    return (found,) if isinstance(found, str) else tuple(found)


def _decoded(ds: Dataset, raw: RawDataElement, charset: tuple[str, ...]) -> DataElement | None:
    """The value of a raw element, decoded without storing it in the dataset."""
    try:
        return convert_raw_data_element(raw, encoding=list(charset), ds=ds)
    except Exception:  # undecodable: nothing to look for
        return None


def _dictionary_sq(tag: int) -> bool:
    return dictionary_has_tag(tag) and dictionary_VR(tag) == "SQ"


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, (MultiValue, list, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return []
    return [value]


_YMD = re.compile(r"(?<!\d)(1[89]\d{2}|2\d{3})(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])")


def _dates_in(value: str) -> Iterator[date]:
    for m in _YMD.finditer(value):
        try:
            yield date(int(m[1]), int(m[2]), int(m[3]))
        except ValueError:
            continue


@lru_cache(maxsize=1024)
def _name_forms(value: str) -> tuple[tuple[str, ...], frozenset[str]]:
    """The words of a person name with their spelling variants, in order, and its initials:
    remembered, as the physicians and operators of a run are in every patient's values."""
    vocab = _vocabulary()
    words = sorted(_name_words(value, vocab))
    variants = tuple(v for word in words for v in sorted(_spelling_variants(word)))
    return variants, frozenset(_initial_forms(value, vocab))


@lru_cache(maxsize=1024)
def _sorted_date_forms(d: date) -> tuple[str, ...]:
    """:func:`_date_forms` in order, remembered: a study's date is in each of its files."""
    return tuple(sorted(_date_forms(d)))


_TRAILING_INITIAL: Final = re.compile(r",?\s([A-ZÀ-ÖØ-Þ])\.(?![^\W\d_])")


class _Matcher:
    """The search for the known values of one patient, built without compiling anything (a
    run meets each patient in a handful of files: a regular expression per patient would
    cost more to compile than to run): literals (dates, IDs, name words, initials) and
    phrases (addresses, institutions) by scanners, numbers and phone numbers by their
    digits, however grouped (:mod:`dicomveil.cleaners.text.variants`)."""

    def __init__(self, known: Identifiers) -> None:
        vocab = _vocabulary()
        literals: dict[str, Category] = {}  # folded text -> category
        phrases: dict[tuple[str, ...], Category] = {}  # several words
        numbers: set[str] = set()  # long numbers (digits), however grouped

        def literal(value: str, category: Category) -> None:
            if value:
                literals.setdefault(value, category)

        def phrase(value: str, category: Category) -> None:
            words = [w for w in _SPLIT_PHRASE.split(fold(value)) if w]
            if len(words) == 1:
                literal(words[0], category)
            elif words:
                phrases.setdefault(tuple(words), category)

        initials: set[str] = set()
        for value in sorted(known.ids):
            for variant in _id_variants(value):
                literal(fold(variant), Category.ID)
            digits = _digits(value).lstrip("0")
            if len(digits) >= 6 and len(digits) >= len(re.sub(r"[\W_]", "", value)) - 4:
                # a long number however it is grouped: "485 773 6201", "485-773-6201"
                numbers.add(digits)
        for d in sorted(known.dates):
            for form in _sorted_date_forms(d):
                literal(form, Category.DATE)
        for value in sorted(known.emails):
            literal(fold(value.strip()), Category.EMAIL)
        for value in sorted(known.names):
            variants, forms = _name_forms(value)
            for variant in variants:
                literal(variant, Category.NAME)
            initials.update(forms)
        for value in sorted(known.addresses):
            for part in _address_phrases(value, vocab):
                phrase(part, Category.ADDRESS)
        for value in sorted(known.institutions):
            for part in _institution_phrases(value, vocab):
                phrase(part, Category.INSTITUTION)
        acronyms = (_initialism(value, vocab) for value in known.institutions)
        self._acronyms = _Phrases((acronym,) for acronym in acronyms if acronym)
        # a known name followed by the initial of one of the patient's names: "Dana K.",
        # "KELLER, D."
        self._name_letters = frozenset(w[0] for w, c in literals.items() if c is Category.NAME)
        self._literals = literals
        self._trie = _Phrases((word,) for word in literals)
        self._initials = _Phrases((form,) for form in initials)
        self._phrases = _Phrases(phrases)
        self._phrase_category = phrases
        self._numbers = sorted(numbers)
        phones = {d for d in (_digits(p).lstrip("0") for p in known.phones) if len(d) >= 6}
        self._phones = [_phone_cores(d) for d in sorted(phones)]

    def find(self, text: str, folded: str) -> list[Span]:
        spans: list[Span] = []
        if self._trie:
            ordinary = name_lists().ambiguous
            for start, end, _word in self._trie.finditer(folded, text):
                found = folded[start:end]
                category = self._literals[found]
                if category is Category.NAME and found in ordinary and text[start:end].islower():
                    continue  # "CRP rose", "frank haemorrhage": the word, not Rose or Frank
                if category is Category.NAME and in_eponym(text, folded, start, end):
                    continue  # "pouch of Douglas", "GRACE score": the eponym, not the person
                if category is Category.NAME:
                    after = _TRAILING_INITIAL.match(text, end)
                    if after is not None and fold(after[1]) in self._name_letters:
                        end = after.end()
                spans.append(Span(start, end, category, Basis.DATASET))
        for start, end, _acronym in self._acronyms.finditer(text) if self._acronyms else ():
            spans.append(Span(start, end, Category.INSTITUTION, Basis.DATASET))
        if self._initials:
            for start, end, _form in self._initials.finditer(text):
                spans.append(Span(start, end, Category.NAME, Basis.DATASET))
        for start, end, words in self._phrases.finditer(folded) if self._phrases else ():
            spans.append(Span(start, end, self._phrase_category[words], Basis.DATASET))
        for start, end in _numbers_in(text, self._numbers) if self._numbers else ():
            spans.append(Span(start, end, Category.ID, Basis.DATASET))
        for start, end in _phones_in(text, self._phones) if self._phones else ():
            spans.append(Span(start, end, Category.PHONE, Basis.DATASET))
        return spans
