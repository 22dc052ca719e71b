"""Free-text cleaning: the identifying spans of a text, found by pattern and by what the
dataset knows, replaced by tokens of similar meaning (``[NAME]``, ``[DATE]``, ...).

Two kinds of recognizer find the spans:

- **dataset-aware** (:class:`Identifiers`, built from one file by
  :meth:`Identifiers.from_dataset`): every identifying value of the patient that the file
  holds, at any depth: person names and their parts (in any case and order, with or without
  accents or umlaut transliteration, with their initials), IDs and accession numbers, dates
  in the common written formats, phone numbers (compared by their digits), e-mail
  addresses, addresses, institution, department and station names. Knowledge is per file:
  a value that only another file of the same patient holds is not known.
- **patterns**, with no context: dates (numeric, and with English, German or French month
  names: "5 March 2024", "3. März 2024", "3 mars 2024"), times, phone and fax numbers,
  e-mail addresses, URLs, ID- and MRN-like numbers, UIDs, titled names ("Dr. X",
  "Prof. Dr. med. X", "Herr/Frau X", "M./Mme X"), names after labels ("Referring: X",
  "seen by X Y"), names with degrees ("X Y, MD"), DICOM person names ("SMITH^JOHN"), street
  addresses and postal codes, ages over 89.

Numbers with units, sequence names and parameters ("T1 MPRAGE sag 1mm", "DWI b1000",
"TR 2300") are left alone. When a span could identify, it goes: privacy first. No
named-entity model is used: a name that no pattern cues and the file does not hold stays.

:class:`TextCleaner` replaces spans by the tokens of :class:`Replacements` (a profile's
``[clean]`` table). :class:`Cleaned` reports positions, categories and counts, never the
removed values; nothing here logs.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from functools import cache, lru_cache
from importlib.resources import files
from typing import Any, Final

from pydicom.datadict import dictionary_has_tag, dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from dicomveil.errors import ProfileError

__all__ = [
    "DEFAULT_TOKENS",
    "TEXT_VRS",
    "VR_MAX_LENGTH",
    "Basis",
    "Category",
    "Cleaned",
    "Identifiers",
    "Replacements",
    "Span",
    "TextCleaner",
    "fold",
]


class Category(StrEnum):
    """What kind of identifier a span is; each has its own replacement token."""

    NAME = "name"
    ID = "id"
    DATE = "date"
    TIME = "time"
    PHONE = "phone"
    EMAIL = "email"
    URL = "url"
    ADDRESS = "address"
    INSTITUTION = "institution"
    AGE = "age"

    def counted(self, n: int) -> str:
        """``"1 name"``, ``"2 names"``, ``"3 phone numbers"``."""
        one, many = _NOUNS[self]
        return f"{n} {one if n == 1 else many}"


_NOUNS: Final = {
    Category.NAME: ("name", "names"),
    Category.ID: ("ID", "IDs"),
    Category.DATE: ("date", "dates"),
    Category.TIME: ("time", "times"),
    Category.PHONE: ("phone number", "phone numbers"),
    Category.EMAIL: ("e-mail address", "e-mail addresses"),
    Category.URL: ("URL", "URLs"),
    Category.ADDRESS: ("address", "addresses"),
    Category.INSTITUTION: ("institution", "institutions"),
    Category.AGE: ("age over 89", "ages over 89"),
}

DEFAULT_TOKENS: Final[Mapping[Category, str]] = {
    Category.NAME: "[NAME]",
    Category.ID: "[ID]",
    Category.DATE: "[DATE]",
    Category.TIME: "[TIME]",
    Category.PHONE: "[PHONE]",
    Category.EMAIL: "[EMAIL]",
    Category.URL: "[URL]",
    Category.ADDRESS: "[ADDRESS]",
    Category.INSTITUTION: "[INSTITUTION]",
    Category.AGE: "[AGE]",
}

# Text VRs a cleaner can rewrite, and their maximum lengths in characters (PS3.5 6.2).
TEXT_VRS: Final = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "CS"})
VR_MAX_LENGTH: Final[Mapping[str, int]] = {"SH": 16, "LO": 64, "CS": 16, "ST": 1024, "LT": 10240}
_TOKEN_MAX = 16

# When overlapping spans of different categories merge, the longest decides; ties go to
# the first of this order.
_PRIORITY: Final = (
    Category.EMAIL,
    Category.URL,
    Category.PHONE,
    Category.DATE,
    Category.ADDRESS,
    Category.ID,
    Category.INSTITUTION,
    Category.NAME,
    Category.TIME,
    Category.AGE,
)


class Basis(StrEnum):
    """Why a span was found: the file holds the value, or a pattern matched."""

    DATASET = "dataset"
    PATTERN = "pattern"


@dataclass(frozen=True, slots=True, order=True)
class Span:
    """An identifying span ``text[start:end]``; holds no value."""

    start: int
    end: int
    category: Category
    basis: Basis


@dataclass(frozen=True)
class Replacements:
    """Replacement tokens: one for every category, or one per category.

    In a profile (TOML)::

        [clean]
        replacement = "[REDACTED]"   # every category ...
        name = "[PERSON]"            # ... except those given: name id date time phone
                                     # email url address institution age
    """

    default: str | None = None
    tokens: tuple[tuple[Category, str], ...] = ()

    def token(self, category: Category) -> str:
        for known, token in self.tokens:
            if known is category:
                return token
        return self.default if self.default is not None else DEFAULT_TOKENS[category]

    def merged(self, child: Replacements) -> Replacements:
        """This profile's tokens with a child profile's on top."""
        if child.default is not None:
            return child
        tokens = dict(self.tokens)
        tokens.update(child.tokens)
        return Replacements(self.default, tuple(sorted(tokens.items())))

    def describe(self) -> list[str]:
        """For a profile digest: every token in a fixed order."""
        return [f"{c.value}={self.token(c)}" for c in Category]

    @classmethod
    def parse(cls, table: object, source: str) -> Replacements:
        """The ``[clean]`` table of a profile; unknown keys and unusable tokens are errors."""
        if not isinstance(table, dict):
            raise ProfileError("must be a table ([clean])", source=source, entry="clean")
        default: str | None = None
        tokens: dict[Category, str] = {}
        known = ["replacement", *(c.value for c in Category)]
        for key, value in table.items():
            entry = f"clean.{key}"
            if key not in known:
                raise ProfileError(
                    f"unknown key {key!r} (known: {', '.join(known)})", source=source, entry=entry
                )
            _check_token(value, source, entry)
            assert isinstance(value, str)
            if key == "replacement":
                default = value
            else:
                tokens[Category(key)] = value
        return cls(default, tuple(sorted(tokens.items())))


def _check_token(value: object, source: str, entry: str) -> None:
    if not isinstance(value, str):
        raise ProfileError("must be a string", source=source, entry=entry)
    if len(value) > _TOKEN_MAX:
        raise ProfileError(
            f"a replacement token has at most {_TOKEN_MAX} characters (it must fit an SH value)",
            source=source,
            entry=entry,
        )
    if "\\" in value or not value.isprintable():
        raise ProfileError(
            "a replacement token cannot hold a backslash or control characters",
            source=source,
            entry=entry,
        )


# --------------------------------------------------------------------------------------------
# Word lists (data/text-vocabulary.json) and folding


@dataclass(frozen=True)
class _Vocabulary:
    months: Mapping[str, int]
    titles: frozenset[str]
    ambiguous_caps_titles: frozenset[str]
    degrees: frozenset[str]
    particles: frozenset[str]
    name_suffixes: frozenset[str]
    honorifics: frozenset[str]
    not_names: frozenset[str]
    units: frozenset[str]
    institution_generic: frozenset[str]
    street_types: frozenset[str]


@cache
def _vocabulary() -> _Vocabulary:
    raw = json.loads(
        (files("dicomveil.cleaners.text") / "data" / "text-vocabulary.json").read_bytes()
    )

    def words(key: str) -> frozenset[str]:
        return frozenset(fold(str(w)) for w in raw[key])

    return _Vocabulary(
        months={fold(str(k)): int(v) for k, v in raw["months"].items()},
        titles=words("titles"),
        ambiguous_caps_titles=words("ambiguous_caps_titles"),
        degrees=words("degrees"),
        particles=words("particles"),
        name_suffixes=words("name_suffixes"),
        honorifics=words("honorifics"),
        not_names=words("not_names") | words("titles"),
        units=words("units"),
        institution_generic=words("institution_generic") | words("not_names"),
        street_types=words("street_types"),
    )


def _fold_char(char: str) -> str:
    base = unicodedata.normalize("NFD", char)[:1] or char
    low = base.lower()
    return low if len(low) == 1 else base


_FOLD_TABLE: Final = {
    code: _fold_char(chr(code)) for code in (*range(0x41, 0x5B), *range(0xC0, 0x250))
}


def fold(text: str) -> str:
    """Lower case without accents, **the same length** as ``text`` (offsets carry over)."""
    return text.translate(_FOLD_TABLE)


# Boundaries: letters and digits continue a word; underscores, hyphens, dots separate
# (protocol names such as "T1_MPRAGE_SMITH" are split at "_").
_L = r"(?<![^\W_])"
_R = r"(?![^\W_])"
_LETTER = r"[^\W\d_]"


# --------------------------------------------------------------------------------------------
# What the dataset knows

# Attributes whose values identify, by category (PN values are names wherever they are).
_ID_KEYWORDS: Final = frozenset(
    {
        "PatientID",
        "OtherPatientIDs",
        "AccessionNumber",
        "StudyID",
        "RequestedProcedureID",
        "ScheduledProcedureStepID",
        "PerformedProcedureStepID",
        "AdmissionID",
        "ServiceEpisodeID",
        "PlacerOrderNumberImagingServiceRequest",
        "FillerOrderNumberImagingServiceRequest",
        "PlacerOrderNumberImagingServiceRequestRetired",
        "FillerOrderNumberImagingServiceRequestRetired",
        "PlacerOrderNumberProcedure",
        "FillerOrderNumberProcedure",
        "MedicalRecordLocator",
        "ClinicalTrialSubjectID",
        "ClinicalTrialSubjectReadingID",
        "DeviceSerialNumber",
        "StationAETitle",
        "UniqueDeviceIdentifier",
    }
)
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
_ID_STOPWORDS: Final = frozenset(
    {"anonymous", "anonymized", "anonymised", "unknown", "none", "null", "test", "n/a", "na"}
)
_DIGITS = re.compile(r"\d")
_SPLIT_PHRASE = re.compile(r"[\s,;^]+")


@dataclass(frozen=True)
class Identifiers:
    """The identifying values of one patient that a cleaner can look for in free text.

    Values are kept as found; :meth:`from_dataset` collects them from every level of one
    dataset (the engine sees one file at a time). Never printed or logged.
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

    @classmethod
    def from_dataset(cls, ds: Dataset, *, extra_ids: Iterable[str] = ()) -> Identifiers:
        """Every identifying value of ``ds`` (all sequence depths; private PN values too).

        ``extra_ids``: further IDs of this patient (the crosswalk's original ID).
        """
        acc: dict[str, set[str]] = {k: set() for k in ("names", "ids", "phones", "addresses")}
        acc["institutions"] = set()
        acc["emails"] = set()
        dates: set[date] = set()
        for keyword, vr, values in _elements(ds):
            if vr == "PN":
                acc["names"].update(values)
            elif vr in ("DA", "DT"):
                for value in values:
                    dates.update(_dates_in(value))
            elif keyword in _PHONE_KEYWORDS:
                for value in values:
                    (acc["emails"] if "@" in value else acc["phones"]).add(value)
            elif keyword in _ADDRESS_KEYWORDS:
                acc["addresses"].update(values)
            elif keyword in _INSTITUTION_KEYWORDS:
                acc["institutions"].update(values)
            elif keyword in _ID_KEYWORDS or (
                keyword.endswith(("ID", "IDs"))
                and vr in ("LO", "SH")
                and keyword not in _NOT_ID_KEYWORDS
            ):
                acc["ids"].update(values)
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

    def find(self, text: str, folded: str | None = None) -> list[Span]:
        """Where this patient's known values occur in ``text``."""
        return _matcher(self).find(text, fold(text) if folded is None else folded)


