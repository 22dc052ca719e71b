"""``diff``: what de-identification changed, element by element, across a batch.

Original files are matched to de-identified files through the map folder's ``uids.csv``
(``id_old,id_new``: the SOP Instance UID of each original and of its output), then by an
unchanged SOP Instance UID (``retain-uids``), then by content: the SHA-256 of the Pixel Data
bytes (never decoded), with Rows, Columns, Instance Number and Image Position (Patient) to
break ties. Files matched on neither side are reported.

Every element of a matched pair is compared at every depth (sequences item by item; private
elements by ``(group, creator, offset)``, not by their raw tag, since blocks may move) and
classified as :class:`ChangeKind`: removed, emptied, replaced, shifted (DA/DT values moved by
one whole number of days, the same within the pair), kept, or added. The report aggregates
them per element path across the batch (``PatientName: replaced in 8/8``).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import re
import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from dicomveil.io import read_source
from dicomveil.qc.diff.matching import (
    _PIXEL_TAGS,
    _FileInfo,
    _match,
    _read_maps,
    _scan,
    _text,
)
from dicomveil.qc.diff.model import DiffReport, ElementChange, FilePair
from dicomveil.qc.diff.steps import (
    ChangeKind,
    MatchMethod,
    Step,
    StepKind,
    StepPath,
    _path_keyword,
)
from dicomveil.standard.actions import DUMMY_VALUES

_VALUE_CHARS: Final = 64
_DA: Final = re.compile(r"^(\d{4})\.?(\d{2})\.?(\d{2})$")
_DT: Final = re.compile(r"^(\d{4})(\d{2})(\d{2})(.*)$")


def diff(original: Path, deidentified: Path, *, map_dir: Path | None = None) -> DiffReport:
    """Compare original files (a file or a folder) with their de-identified versions.

    Parameters
    ----------
    original : pathlib.Path
        The original file or folder.
    deidentified : pathlib.Path
        The de-identified file or folder.
    map_dir : pathlib.Path, optional
        The run's map folder: its ``uids.csv`` pairs the files, its ``date_offsets.csv``
        tells the day offset each patient's dates should have moved by.

    Returns
    -------
    DiffReport
        The pairs, every element of each compared, and the files left unmatched or skipped.

    Raises
    ------
    InputError
        A side is missing or holds no readable DICOM file (a single file given that is not
        DICOM or cannot be read), or the map folder has no ``uids.csv`` or a malformed map.
    """
    uid_map: dict[str, str] = {}
    offsets: dict[str, int] = {}
    if map_dir is not None:
        uid_map, offsets = _read_maps(map_dir)
    report = DiffReport(Path(original), Path(deidentified), map_dir)
    with warnings.catch_warnings():
        # pydicom warns about invalid values in real-world files: a diff reports, not warns.
        warnings.simplefilter("ignore", UserWarning)
        originals = _scan(report.original, report.skipped)
        outputs = _scan(report.deidentified, report.skipped)
        matched = _match(originals, outputs, uid_map)
        used_o = {o.path for o, _, _ in matched}
        used_d = {d.path for _, d, _ in matched}
        report.unmatched_original = [i.path for i in originals if i.path not in used_o]
        report.unmatched_deidentified = [i.path for i in outputs if i.path not in used_d]
        for o, d, method in matched:
            report.pairs.append(_compare_files(o, d, method, uid_map, offsets))
    return report


def compare_pair(original: Path, deidentified: Path) -> FilePair:
    """Compare one original file with its de-identified version (a pair the caller knows,
    as the audit trail records it), element by element as :func:`diff` does.

    Parameters
    ----------
    original : pathlib.Path
        The original file.
    deidentified : pathlib.Path
        The de-identified file.

    Returns
    -------
    FilePair
        Every element compared (``matched_by`` :attr:`MatchMethod.GIVEN`).

    Raises
    ------
    InputError
        A file is not DICOM or cannot be read.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        (o,) = _scan(Path(original), [])
        (d,) = _scan(Path(deidentified), [])
        return _compare_files(o, d, MatchMethod.GIVEN, {}, {})


# --------------------------------------------------------------------------------------------
# Comparing one pair


@dataclass
class _Record:
    steps: StepPath
    path: str
    change: ChangeKind
    detail: str = ""
    before: str = ""
    after: str = ""
    shift: int | None = None  # a whole-day shift of DA/DT values, still to be judged


