"""Which values of an original are needles, and the forms people write them in: a name's
components in either order, a date as 20240115, 2024-01-15 or 15.01.2024, a phone number's
digits (see :mod:`~dicomveil.qc.verify.needles` for their search)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Final

from dicomveil.qc.verify.elements import (
    _DATE_VRS,
    _TEXT_VRS,
    _is_instance_uid_element,
    _Node,
    _well_known,
)
from dicomveil.qc.verify.report import Category
from dicomveil.standard.keywords import ID_KEYWORDS, OBJECT_ID_KEYWORDS

# Identifying attributes by keyword (PN, DA, DT, TM and UI values are identifying by VR):
# the IDs of the standard's list, and the issuers, which verify also looks for.
_ID_KEYWORDS: Final = ID_KEYWORDS | {
    "IssuerOfPatientID",
    "IssuerOfAdmissionID",
    "InsurancePlanIdentification",
}
_DEVICE_KEYWORDS: Final = frozenset(
    {
        "DeviceSerialNumber",
        "StationName",
        "PerformedStationName",
        "ScheduledStationName",
        "StationAETitle",
        "PerformedStationAETitle",
        "ScheduledStationAETitle",
        "DetectorID",
        "GantryID",
        "SourceSerialNumber",
        "DeviceID",
    }
)
_INSTITUTION_KEYWORDS: Final = frozenset({"InstitutionName"})
_ADDRESS_KEYWORDS: Final = frozenset(
    {"PatientAddress", "InstitutionAddress", "ReferringPhysicianAddress", "PersonAddress"}
)
_PHONE_KEYWORDS: Final = frozenset(
    {"PatientTelephoneNumbers", "ReferringPhysicianTelephoneNumbers", "PersonTelephoneNumbers"}
)
_NEEDLE_VRS: Final = frozenset({"PN", "DA", "DT", "TM", "UI"})
_NEEDLE_KEYWORDS: Final = (
    _ID_KEYWORDS | _DEVICE_KEYWORDS | _INSTITUTION_KEYWORDS | _ADDRESS_KEYWORDS | _PHONE_KEYWORDS
)
# Values that identify no one, whatever element holds them.
_NOT_IDENTIFYING: Final = frozenset(
    {
        "anonymized",
        "anonymous",
        "anonymised",
        "unknown",
        "none",
        "null",
        "test",
        "removed",
        "patient",
        "other",
        "text",
        "default",
        "hospital",
        "clinic",
        "radiology",
    }
)
_VENDOR_KEYWORDS: Final = frozenset(
    {"Manufacturer", "ManufacturerModelName", "SoftwareVersions", "ConvolutionKernel"}
)
# Kept values that are vocabulary, never a person's: vendor names and code meanings (a
# phantom named "Abdomen^FatSatDyn" beside the anatomic region code meaning "Abdomen").
_VOCABULARY_KEYWORDS: Final = _VENDOR_KEYWORDS | {"CodeMeaning"}
_HONORIFICS: Final = frozenset(
    {"dr", "mr", "mrs", "ms", "miss", "prof", "md", "phd", "jr", "sr", "dr.", "mr.", "mrs."}
)
_MIN_TEXT: Final = 4  # shorter needles match by chance
_MIN_DIGITS: Final = 6  # numbers: "2024" or "1234" are everywhere


def _meaningful(text: str) -> bool:
    text = text.strip()
    if text.casefold() in _NOT_IDENTIFYING:
        return False
    if text.isdigit():
        return len(text) >= _MIN_DIGITS
    return len(text) >= _MIN_TEXT


def _name_forms(value: str) -> set[str]:
    """A PN value as people write it: components, with and without carets, either order."""
    forms: set[str] = set()
    for group in value.split("="):
        parts = [p.strip() for p in group.split("^")]
        words = [p for p in parts if p and p.casefold() not in _HONORIFICS]
        if not words:
            continue
        forms.add(group.strip("^ "))
        forms.update(words)
        for part in words:
            forms.update(w for w in part.split() if w.casefold() not in _HONORIFICS)
        family = parts[0] if parts else ""
        given = " ".join(p for p in parts[1:3] if p)
        if family and given:
            forms.update(
                {
                    f"{family} {given}",
                    f"{given} {family}",
                    f"{family}, {given}",
                    f"{family},{given}",
                    f"{family}{given}".replace(" ", ""),
                    f"{given}{family}".replace(" ", ""),
                    " ".join(words),
                }
            )
    return {f for f in forms if _meaningful(f)}


_DA_TEXT: Final = re.compile(r"^(\d{4})(\d{2})(\d{2})$")


def _date_forms(value: str) -> set[str]:
    forms: set[str] = set()
    for part in value.split("-") if len(value) == 17 else [value]:
        text = part.strip()[:8]
        match = _DA_TEXT.match(text)
        if not match or int(match[1]) < 1901 or not 1 <= int(match[2]) <= 12:
            continue
        y, m, d = match[1], match[2], match[3]
        forms.update({text, f"{y}-{m}-{d}", f"{y}.{m}.{d}", f"{d}.{m}.{y}", f"{m}/{d}/{y}"})
        forms.add(f"{d}/{m}/{y}")
    return forms


def _time_forms(value: str) -> set[str]:
    text = value.strip().split(".")[0]
    if len(text) >= 6 and text.isdigit() and text.strip("0"):
        return {text[:6]}
    return set()


def _needles_of(node: _Node, values: list[str]) -> Iterator[tuple[str, Category, bool]]:
    """Identifying values of one input element: (text, category, long enough to search)."""
    for value in values:
        yield from _forms(node.vr, node.keyword, node.private, value)


@lru_cache(maxsize=1 << 16)  # a series repeats its patient's, study's and device's values
def _forms(
    vr: str, keyword: str, private: bool, value: str
) -> tuple[tuple[str, Category, bool], ...]:
    found: list[tuple[str, Category]] = []
    if vr == "PN":
        found.extend((form, Category.NAME) for form in _name_forms(value))
    elif vr in _DATE_VRS:
        found.extend((form, Category.DATE) for form in _date_forms(value))
    elif vr == "TM":
        found.extend((form, Category.TIME) for form in _time_forms(value))
    elif vr == "UI":
        if (private or _is_instance_uid_element(keyword)) and not _well_known(value):
            found.append((value, Category.UID))
    elif private or vr not in _TEXT_VRS | {"AE"}:
        pass
    elif keyword in _DEVICE_KEYWORDS:
        found.append((value, Category.DEVICE))
    elif keyword in _ID_KEYWORDS or (
        keyword.endswith("ID") and vr in ("LO", "SH") and keyword not in OBJECT_ID_KEYWORDS
    ):
        found.append((value, Category.ID))
    elif keyword in _INSTITUTION_KEYWORDS:
        found.append((value, Category.INSTITUTION))
    elif keyword in _ADDRESS_KEYWORDS:
        found.append((value, Category.ADDRESS))
        found.extend((part.strip(), Category.ADDRESS) for part in value.split(","))
    elif keyword in _PHONE_KEYWORDS:
        found.append((value, Category.PHONE))
        digits = "".join(c for c in value if c.isdigit())
        if len(digits) >= 7:
            found.append((digits, Category.PHONE))
    return tuple((text, category, _meaningful(text)) for text, category in found)