@lru_cache(maxsize=16)
def _matcher(known: Identifiers) -> _Matcher:
    """The compiled search for one patient's values; the files of a series share it."""
    return _Matcher(known)


def _elements(ds: Dataset) -> Iterator[tuple[str, str, list[str]]]:
    """(keyword, VR, string values) of the collected VRs, at every depth, without storing
    decoded values back into the dataset (kept elements stay raw for the writer)."""
    for tag in list(ds.keys()):
        if tag >> 16 in (0x0000, 0x0002) or tag >> 16 == 0xFFFE:
            continue
        raw = ds.get_item(tag, keep_deferred=True)
        vr = raw.VR
        if vr is None and dictionary_has_tag(tag):
            vr = dictionary_VR(tag)
        if vr == "SQ" or (vr == "UN" and not tag >> 16 & 1 and _dictionary_sq(tag)):
            for item in _items(ds, tag):
                yield from _elements(item)
            continue
        if vr not in _COLLECTED_VRS or (tag >> 16 & 1 and vr != "PN"):
            continue
        if raw.value is None:
            continue
        elem = raw if isinstance(raw, DataElement) else _decoded(ds, raw)
        if elem is None:
            continue
        values = [str(v).strip() for v in _as_list(elem.value) if v is not None]
        values = [v for v in values if v]
        if values:
            yield keyword_for_tag(tag) or "", str(vr), values