def _compare_files(
    o: _FileInfo,
    d: _FileInfo,
    method: MatchMethod,
    uid_map: dict[str, str],
    offsets: dict[str, int],
) -> FilePair:
    original = read_source(o.path).dataset
    output = read_source(d.path).dataset
    records: list[_Record] = []
    _compare(_elements(original), _elements(output), (), "", uid_map, records)
    records.append(_pixel_record(o, d))
    shifts = Counter(r.shift for r in records if r.shift is not None)
    offset: int | None = None
    if shifts:
        offset = min(shifts.items(), key=lambda kv: (-kv[1], abs(kv[0])))[0]
    for r in records:
        if r.shift is None:
            continue
        if r.shift == offset:
            r.change, r.detail = ChangeKind.SHIFTED, f"{offset:+d} d"
        else:
            r.change = ChangeKind.REPLACED
            r.detail = f"moved {r.shift:+d} d, not the pair's {offset:+d} d"
    patient_id = _text(original, "PatientID")
    return FilePair(
        original=o.path,
        deidentified=d.path,
        matched_by=method,
        changes=tuple(
            ElementChange(
                steps=r.steps,
                path=r.path,
                keyword=_path_keyword(r.steps),
                change=r.change,
                detail=r.detail,
                before=r.before,
                after=r.after,
            )
            for r in records
        ),
        date_offset_days=offset,
        expected_offset_days=offsets.get(patient_id) if patient_id else None,
    )


def _pixel_record(o: _FileInfo, d: _FileInfo) -> _Record:
    step = (Step(StepKind.PUBLIC, 0x7FE0, 0x0010),)
    path = step[0].text
    before = f"sha256 {o.pixel_hash[:16]}" if o.pixel_hash else ""
    after = f"sha256 {d.pixel_hash[:16]}" if d.pixel_hash else ""
    if o.pixel_hash is None and d.pixel_hash is None:
        return _Record(step, path, ChangeKind.KEPT, "no pixel data")
    if d.pixel_hash is None:
        return _Record(step, path, ChangeKind.REMOVED, before=before)
    if o.pixel_hash is None:
        return _Record(step, path, ChangeKind.ADDED, after=after)
    if o.pixel_hash == d.pixel_hash:
        return _Record(step, path, ChangeKind.KEPT, "byte-identical", before, after)
    return _Record(step, path, ChangeKind.REPLACED, "bytes differ", before, after)


def _elements(ds: Dataset | None, top: bool = True) -> dict[Step, DataElement]:
    """The dataset's elements (and its file meta's, at the top level) by :class:`Step`."""
    if ds is None:
        return {}
    elements: list[DataElement] = []
    meta = getattr(ds, "file_meta", None) if top else None
    for source in (meta, ds):
        if not isinstance(source, Dataset):
            continue
        for tag in list(source.keys()):
            if top and tag in _PIXEL_TAGS:
                continue  # compared by hash
            try:
                elements.append(source[tag])
            except Exception:  # pydicom cannot convert it: compare its raw bytes
                raw = source.get_item(tag, keep_deferred=True)
                elements.append(DataElement(tag, "UN", getattr(raw, "value", b"") or b""))
    creators: dict[tuple[int, int], tuple[str, int]] = {}
    seen: Counter[tuple[int, str]] = Counter()
    for elem in elements:
        tag = elem.tag
        if tag.group % 2 and 0x10 <= tag.element <= 0xFF:
            creator = _creator_text(elem.value)
            creators[(tag.group, tag.element)] = (creator, seen[(tag.group, creator)])
            seen[(tag.group, creator)] += 1
    out: dict[Step, DataElement] = {}
    for elem in elements:
        tag = elem.tag
        step: Step
        if not tag.group % 2:
            step = Step(StepKind.PUBLIC, tag.group, tag.element)
        elif 0x10 <= tag.element <= 0xFF:
            creator, occurrence = creators[(tag.group, tag.element)]
            step = Step(StepKind.CREATOR, tag.group, 0, creator, occurrence)
        elif (tag.group, tag.element >> 8) in creators:
            creator, occurrence = creators[(tag.group, tag.element >> 8)]
            step = Step(StepKind.PRIVATE, tag.group, tag.element & 0xFF, creator, occurrence)
        else:
            step = Step(StepKind.ORPHAN, tag.group, tag.element)
        out[step] = elem
    return out


def _creator_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1").strip("\x00 ")
    return str(value or "").strip("\x00 ")


def _compare(
    before: dict[Step, DataElement],
    after: dict[Step, DataElement],
    prefix: StepPath,
    prefix_text: str,
    uid_map: dict[str, str],
    out: list[_Record],
) -> bool:
    """Append a record per element of the two datasets; True when everything was kept."""
    all_kept = True
    for step in sorted(before.keys() | after.keys(), key=lambda s: s.sort_key):
        o, d = before.get(step), after.get(step)
        steps = (*prefix, step)
        path = prefix_text + step.text
        if d is None:
            assert o is not None
            out.append(_Record(steps, path, ChangeKind.REMOVED, before=_show(o)))
            all_kept = False
            continue
        if o is None:
            out.append(_Record(steps, path, ChangeKind.ADDED, after=_show(d)))
            all_kept = False
            continue
        if o.VR == "SQ" and d.VR == "SQ":
            kept = _compare_sequence(o, d, steps, path, uid_map, out)
        else:
            record = _compare_values(o, d, steps, path, uid_map)
            out.append(record)
            kept = record.change is ChangeKind.KEPT
        all_kept = all_kept and kept
    return all_kept


