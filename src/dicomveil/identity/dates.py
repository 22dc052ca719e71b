"""Date arithmetic for the Retain Longitudinal Temporal Information Modified Dates option.

Dates move by whole days, so times of day and every interval between two dates of a patient
are kept. A value that cannot be parsed is not guessed at: the caller removes it.
"""

from __future__ import annotations

import datetime as _dt
import re

_DA = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_DA_OLD = re.compile(r"^(\d{4})\.(\d{2})\.(\d{2})$")  # ACR-NEMA style, still seen
_DT = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(.*)$")
_AS = re.compile(r"^(\d{3})([DWMY])$")


class DateError(ValueError):
    """A date value that cannot be shifted."""


def shift_da(value: str, days: int) -> str:
    """Shift one DA value (``YYYYMMDD``) by whole days."""
    text = value.strip()
    match = _DA.match(text) or _DA_OLD.match(text)
    if not match:
        raise DateError("not a DA value")
    try:
        day = _dt.date(int(match[1]), int(match[2]), int(match[3]))
        return (day + _dt.timedelta(days=days)).strftime("%Y%m%d")
    except (ValueError, OverflowError):
        raise DateError("not a valid calendar date") from None


def shift_dt(value: str, days: int) -> str:
    """Shift one DT value by whole days, keeping its precision, time and offset."""
    text = value.strip()
    match = _DT.match(text)
    if not match:
        raise DateError("not a DT value")
    year, month, day, rest = match[1], match[2], match[3], match[4]
    if rest and not (month and day):
        raise DateError("not a DT value")
    try:
        base = _dt.date(int(year), int(month or 1), int(day or 1))
        moved = base + _dt.timedelta(days=days)
    except (ValueError, OverflowError):
        raise DateError("not a valid calendar date") from None
    if day:
        return moved.strftime("%Y%m%d") + rest
    if month:
        return moved.strftime("%Y%m")
    return moved.strftime("%Y")


def cap_age(value: str, limit_years: int = 89) -> str:
    """HIPAA: ages over 89 are aggregated into one category, written as ``090Y``."""
    match = _AS.match(value.strip())
    if not match:
        raise DateError("not an AS value")
    number, unit = int(match[1]), match[2]
    years = {"D": number / 365.25, "W": number / 52.18, "M": number / 12, "Y": number}[unit]
    if years > limit_years:
        return f"{limit_years + 1:03d}Y"
    return value.strip()