def _items(ds: Dataset, tag: int) -> list[Dataset]:
    try:
        items = ds[tag].value
    except Exception:  # a sequence pydicom cannot parse: the engine removes it
        return []
    return [item for item in items or () if isinstance(item, Dataset)]


def _decoded(ds: Dataset, raw: RawDataElement) -> DataElement | None:
    """The value of a raw element, decoded without storing it in the dataset."""
    try:
        return convert_raw_data_element(raw, encoding=ds._character_set, ds=ds)
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


# Written forms of a known date (strftime with "-" flags is not portable: built by hand).
def _date_forms(d: date) -> set[str]:
    y, m, dd = d.year, d.month, d.day
    yy = f"{y % 100:02d}"
    forms = {
        f"{y}{m:02d}{dd:02d}",
        f"{y}-{m:02d}-{dd:02d}",
        f"{y}/{m:02d}/{dd:02d}",
        f"{y}.{m:02d}.{dd:02d}",
        f"{y}-{m}-{dd}",
        f"{dd:02d}{m:02d}{y}",
        f"{dd:02d}.{m:02d}.",
        f"{dd}.{m}.",
        f"{dd:02d}/{m:02d}",
        f"{m:02d}/{dd:02d}",
    }
    for sep in "./-":
        for day, month in ((f"{dd:02d}", f"{m:02d}"), (str(dd), str(m))):
            for year in (str(y), yy):
                forms.add(f"{day}{sep}{month}{sep}{year}")
                forms.add(f"{month}{sep}{day}{sep}{year}")
    return forms


class _Matcher:
    """One compiled search for the known values of one patient."""

    def __init__(self, known: Identifiers) -> None:
        vocab = _vocabulary()
        literals: dict[str, Category] = {}  # folded text -> category (searched as a trie)
        patterns: dict[str, Category] = {}  # regular expressions (phrases, grouped numbers)

        def literal(value: str, category: Category) -> None:
            if value:
                literals.setdefault(value, category)

        def phrase(value: str, category: Category) -> None:
            words = [w for w in _SPLIT_PHRASE.split(fold(value)) if w]
            if len(words) == 1:
                literal(words[0], category)
            elif words:
                patterns.setdefault(r"[\s,.;\-]+".join(re.escape(w) for w in words), category)

        initials: set[str] = set()
        for value in sorted(known.ids):
            for variant in _id_variants(value):
                literal(fold(variant), Category.ID)
            digits = _digits(value).lstrip("0")
            if len(digits) >= 6 and len(digits) >= len(re.sub(r"[\W_]", "", value)) - 4:
                # a long number however it is grouped: "485 773 6201", "485-773-6201"
                patterns.setdefault(r"[\s.\-/]?".join(digits), Category.ID)
        for d in sorted(known.dates):
            for form in _date_forms(d):
                literal(form, Category.DATE)
        for value in sorted(known.emails):
            literal(fold(value.strip()), Category.EMAIL)
        for value in sorted(known.names):
            for word in _name_words(value, vocab):
                for variant in _spelling_variants(word):
                    literal(variant, Category.NAME)
            initials.update(_initial_forms(value, vocab))
        for value in sorted(known.addresses):
            for part in _address_phrases(value, vocab):
                phrase(part, Category.ADDRESS)
        for value in sorted(known.institutions):
            for part in _institution_phrases(value, vocab):
                phrase(part, Category.INSTITUTION)
        self._literals = literals
        self._trie = re.compile(_L + _trie_pattern(literals) + _R) if literals else None
        self._patterns: re.Pattern[str] | None = None
        if patterns:
            ordered = sorted(patterns, key=len, reverse=True)
            self._patterns = re.compile(_L + "(?:" + "|".join(f"({p})" for p in ordered) + ")" + _R)
            self._pattern_category = [patterns[p] for p in ordered]
        self._initials: re.Pattern[str] | None = None
        if initials:
            self._initials = re.compile(_L + _trie_pattern(initials) + r"(?![^\W_])")
        phones = sorted({d for d in (_digits(p).lstrip("0") for p in known.phones) if len(d) >= 6})
        self._phones: re.Pattern[str] | None = None
        if phones:
            alternation = "|".join(_phone_pattern(d) for d in phones)
            self._phones = re.compile(rf"(?<![\w+])(?:{alternation})(?!\d)")

    def find(self, text: str, folded: str) -> list[Span]:
        spans: list[Span] = []
        if self._trie is not None:
            for m in self._trie.finditer(folded):
                category = self._literals[m.group()]
                spans.append(Span(m.start(), m.end(), category, Basis.DATASET))
        if self._patterns is not None:
            for m in self._patterns.finditer(folded):
                index = m.lastindex
                assert index is not None
                category = self._pattern_category[index - 1]
                spans.append(Span(m.start(), m.end(), category, Basis.DATASET))
        if self._initials is not None:
            for m in self._initials.finditer(text):
                spans.append(Span(m.start(), m.end(), Category.NAME, Basis.DATASET))
        if self._phones is not None:
            for m in self._phones.finditer(text):
                spans.append(Span(m.start(), m.end(), Category.PHONE, Basis.DATASET))
        return spans


def _trie_pattern(words: Iterable[str]) -> str:
    """One regular expression for many literal strings, as a trie: the engine follows one
    branch per character instead of trying every string at every position. Longer
    strings win (greedy), backtracking to shorter ones where the boundary fails."""
    root: dict[str, Any] = {}
    for word in words:
        node = root
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def build(node: dict[str, Any]) -> str:
        branches = [re.escape(char) + build(child) for char, child in sorted(node.items()) if char]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if "" in node:
            return body + "?" if len(branches) == 1 and len(body) == 1 else f"(?:{body})?"
        return body

    return "(?:" + build(root) + ")"


def _digits(text: str) -> str:
    return "".join(_DIGITS.findall(text))


_PHONE_SEPARATORS = r"[\s.\-/()]*"


def _phone_pattern(digits: str) -> str:
    """A known phone number however it is written: any separators, with or without its
    country code, trunk zero or "(0)" ("+1 555 204 8861", "(555) 204-8861",
    "+49 (0)361 5550172", "0361/5550172")."""
    cores = {digits}
    for drop in (1, 2, 3):  # the number without what may be its country code
        if len(digits) - drop >= 7:
            cores.add(digits[drop:])
    prefix = r"(?:\+?\d{1,3}" + _PHONE_SEPARATORS + r")?(?:\(0\)|0)?" + _PHONE_SEPARATORS
    bodies = "|".join(_PHONE_SEPARATORS.join(core) for core in sorted(cores, key=len, reverse=True))
    return f"{prefix}(?:{bodies})"


