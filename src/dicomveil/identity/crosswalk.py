"""A crosswalk: the user's own map from original patient IDs to study IDs.

Labs keep one as a spreadsheet. dicomveil reads it as CSV with a header row and two columns,
original ID first and study ID second (``id_old,id_new`` as MIDI-B writes it, or
``original_id,study_id``). A patient missing from it is an error for that patient's files.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import pydicom.config
from pydicom.valuerep import validate_value

from dicomveil.errors import CrosswalkError


@dataclass(frozen=True)
class Crosswalk:
    mapping: Mapping[str, str]
    source: str = ""

    def lookup(self, patient_id: str) -> str | None:
        return self.mapping.get(patient_id.strip())

    @classmethod
    def from_csv(cls, path: str | Path) -> Crosswalk:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise CrosswalkError(
                f"{path}: cannot read the crosswalk ({type(exc).__name__})"
            ) from None
        rows = list(csv.reader(text.splitlines()))
        if not rows or len(rows[0]) != 2:
            raise CrosswalkError(
                f"{path}: a crosswalk has a header row and two columns (original ID, study ID)"
            )
        mapping: dict[str, str] = {}
        seen_new: dict[str, str] = {}
        for number, row in enumerate(rows[1:], start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != 2 or not row[0].strip() or not row[1].strip():
                raise CrosswalkError(f"{path}: line {number}: needs an original ID and a study ID")
            old, new = row[0].strip(), row[1].strip()
            try:
                validate_value("LO", new, pydicom.config.RAISE)
            except ValueError:
                raise CrosswalkError(
                    f"{path}: line {number}: the study ID is not a valid LO value"
                ) from None
            if old in mapping and mapping[old] != new:
                raise CrosswalkError(
                    f"{path}: line {number}: an original ID appears twice with different study IDs"
                )
            if new in seen_new and seen_new[new] != old:
                raise CrosswalkError(f"{path}: line {number}: two original IDs share one study ID")
            mapping[old] = new
            seen_new[new] = old
        if not mapping:
            raise CrosswalkError(f"{path}: the crosswalk has no rows")
        return cls(MappingProxyType(mapping), str(path))
