"""Sheets of the audit trail: the lab's tracking sheet and record listings, shown on the
terminal or exported to CSV and XLSX (atomically; formulas never run)."""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import io as _io
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, Final

from dicomveil.errors import AuditError
from dicomveil.identity.crosswalk import Crosswalk
from dicomveil.qc.audit.records import SubjectRecord, _utc

TRACKING_COLUMNS: Final = (
    "subject",
    "deidentified_by",
    "deidentified_at",
    "checked_by",
    "checked_at",
    "qc_status",
    "notes",
)

Cell = str | int | _dt.datetime | None


@dataclass(frozen=True)
class Sheet:
    """A table to show or export: a title, column names and rows."""

    title: str
    columns: tuple[str, ...]
    rows: list[tuple[Cell, ...]]


def tracking_sheet(
    subjects: Iterable[SubjectRecord], original_ids: Crosswalk | None = None
) -> Sheet:
    """The lab's tracking sheet: who de-identified and who checked each subject.

    Parameters
    ----------
    subjects : Iterable[SubjectRecord]
        The subjects (:meth:`AuditTrail.subjects`).
    original_ids : Crosswalk, optional
        Original ID -> study ID (a ``--crosswalk`` file or a ``--map-dir`` ``patients.csv``):
        an ``original_id`` column then follows the subject. Original IDs are PHI: pass the
        crosswalk only when the user asked to see them.

    Returns
    -------
    Sheet
        The sheet ``tracking``, columns :data:`TRACKING_COLUMNS` (and ``original_id``).
    """
    inverse = {new: old for old, new in original_ids.mapping.items()} if original_ids else None
    columns: tuple[str, ...] = TRACKING_COLUMNS
    if inverse is not None:
        columns = (columns[0], "original_id", *columns[1:])
    rows: list[tuple[Cell, ...]] = []
    for s in subjects:
        row: list[Cell] = [
            s.pseudonym,
            s.deidentified_by,
            s.deidentified_at,
            s.verified_by,
            s.verified_at,
            s.qc_status.value,
            s.notes,
        ]
        if inverse is not None:
            row.insert(1, inverse.get(s.pseudonym, ""))
        rows.append(tuple(row))
    return Sheet("tracking", columns, rows)


def records_sheet(title: str, kind: type[Any], records: Iterable[Any]) -> Sheet:
    """A sheet of records (:class:`RunRecord`, :class:`FileRecord`, ...): one column a field.

    Parameters
    ----------
    title : str
        The sheet's title.
    kind : type
        The records' dataclass: its fields name the columns.
    records : Iterable
        The records, one row each (enumerations by value, mappings and lists as JSON).

    Returns
    -------
    Sheet
        The sheet.
    """
    names = tuple(f.name for f in dataclasses.fields(kind))
    return Sheet(title, names, [tuple(_cell(getattr(r, n)) for n in names) for r in records])


def _cell(value: object) -> Cell:
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, str | int | _dt.datetime) or value is None:
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def format_cell(value: Cell) -> str:
    """A cell as text.

    Parameters
    ----------
    value : Cell
        The cell.

    Returns
    -------
    str
        Datetimes in ISO 8601 UTC (``...Z``, to the second), None as empty, the rest as is.
    """
    if value is None:
        return ""
    if isinstance(value, _dt.datetime):
        return _utc(value).isoformat(timespec="seconds").replace("+00:00", "Z")
    return str(value)


def export_sheet(sheet: Sheet, path: Path, *, private: bool = False) -> None:
    """Write a sheet as CSV or XLSX (by the file's suffix), replacing the file atomically.

    In XLSX, times are UTC (Excel has no time zones) and no text is ever a formula; in CSV a
    cell that a spreadsheet would run as a formula is quoted.

    Parameters
    ----------
    sheet : Sheet
        The sheet.
    path : pathlib.Path
        A ``.csv`` or ``.xlsx`` file.
    private : bool, default False
        Make the file readable by its owner only (a sheet with original IDs).

    Raises
    ------
    AuditError
        The suffix is neither, or the file cannot be written.
    """
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".xlsx"):
        raise AuditError(f"{path}: export to a .csv or .xlsx file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                write_sheet(sheet, fh, suffix[1:])
            Path(temp).chmod(0o600 if private else 0o644)
            Path(temp).replace(path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise AuditError(f"{path}: cannot write the export ({exc.strerror})") from None


def write_sheet(sheet: Sheet, fh: IO[bytes], kind: str) -> None:
    """Write a sheet as CSV or XLSX to a binary stream (see :func:`export_sheet`).

    Parameters
    ----------
    sheet : Sheet
        The sheet.
    fh : IO[bytes]
        Where it goes.
    kind : str
        ``csv`` or ``xlsx``.
    """
    writer: Callable[[Sheet, IO[bytes]], None] = _write_csv if kind == "csv" else _write_xlsx
    writer(sheet, fh)


def _write_csv(sheet: Sheet, fh: IO[bytes]) -> None:
    text = _io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(sheet.columns)
    writer.writerows([_inert(format_cell(c)) for c in row] for row in sheet.rows)
    fh.write(text.getvalue().encode("utf-8"))


def _inert(text: str) -> str:
    """Spreadsheets run a CSV cell starting with = + - @ as a formula: quote it (OWASP)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _write_xlsx(sheet: Sheet, fh: IO[bytes]) -> None:
    # openpyxl loads in a few tenths of a second: only when an XLSX is asked for.
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
    from openpyxl.styles import Font

    book = Workbook(write_only=True)
    ws = book.create_sheet(sheet.title)
    ws.freeze_panes = "A2"
    bold = Font(bold=True)
    header = []
    for name in sheet.columns:
        cell = WriteOnlyCell(ws, value=name)
        cell.font = bold
        header.append(cell)
    ws.append(header)
    for row in sheet.rows:
        cells = []
        for value in row:
            if isinstance(value, _dt.datetime):
                cell = WriteOnlyCell(ws, value=_utc(value).replace(tzinfo=None, microsecond=0))
                cell.number_format = "yyyy-mm-dd hh:mm:ss"
            elif isinstance(value, str):
                cell = WriteOnlyCell(ws, value=ILLEGAL_CHARACTERS_RE.sub("", value))
                cell.data_type = "s"  # never a formula, whatever the text starts with
            else:
                cell = WriteOnlyCell(ws, value=value)
            cells.append(cell)
        ws.append(cells)
    book.save(fh)