def _name_words(value: str, vocab: _Vocabulary) -> set[str]:
    """Folded name parts of two or more letters, honorifics left out."""
    out: set[str] = set()
    for group in value.split("="):
        for component in group.split("^"):
            for word in re.split(r"[\s,]+", component):
                word = word.strip(".'\u2019-")
                if not word:
                    continue
                parts = (
                    [word, *re.split(r"[-'\u2019]", word)]
                    if re.search(r"[-'\u2019]", word)
                    else [word]
                )
                for part in parts:
                    folded = fold(part.strip("."))
                    if (
                        len(folded) >= 2
                        and not folded.isdigit()
                        and folded not in vocab.honorifics
                        and re.search(r"[^\W\d_]", folded)
                    ):
                        out.add(folded)
    return out


def _spelling_variants(folded: str) -> set[str]:
    """Umlaut transliterations both ways: Müller, Mueller, Muller; Strasse, Straße."""
    out = {folded}
    out.add(re.sub(r"(?<=[^\W\d_])(ae|oe|ue)", lambda m: m.group()[0], folded))
    if "ss" in folded:
        out.add(folded.replace("ss", "ß"))
    if "ß" in folded:
        out.add(folded.replace("ß", "ss"))
    return out


def _name_letters(value: str) -> list[str]:
    """Initial letters in reading order (given names, then family name) of a person name."""
    group = value.split("=")[0]
    components = [c for c in group.split("^")]
    family = components[0] if components else ""
    given = components[1:3]
    words: list[str] = []
    for component in (*given, family):
        words.extend(w for w in re.split(r"[\s,.\-]+", component) if w)
    if "^" not in group:  # "Jonathan Holloway": already in reading order
        words = [w for w in re.split(r"[\s,.\-]+", group) if w]
    return [w[0].upper() for w in words if w[0].isalpha()]


def _initial_forms(value: str, vocab: _Vocabulary) -> set[str]:
    """J.H., J. H., J.Q.H., H.J.; undotted only with three or more letters (JQH)."""
    letters = _name_letters(value)
    if len(letters) < 2:
        return set()
    forms: set[str] = set()
    orders = [letters, [letters[-1], *letters[:-1]]]
    if len(letters) > 2:
        orders += [[letters[0], letters[-1]], [letters[-1], letters[0]]]
    for order in orders:
        forms.add(".".join(order) + ".")
        forms.add(". ".join(order) + ".")
        if len(order) >= 3:
            forms.add("".join(order))
    return forms


def _id_variants(value: str) -> set[str]:
    """An ID as written, without separators, and its number without prefix or zeros."""
    value = value.strip()
    folded = fold(value)
    has_digit = bool(_DIGITS.search(value))
    if folded in _ID_STOPWORDS or len(value) < 3 or (not has_digit and len(value) < 5):
        return set()
    out = {value}
    compact = re.sub(r"[\s\-_/.]", "", value)
    if compact != value and len(compact) >= 3:
        out.add(compact)
    core = re.sub(r"^[^\d]*", "", compact).lstrip("0")
    if len(core) >= 5 and core.isdigit() and core != compact:
        out.add(core)
    return out


def _phrase_pattern(phrase: str) -> str:
    words = [w for w in _SPLIT_PHRASE.split(fold(phrase)) if w]
    return r"[\s,.;\-]+".join(re.escape(w) for w in words)


def _address_phrases(value: str, vocab: _Vocabulary) -> set[str]:
    """The whole address, its comma/caret parts, postal codes and distinctive words."""
    out = {value}
    for part in re.split(r"[,;^\n\r]+", value):
        part = part.strip()
        if len(part) >= 4 and (" " in part or _DIGITS.search(part)):
            out.add(part)
        tokens = part.split()
        trailing: list[str] = []
        while tokens and _DIGITS.search(tokens[-1]):
            trailing.insert(0, tokens.pop())
        if trailing and len("".join(trailing)) >= 4:
            out.add(" ".join(trailing))  # postal codes: "02135", "AS4 7TT"
        for word in re.split(r"[\s.]+", part):
            folded = fold(word)
            postal = re.fullmatch(r"\d{4,6}|[a-z]{1,2}-\d{4,5}", folded)
            if postal or (
                len(folded) >= 4
                and folded.isalpha()
                and folded not in vocab.street_types
                and folded not in vocab.institution_generic
            ):
                out.add(word)
    return {p for p in out if p.strip()}


def _institution_phrases(value: str, vocab: _Vocabulary) -> set[str]:
    """The whole name, and every run of its words holding a distinctive one ("Elsewhere",
    "Saint Elsewhere"; not "General Hospital")."""
    out = {value}
    words = [w for w in re.split(r"[\s,.;()/&\-]+", value) if w]
    distinctive = [
        len(f) >= 4 and f.isalpha() and f not in vocab.institution_generic
        for f in (fold(w).strip("'\u2019") for w in words)
    ]
    for i in range(len(words)):
        for j in range(i + 1, len(words) + 1):
            if any(distinctive[i:j]):
                out.add(" ".join(words[i:j]))
    return {p for p in out if len(fold(p).strip()) >= 3}


# --------------------------------------------------------------------------------------------
# Patterns with no dataset context


@dataclass(frozen=True)
class _Patterns:
    dates: tuple[re.Pattern[str], ...]
    numeric_dates: re.Pattern[str]
    iso_dates: re.Pattern[str]
    compact_dates: re.Pattern[str]
    month_year: re.Pattern[str]
    times: tuple[re.Pattern[str], ...]
    time_words: re.Pattern[str]
    phones: tuple[re.Pattern[str], ...]
    phone_keyword: re.Pattern[str]
    extension: re.Pattern[str]
    email: re.Pattern[str]
    url: re.Pattern[str]
    id_keyword: re.Pattern[str]
    id_generic: re.Pattern[str]
    id_dashed: re.Pattern[str]
    uid: re.Pattern[str]
    ages: tuple[re.Pattern[str], ...]
    addresses: tuple[re.Pattern[str], ...]
    postal_city: re.Pattern[str]
    titles: re.Pattern[str]
    labels: re.Pattern[str]
    by: re.Pattern[str]
    suffix: re.Pattern[str]
    caret: re.Pattern[str]
    token: re.Pattern[str]
    unit_after: re.Pattern[str]


_DAY = r"(?:0?[1-9]|[12]\d|3[01])"
_YEAR4 = r"(?:1[89]\d{2}|20\d{2})"