def _compare_sequence(
    o: DataElement,
    d: DataElement,
    steps: StepPath,
    path: str,
    uid_map: dict[str, str],
    out: list[_Record],
) -> bool:
    o_items, d_items = list(o.value or []), list(d.value or [])
    record = _Record(steps, path, ChangeKind.KEPT, before=_show(o), after=_show(d))
    out.append(record)
    if o_items and not d_items:
        record.change = ChangeKind.EMPTIED
        return False
    inner: list[_Record] = []
    kept = True
    for i in range(max(len(o_items), len(d_items))):
        a = o_items[i] if i < len(o_items) else None
        b = d_items[i] if i < len(d_items) else None
        item_kept = _compare(
            _elements(a, top=False), _elements(b, top=False), steps, f"{path}[{i}]>", uid_map, inner
        )
        kept = kept and item_kept
    out.extend(inner)
    if len(o_items) != len(d_items):
        record.change = ChangeKind.REPLACED
        record.detail = f"{len(o_items)} -> {len(d_items)} items"
        return False
    if not kept:
        record.change = ChangeKind.REPLACED
        record.detail = "items changed"
    return kept


def _compare_values(
    o: DataElement, d: DataElement, steps: StepPath, path: str, uid_map: dict[str, str]
) -> _Record:
    a, b = _norm(o), _norm(d)
    record = _Record(steps, path, ChangeKind.KEPT, before=_show(o), after=_show(d))
    if a == b:
        return record
    if _is_empty(b):
        record.change = ChangeKind.EMPTIED
        return record
    record.change = ChangeKind.REPLACED
    if isinstance(a, tuple) and isinstance(b, tuple):
        if o.VR in ("DA", "DT") and d.VR == o.VR and set(b) == {DUMMY_VALUES[o.VR]}:
            record.detail = "a dummy date"  # replaced, not moved: no day offset to show
        elif o.VR in ("DA", "DT") and d.VR == o.VR and not _is_empty(a):
            record.shift = _day_shift(o.VR, a, b)
        elif o.VR == "UI" and any(x in uid_map for x in a):
            mapped = len(a) == len(b) and all(
                uid_map.get(x) == y for x, y in zip(a, b, strict=True)
            )
            record.detail = "as uids.csv maps it" if mapped else "not as uids.csv maps it"
    return record


def _norm(elem: DataElement) -> tuple[str, ...] | bytes:
    value = elem.value
    if value is None:
        return ()
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    items: Iterable[Any] = value if isinstance(value, MultiValue | list | tuple) else [value]
    return tuple("" if v is None else str(v) for v in items)


def _is_empty(value: tuple[str, ...] | bytes) -> bool:
    if isinstance(value, bytes):
        return not value.strip(b"\x00 ")
    return not any(v.strip() for v in value)


def _day_shift(vr: str, before: tuple[str, ...], after: tuple[str, ...]) -> int | None:
    """The one whole number of days by which every value moved, if there is one."""
    if len(before) != len(after):
        return None
    shifts = set()
    for x, y in zip(before, after, strict=True):
        days = _days(vr, x.strip(), y.strip())
        if days is None:
            return None
        shifts.add(days)
    if len(shifts) != 1:
        return None
    shift = shifts.pop()
    return shift or None


def _days(vr: str, x: str, y: str) -> int | None:
    pattern = _DA if vr == "DA" else _DT
    mx, my = pattern.match(x), pattern.match(y)
    if mx is None or my is None:
        return None
    if vr == "DT" and mx[4] != my[4]:
        return None  # the time of day (or its offset) changed too: not a date shift
    try:
        dx = _dt.date(int(mx[1]), int(mx[2]), int(mx[3]))
        dy = _dt.date(int(my[1]), int(my[2]), int(my[3]))
    except ValueError:
        return None
    return (dy - dx).days


def _show(elem: DataElement) -> str:
    """A short text of the value (PHI: shown only when asked)."""
    value = elem.value
    if elem.VR == "SQ":
        return f"{len(value or [])} item(s)"
    if isinstance(value, bytes | bytearray):
        return f"{len(value)} bytes, sha256 {hashlib.sha256(value).hexdigest()[:16]}"
    norm = _norm(elem)
    text = "\\".join(norm) if isinstance(norm, tuple) else ""
    return text if len(text) <= _VALUE_CHARS else text[: _VALUE_CHARS - 3] + "..."
