"""Generalisations of quasi-identifiers: ages to bands, dates to the year, size and weight
to bands (a profile's ``[generalize]`` table, applied by the engine; :mod:`dicomveil.qc.risk`
proposes them).

Each function maps one value, as DICOM text, to its generalised form, still valid for the
element's VR: an age ``047Y`` in 5-year bands is ``045Y`` (the band's lower bound), a date
``20240517`` to the year is ``20240101``, a size ``1.83`` (metres) in 10 cm bands is ``1.8``,
a weight ``81.5`` (kg) in 10 kg bands is ``80``. A value that does not parse is returned as
it is (the caller's other checks see it).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

_AGE = re.compile(r"^(\d{3})([DWMY])$")
AGE, BIRTH_DATE, SIZE, WEIGHT = 0x00101010, 0x00100030, 0x00101020, 0x00101030
_DATE_VRS = ("DA", "DT")


@dataclass(frozen=True)
class Generalization:
    """What a profile generalises (each None: left as it is).

    Attributes
    ----------
    age_band : int or None
        Years per band of PatientAge (5 or 10, say); ages under a year become ``000Y``.
    dates_to_year : bool
        Dates and date-times kept become the first of January of their year.
    size_band_cm : int or None
        Centimetres per band of PatientSize.
    weight_band_kg : int or None
        Kilograms per band of PatientWeight.
    """

    age_band: int | None = None
    dates_to_year: bool = False
    size_band_cm: int | None = None
    weight_band_kg: int | None = None

    @property
    def active(self) -> bool:
        """Whether anything is generalised."""
        return bool(self.age_band or self.dates_to_year or self.size_band_cm or self.weight_band_kg)

    def describe(self) -> str:
        """In words (for ``explain`` and reports)."""
        parts = []
        if self.age_band:
            parts.append(f"age in {self.age_band}-year bands")
        if self.dates_to_year:
            parts.append("dates to the year")
        if self.size_band_cm:
            parts.append(f"size in {self.size_band_cm} cm bands")
        if self.weight_band_kg:
            parts.append(f"weight in {self.weight_band_kg} kg bands")
        return ", ".join(parts) or "nothing"

    def toml(self) -> str:
        """As the ``[generalize]`` table of a profile file (what ``risk`` proposes)."""
        lines = ["[generalize]"]
        if self.age_band:
            lines.append(f"age = {self.age_band}")
        if self.dates_to_year:
            lines.append('dates = "year"')
        if self.size_band_cm:
            lines.append(f"size = {self.size_band_cm}")
        if self.weight_band_kg:
            lines.append(f"weight = {self.weight_band_kg}")
        return "\n".join(lines)


def age_in_band(value: str, years: int) -> str:
    """An Age String in bands of ``years`` (its lower bound)."""
    found = _AGE.match(value.strip())
    if found is None or years <= 0:
        return value
    number, unit = int(found.group(1)), found.group(2)
    age = number if unit == "Y" else 0
    return f"{(age // years) * years:03d}Y"


def date_to_year(value: str) -> str:
    """A DA (or the date part of a DT) as the first of January of its year."""
    text = value.strip()
    if len(text) >= 4 and text[:4].isdigit():
        return f"{text[:4]}0101"
    return value


def in_band(value: str, band: float) -> str:
    """A decimal string floored to a multiple of ``band`` (DS text)."""
    try:
        number = float(value)
    except ValueError:
        return value
    if band <= 0 or not math.isfinite(number):
        return value
    floored = math.floor(number / band) * band
    text = f"{floored:.4f}".rstrip("0").rstrip(".")
    return text or "0"


def apply(ds: Dataset, rule: Generalization) -> list[tuple[int, str, str]]:
    """Generalise the quasi-identifiers of ``ds`` in place: age, size and weight at the top
    level, dates and date-times at every depth (a frame's FrameAcquisitionDateTime too).

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        A de-identified dataset.
    rule : Generalization
        What to generalise.

    Returns
    -------
    list of (int, str, str)
        The tags changed, each with its VR and what was done (for ``explain``).
    """
    done: list[tuple[int, str, str]] = []

    def change(tag: int, new: str, how: str) -> None:
        element = ds[tag]
        if new != str(element.value):
            element.value = new
            done.append((tag, str(element.VR), how))

    if rule.age_band and AGE in ds and ds[AGE].value:
        change(AGE, age_in_band(str(ds[AGE].value), rule.age_band), f"{rule.age_band}-year band")
    if rule.size_band_cm and SIZE in ds and ds[SIZE].value not in (None, ""):
        change(SIZE, in_band(str(ds[SIZE].value), rule.size_band_cm / 100), "size band")
    if rule.weight_band_kg and WEIGHT in ds and ds[WEIGHT].value not in (None, ""):
        change(WEIGHT, in_band(str(ds[WEIGHT].value), rule.weight_band_kg), "weight band")
    if rule.dates_to_year:
        _dates_to_year(ds, done)
    return done


def _dates_to_year(ds: Dataset, done: list[tuple[int, str, str]]) -> None:
    """Every date and date-time of ``ds`` and its items as the first of January."""
    for element in list(ds):
        if element.VR == "SQ":
            for item in element.value or ():
                _dates_to_year(item, done)
        elif element.VR in _DATE_VRS and element.value:
            values = element.value if isinstance(element.value, MultiValue) else [element.value]
            new = [date_to_year(str(v)) for v in values]
            if new != [str(v) for v in values]:
                element.value = new if isinstance(element.value, MultiValue) else new[0]
                done.append((int(element.tag), str(element.VR), "year only"))