@cache
def _patterns() -> _Patterns:
    vocab = _vocabulary()
    months = "|".join(sorted(vocab.months, key=len, reverse=True))
    month = rf"(?:{months}){_R}\.?"
    titles = "|".join(sorted((re.escape(t) for t in vocab.titles), key=len, reverse=True))
    units = "|".join(sorted((re.escape(u) for u in vocab.units), key=len, reverse=True))
    upper_word = r"[A-ZÀ-ÖØ-Þ][\w'\u2019.\-]*"
    street_en = (
        r"(?:street|st|avenue|ave|road|rd|drive|dr|lane|ln|boulevard|blvd|court|ct|way|place|pl"
        r"|terrace|crescent|close|square|sq|highway|hwy|parkway|pkwy|circle)"
    )
    street_de = r"(?:straße|strasse|str\.|weg|allee|platz|gasse|ring|damm|ufer|chaussee)"
    street_fr = (
        r"(?:rue|avenue|av\.|boulevard|bd|place|chemin|allée|allee|impasse|quai|route|cours)"
    )
    fr_upper = r"[A-ZÀ-ÖØ-Þ][^\W\d_]*"
    return _Patterns(
        # on folded text (lower case, no accents)
        dates=(
            # 3. März 2024, 3 mars 2024, 1er mars, 5th of March 2024, 05-Mar-2024, 5 March
            re.compile(
                rf"(?<![\w.,]){_DAY}(?:\.|er|st|nd|rd|th)?(?:\s+of)?[\s/\-]*{month}"
                rf"(?:[\s,]*{_YEAR4}(?!\d)|[\-/.']\s?\d{{2}}(?!\d))?"
            ),
            # March 5, 2024; Mar 5 2024; March 5th
            re.compile(
                rf"{_L}{month}\s*{_DAY}(?:st|nd|rd|th)?(?!\d)(?:,?\s+{_YEAR4}(?!\d))?"
                rf"(?![\w.,]\d)"
            ),
        ),
        numeric_dates=re.compile(
            rf"(?<![\w.,/\-])(\d{{1,2}})([./\-])(\d{{1,2}})\2({_YEAR4}|\d{{2}})(?![\d]|[.,]\d)"
        ),
        iso_dates=re.compile(
            rf"(?<![\w.,/\-])({_YEAR4})([\-/.])(\d{{1,2}})\2(\d{{1,2}})(?![\d]|[.,]\d)"
        ),
        compact_dates=re.compile(
            rf"(?<![\w.,]){_YEAR4}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"
            r"(?:[01]\d|2[0-3])?(?:[0-5]\d){0,2}(?:\.\d{1,6})?(?:[+\-]\d{4})?(?![\w]|[.,]\d)"
        ),
        month_year=re.compile(
            rf"(?:{_L}{month}\s*{_YEAR4}(?!\d))"
            rf"|(?:(?<![\w.,/\-])(?:0?[1-9]|1[0-2])[./]{_YEAR4}(?![\d]|[.,]\d))"
            rf"|(?:(?<![\w.,/\-])(?:0[1-9]|[12]\d|3[01])\.(?:0[1-9]|1[0-2])\.(?![\d]))"
        ),
        times=(
            re.compile(
                r"(?<![\w:.,])(?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d+)?)?"
                r"(?:\s*[ap]\.?m\.?(?![^\W_]))?(?![\d:])"
            ),
            re.compile(r"(?<![\w:.,])(?:1[0-2]|0?[1-9])(?::[0-5]\d)?\s*[ap]\.?m\.?(?![^\W_])"),
            re.compile(rf"(?<![\w:.,])(?:[01]?\d|2[0-3])\s?h\s?[0-5]\d{_R}"),
            re.compile(rf"(?<![\w:.,])(?:[01]?\d|2[0-3])(?:[.:][0-5]\d)?\s?uhr{_R}"),
        ),
        time_words=re.compile(
            rf"{_L}(?:at|um|a|vers|gegen|ab|bis|heure|heures)\s+([1-9]:[0-5]\d){_R}"
        ),
        phones=(
            re.compile(
                r"(?<![\w+])\+\s?\d{1,3}(?:[\s.\-/]*(?:\(0\)|\(\d{1,5}\)|\d{1,5})){2,6}(?!\d)"
            ),
            re.compile(
                r"(?<![\w.])(?:\(\d{3}\)\s?\d{3}[\s.\-]\d{4}|\d{3}([.\-])\d{3}\1\d{4})"
                r"(?![\w]|[.,]\d)"
            ),
            re.compile(r"(?<![\w.])0[1-9]([\s.\-])\d{2}(?:\1\d{2}){3}(?![\w]|[.,]\d)"),
            re.compile(r"(?<![\w.])0\d{2,4}(?:\s\d{3,4}){1,2}(?![\w]|[.,]\d)"),
            re.compile(
                r"(?<![\w.])0\d{2,5}(?:\s?[/\-]\s?\d{3,9}(?:-\d{1,5})?|\s\d{3,9}-\d{1,5})"
                r"(?![\w]|[.,]\d)"
            ),
        ),
        phone_keyword=re.compile(
            rf"{_L}(?:tel|tele|telephone|telefon|telefonnummer|phone|ph|fax|telefax|telecopie"
            r"|mobile|mobil|handy|portable|cell|pager|bip|gsm|rufnummer|durchwahl|ruckruf)"
            r"\.?(?:\s*/\s*fax\.?)?\s*(?:no\.?|nr\.?|n°|number|#)?\s*[:.]?\s*"
            r"(\+?\(?\d[\d\s().\-/]{3,}\d)"
        ),
        extension=re.compile(
            rf"{_L}(?:ext|extension|durchwahl|dw|poste|app)\.?\s*(?:no\.?|nr\.?|n°|#)?\s*[:.]?\s*"
            r"(\d{3,6})(?![\w]|[.,]\d)"
        ),
        email=re.compile(r"(?<![\w.+\-])[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+"),
        url=re.compile(
            r"(?:(?<![\w.])(?:https?|ftp)://[^\s<>\"']+|(?<![\w.])www\.[^\s<>\"']+)", re.IGNORECASE
        ),
        # on folded text
        id_keyword=re.compile(
            rf"{_L}(?:mrn|mr#|mr-?nr|pid|pat(?:ient(?:en)?)?[\s\-]?(?:id|nr|#|no)|id|ipp|nip"
            r"|nda|acc(?:ession)?(?:\s*(?:no|nr|#|number))?|fall(?:nummer|[\s\-]?nr)"
            r"|auftrag(?:snummer|s?[\s\-]?nr)|aufnahme[\s\-]?nr|n°(?:\s*(?:de\s+)?(?:dossier"
            r"|patient|examen|sejour))?|no\s+de\s+dossier|dossier|order(?:\s*(?:no|#|number))?"
            r"|case(?:\s*(?:no|#|number))?|ssn|nhs(?:\s*(?:no|number))?|versichertennummer"
            r"|versicherungsnummer|secu|insee|nir|chart(?:\s*(?:no|#))?"
            r"|record(?:\s*(?:no|#|number))?|kennung|identifiant)"
            r"\.?\s*[:#=]?\s*([a-z0-9](?:[a-z0-9\-/._]*[a-z0-9])?)"
        ),
        # on the original text
        id_generic=re.compile(r"(?<![\w.,/\-])(?:[A-Z]{1,6}[\-_]?)?\d{5,}[A-Z]?(?![\w]|[.,]\d)"),
        id_dashed=re.compile(r"(?<![\w.,/\-])\d{2,}(?:-\d{2,}){1,3}(?![\w/\-]|[.,]\d)"),
        uid=re.compile(r"(?<![\w.])[0-2](?:\.\d+){4,}(?![\w]|\.\d)"),
        ages=(
            re.compile(
                r"(?<![\w.,])(9\d|1[01]\d)\s?-?\s?(?:years?\s?-?\s?old|year-old|yo|y/o|y\.o\."
                r"|yrs?\.?|ans|jahre(?:\s+alt)?|jahrige[rnms]?|j\.)(?![^\W_])"
            ),
            re.compile(rf"{_L}(?:aged?|alter|age\s+de|agee?\s+de)\s*:?\s*(9\d|1[01]\d){_R}"),
        ),
        addresses=(
            re.compile(
                rf"{_L}\d{{1,5}}[A-Za-z]?,?\s+(?:{upper_word}\s+){{0,3}}{upper_word}\s+"
                rf"(?i:{street_en})\b\.?"
                r"(?:,?\s+(?i:apt|suite|unit|apartment)\.?\s*#?\w+)?"
                r"(?:,\s*[A-ZÀ-ÖØ-Þ][\w'\u2019.\-]*(?:\s+[A-ZÀ-ÖØ-Þ][\w'\u2019.\-]*){0,2})?"
                r"(?:,?\s+[A-Z]{2})?(?:\s+\d{5}(?:-\d{4})?)?"
            ),
            re.compile(
                rf"{_L}(?:[A-ZÄÖÜ][^\W\d_]*[\s\-])?[A-ZÄÖÜ][^\W\d_\-]*(?i:{street_de})"
                rf"\s*\d{{1,4}}\s?[a-z]?{_R}"
            ),
            re.compile(
                rf"{_L}[A-ZÄÖÜ][^\W\d_\-]*\s+(?:Straße|Strasse|Str\.|Weg|Allee|Platz|Gasse|Ring"
                rf"|Damm)\s+\d{{1,4}}\s?[a-z]?{_R}"
            ),
            re.compile(
                rf"{_L}\d{{1,4}}(?:\s?(?:bis|ter))?,?\s+(?i:{street_fr})\s+"
                r"(?:(?:de\s+la|de\s+l['\u2019]|du|des|de|d['\u2019]|la|le|les|l['\u2019])\s*)?"
                rf"{fr_upper}(?:[\s\-'\u2019]+(?:de|du|des|la|le|{fr_upper}))*"
            ),
            re.compile(
                r"(?i:(?<![\w.])(?:p\.?\s?o\.?\s?box|postfach|boite\s+postale|b\.?p\.?)\s*"
                r"\d[\d ]{0,8}\d?)"
            ),
            re.compile(rf"{_L}[A-Z]{{2}}\s\d{{5}}(?:-\d{{4}})?{_R}"),
        ),
        postal_city=re.compile(
            rf"{_L}(?:[A-Z]{{1,2}}-)?\d{{5}}\s+([A-ZÀ-ÖØ-Þ][^\W\d_]+"
            r"(?:[\s\-][A-ZÀ-ÖØ-Þ][^\W\d_]+)?)(?:\s+(?i:cedex)(?:\s+\d{1,2})?)?"
        ),
        titles=re.compile(rf"{_L}(?i:{titles})(?:\.|{_R})"),
        labels=re.compile(
            rf"{_L}(?i:referring(?:\s+(?:physician|doctor|md|dr))?|referred\s+by"
            r"|ref\.?\s*(?:phys|dr|md)\.?|radiologist|attending|physician|operator"
            r"|technologist|tech|technician|radiographer|signed(?:\s+by)?|dictated\s+by"
            r"|read\s+by|reported\s+by|verified\s+by|reviewed\s+by|approved\s+by|seen\s+by"
            r"|requested\s+by|requesting\s+physician|ordering\s+physician|consultant|resident"
            r"|fellow|author|observer|zuweiser(?:in)?|überweiser(?:in)?|uberweiser(?:in)?"
            r"|überweisende[rn]?\s+arzt|befunder(?:in)?|befundet\s+von|befundende[rn]?\s+arzt"
            r"|mtra|mtr|mta|untersucher(?:in)?|unterschrift|gez\.|gezeichnet|arzt|ärztin"
            r"|oberarzt|oberärztin|assistenzarzt|assistenzärztin|médecin(?:\s+(?:prescripteur"
            r"|demandeur|traitant|radiologue))?|medecin|prescripteur|demandeur|radiologue"
            r"|manipulateur|manipulatrice|interprété\s+par|signé(?:\s+par)?|dicté\s+par"
            r"|validé\s+par|vu\s+par|adressé\s+par|patient(?:in|e)?|pat\.|name|nom"
            r"|nom\s+de\s+naissance|geburtsname|pt\.?|contact|kontakt|angehörige[rn]?"
            r"|next\s+of\s+kin|mother|father|mutter|vater|mère|père|épouse|époux|wife|husband"
            r"|ehefrau|ehemann)\s*[:=]\s*"
        ),
        by=re.compile(rf"{_L}(?:by|par|durch|von|per|from|chez|bei)\s+"),
        suffix=re.compile(
            r"(?:,\s*|\s+)(?:MD|M\.D\.|PhD|Ph\.D\.|RN|FACR|FRCR|FRCS|MBBS)(?![^\W_])"
        ),
        caret=re.compile(rf"{_L}{_LETTER}[\w'\u2019.\-]*\^[\w'\u2019.\-^]*"),
        token=re.compile(r"[^\s,;:()\[\]{}<>\"/]+"),
        unit_after=re.compile(rf"\s?(?:{units})(?![^\W_])", re.IGNORECASE),
    )


def _valid_dmy(day: int, month: int, year: int) -> bool:
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


def _year(text: str) -> int:
    value = int(text)
    return value + (2000 if value < 50 else 1900) if len(text) <= 2 else value


def _pattern_spans(text: str, folded: str) -> Iterator[Span]:
    p = _patterns()
    vocab = _vocabulary()
    if _DIGITS.search(text):
        yield from _number_spans(text, folded, p, vocab)
    if "@" in text:
        for m in p.email.finditer(text):
            yield Span(m.start(), m.end(), Category.EMAIL, Basis.PATTERN)
    if "://" in text or "www." in folded:
        for m in p.url.finditer(text):
            end = m.end()
            while end > m.start() and text[end - 1] in ".,;:!?)]}'\"":
                end -= 1
            yield Span(m.start(), end, Category.URL, Basis.PATTERN)
    yield from _name_spans(text, p, vocab)


def _number_spans(text: str, folded: str, p: _Patterns, vocab: _Vocabulary) -> Iterator[Span]:
    """Dates, times, phone numbers, IDs, ages and addresses: spans that hold digits."""

    def span(start: int, end: int, category: Category) -> Span:
        return Span(start, end, category, Basis.PATTERN)

    for rx in (*p.dates, p.month_year):
        for m in rx.finditer(folded):
            yield span(m.start(), m.end(), Category.DATE)
    for m in p.numeric_dates.finditer(folded):
        a, b, year = int(m[1]), int(m[3]), _year(m[4])
        if _valid_dmy(a, b, year) or _valid_dmy(b, a, year):
            yield span(m.start(), m.end(), Category.DATE)
    for m in p.iso_dates.finditer(folded):
        if _valid_dmy(int(m[4]), int(m[3]), int(m[1])):
            yield span(m.start(), m.end(), Category.DATE)
    for m in p.compact_dates.finditer(folded):
        digits = m.group()
        if _valid_dmy(int(digits[6:8]), int(digits[4:6]), int(digits[:4])):
            yield span(m.start(), m.end(), Category.DATE)
    for rx in p.times:
        for m in rx.finditer(folded):
            yield span(m.start(), m.end(), Category.TIME)
    for m in p.time_words.finditer(folded):
        yield span(m.start(1), m.end(1), Category.TIME)
    for rx in p.phones:
        for m in rx.finditer(text):
            if 7 <= len(_digits(m.group())) <= 15:
                yield span(m.start(), m.end(), Category.PHONE)
    for m in p.phone_keyword.finditer(folded):
        if len(_digits(m[1])) >= 5:
            yield span(m.start(1), m.end(1), Category.PHONE)
    for m in p.extension.finditer(folded):
        yield span(m.start(1), m.end(1), Category.PHONE)
    for m in p.id_keyword.finditer(folded):
        if len(_digits(m[1])) >= 3 and not _is_measure(text, m.end(1)):
            yield span(m.start(1), m.end(1), Category.ID)
    for m in p.id_generic.finditer(text):
        digits = _digits(m.group())
        if _is_measure(text, m.end()):
            continue
        if len(digits) == len(m.group()) and len(digits) in (8, 12, 14) and _compact_date(digits):
            continue
        yield span(m.start(), m.end(), Category.ID)
    for m in p.id_dashed.finditer(text):
        if len(_digits(m.group())) >= 6 and not _is_measure(text, m.end()):
            yield span(m.start(), m.end(), Category.ID)
    for m in p.uid.finditer(text):
        yield span(m.start(), m.end(), Category.ID)
    for rx in p.ages:
        for m in rx.finditer(folded):
            yield span(m.start(1), m.end(1), Category.AGE)
    for rx in p.addresses:
        for m in rx.finditer(text):
            yield span(m.start(), m.end(), Category.ADDRESS)
    for m in p.postal_city.finditer(text):
        city = fold(m[1].split()[0])
        if city not in vocab.units and city not in vocab.not_names:
            yield span(m.start(), m.end(), Category.ADDRESS)


def _compact_date(digits: str) -> bool:
    return _valid_dmy(int(digits[6:8]), int(digits[4:6]), int(digits[:4])) and (
        1800 <= int(digits[:4]) <= 2099
    )


def _is_measure(text: str, end: int) -> bool:
    """A number followed by a unit ("12345 ms") is a measurement, not an ID."""
    return bool(_patterns().unit_after.match(text, end))


# --------------------------------------------------------------------------------------------
# Names


def _name_spans(text: str, p: _Patterns, vocab: _Vocabulary) -> Iterator[Span]:
    for m in p.titles.finditer(text):
        title = m.group()
        core = fold(title.rstrip("."))
        dotted = title.endswith(".")
        if not dotted and title.isupper() and core in vocab.ambiguous_caps_titles:
            continue  # MR (resonance), MS (sclerosis), PR: titles only as "MR." or "Mr"
        if core in ("m", "fr", "hr") and not dotted:
            continue
        if core == "m" and title[0] != "M":
            continue
        found = _name_after(text, m.end(), vocab, p, need=1, limit=3)
        if found is not None:
            yield Span(found[0], found[1], Category.NAME, Basis.PATTERN)
    for m in p.labels.finditer(text):
        found = _name_after(text, m.end(), vocab, p, need=1, limit=3, comma=True)
        if found is not None:
            yield Span(found[0], found[1], Category.NAME, Basis.PATTERN)
    for m in p.by.finditer(text):
        found = _name_after(text, m.end(), vocab, p, need=2, limit=3, degrees=False)
        if found is not None:
            yield Span(found[0], found[1], Category.NAME, Basis.PATTERN)
    for m in p.suffix.finditer(text):
        found = _name_before(text, m.start(), vocab)
        if found is not None:
            yield Span(found[0], found[1], Category.NAME, Basis.PATTERN)
    for m in p.caret.finditer(text):
        end = m.end()
        while end > m.start() and text[end - 1] in ".-'\u2019":
            end -= 1
        parts = [fold(c) for c in re.split(r"[\^\s]+", text[m.start() : end]) if c]
        if any(c in vocab.not_names for c in parts):
            continue  # "Kopf^Routine", "NEURO^ROUTINE": a vendor's procedure, not a person
        yield Span(m.start(), end, Category.NAME, Basis.PATTERN)


_INITIAL = re.compile(r"[A-ZÀ-ÖØ-Þ]\.(?:-?[A-ZÀ-ÖØ-Þ]\.)*")
_NAME_WORD = re.compile(r"[^\W\d_](?:[^\W\d_]|['\u2019\-](?=[^\W\d_]))*")
_POSSESSIVE = re.compile(r"['\u2019]s$")


def _is_name_word(word: str, vocab: _Vocabulary) -> bool:
    if len(word) < 2 or not word[0].isupper() or not _NAME_WORD.fullmatch(word):
        return False
    folded = fold(word)
    return (
        folded not in vocab.not_names
        and folded not in vocab.months
        and folded not in vocab.degrees
        and folded not in vocab.units
    )


def _name_after(
    text: str,
    pos: int,
    vocab: _Vocabulary,
    p: _Patterns,
    *,
    need: int,
    limit: int,
    comma: bool = False,
    degrees: bool = True,
) -> tuple[int, int] | None:
    """The person name starting at ``pos`` (after a title or label), if there is one.

    Skips further titles and degrees ("Prof. Dr. med."), takes initials ("J.", "J.-P."),
    particles ("van der", "de la") and up to ``limit`` capitalised name words; with
    ``comma`` one comma may follow the first word ("Smith, John").
    """
    start: int | None = None
    end = pos
    words = 0
    i = pos
    pending: int | None = None  # start of initials/particles waiting for a name word
    while words < limit:
        j = i
        while j < len(text) and text[j] in " \t":
            j += 1
        if comma and words == 1 and j < len(text) and text[j] == ",":
            j += 1
            while j < len(text) and text[j] in " \t":
                j += 1
            comma = False
        m = p.token.match(text, j)
        if m is None or (j == i and i != pos):
            break
        token = m.group()
        core = _POSSESSIVE.sub("", token).rstrip(".")
        folded = fold(core)
        if (
            start is None
            and pending is None
            and degrees
            and (folded in vocab.degrees or folded in vocab.titles)
        ):
            i = m.end()
            continue
        if _INITIAL.fullmatch(token) or (len(token) == 1 and token.isupper() and token.isalpha()):
            pending = j if pending is None else pending
            i = m.end()
            continue
        if folded in vocab.particles and core.islower():
            pending = j if pending is None else pending
            i = m.end()
            continue
        if _is_name_word(core, vocab):
            if start is None:
                start = pending if pending is not None else j
            pending = None
            end = j + len(core)
            words += 1
            i = j + len(core)
            if len(token) > len(core) and not token[len(core) :].startswith("."):
                break  # "Smith's": the name ends here
            if token.endswith(".") and len(core) > 1 and token[len(core) :] == ".":
                break  # end of a sentence
            continue
        break
    if start is None or words < need:
        return None
    return start, end


def _name_before(text: str, pos: int, vocab: _Vocabulary) -> tuple[int, int] | None:
    """One to three name words (and initials) right before ``pos`` ("John A. Smith, MD")."""
    start: int | None = None
    i = pos
    words = 0
    for _ in range(4):
        m = re.search(r"(\S+)\s*$", text[:i])
        if m is None:
            break
        token = m[1]
        core = token.rstrip(",.")
        if _INITIAL.fullmatch(token) and words:
            start, i = m.start(1), m.start(1)
            continue
        if not _is_name_word(core, vocab):
            break
        start, i = m.start(1), m.start(1)
        words += 1
        if words == 3:
            break
    if start is None or words == 0:
        return None
    end = pos
    while end > start and text[end - 1] in " ,":
        end -= 1
    return start, end


# --------------------------------------------------------------------------------------------
# Merging and replacing

_NAME_GAP = re.compile(r"[\s,^]{0,3}(?:[A-ZÀ-ÖØ-Þ]\.?[\s\-]{0,2})?$")
_SAME_GAP = re.compile(r"[\s,;]{0,3}$")
_INITIALS_BEFORE = re.compile(r"(?<![^\W_])(?:[A-ZÀ-ÖØ-Þ](?:\.\s?-?\s?|[ \-])){1,3}$")
_INITIAL_AFTER = re.compile(r"\s[A-ZÀ-ÖØ-Þ]\.(?=\s|,|;|$)")


def _merge(text: str, spans: Iterable[Span]) -> list[Span]:
    ordered = sorted(spans, key=lambda s: (s.start, -s.end))
    groups: list[list[Span]] = []
    for s in ordered:
        if s.end <= s.start:
            continue
        if groups and s.start < max(x.end for x in groups[-1]):
            groups[-1].append(s)
        else:
            groups.append([s])
    merged: list[Span] = []
    for group in groups:
        best = max(group, key=lambda s: (s.end - s.start, -_PRIORITY.index(s.category)))
        basis = Basis.DATASET if any(s.basis is Basis.DATASET for s in group) else Basis.PATTERN
        merged.append(
            Span(min(s.start for s in group), max(s.end for s in group), best.category, basis)
        )
    out: list[Span] = []
    for s in merged:
        if s.category is Category.NAME:
            m = _INITIALS_BEFORE.search(text, max(0, s.start - 12), s.start)
            if m is not None and (not out or out[-1].end <= m.start()):
                s = Span(m.start(), s.end, s.category, s.basis)
            after = _INITIAL_AFTER.match(text, s.end)
            if after is not None:
                s = Span(s.start, after.end(), s.category, s.basis)
        if out:
            last = out[-1]
            gap = text[last.end : s.start]
            same = last.category is s.category
            if s.start < last.end or (
                same
                and s.category in (Category.NAME, Category.ADDRESS, Category.INSTITUTION)
                and (_NAME_GAP if s.category is Category.NAME else _SAME_GAP).match(gap)
            ):
                category = (
                    last.category if (last.end - last.start) >= (s.end - s.start) else (s.category)
                )
                basis = Basis.DATASET if Basis.DATASET in (last.basis, s.basis) else Basis.PATTERN
                out[-1] = Span(last.start, max(last.end, s.end), category, basis)
                continue
        out.append(s)
    return out


@dataclass(frozen=True)
class Cleaned:
    """A cleaned text and what was replaced (positions refer to the original text)."""

    text: str
    spans: tuple[Span, ...] = ()
    truncated: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.spans) or self.truncated

    def counts(self) -> Counter[Category]:
        return Counter(s.category for s in self.spans)

    def summary(self) -> str:
        """``"2 names, 1 date"`` (no values), or ``"nothing identifying found"``."""
        counts = self.counts()
        if not counts:
            return "nothing identifying found"
        return ", ".join(c.counted(counts[c]) for c in Category if counts[c])


@dataclass(frozen=True)
class TextCleaner:
    """Finds and replaces identifying spans; one per run (it holds only the tokens)."""

    replacements: Replacements = field(default_factory=Replacements)

    def find(self, text: str, identifiers: Identifiers | None = None) -> list[Span]:
        """The identifying spans of ``text``, merged, in order."""
        if not text.strip():
            return []
        folded = fold(text)
        spans = list(_pattern_spans(text, folded))
        if identifiers is not None:
            spans.extend(identifiers.find(text, folded))
        return _merge(text, spans)

    def clean(
        self, text: str, identifiers: Identifiers | None = None, *, max_length: int | None = None
    ) -> Cleaned:
        """``text`` with every identifying span replaced by its category's token.

        With ``max_length`` the result is cut to fit (never inside a token).
        """
        spans = self.find(text, identifiers)
        parts: list[str] = []
        tokens: list[tuple[int, int]] = []
        length = 0
        last = 0
        for s in spans:
            kept = text[last : s.start]
            parts.append(kept)
            length += len(kept)
            token = self.replacements.token(s.category)
            tokens.append((length, length + len(token)))
            parts.append(token)
            length += len(token)
            last = s.end
        parts.append(text[last:])
        out = "".join(parts)
        truncated = False
        if max_length is not None and len(out) > max_length:
            cut = max_length
            for a, b in tokens:
                if a < cut < b:
                    cut = a
                    break
            out = out[:cut].rstrip()
            truncated = True
        return Cleaned(out, tuple(spans), truncated)
