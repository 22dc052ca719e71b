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

Values are PHI: the report holds them (truncated) but shows them only when asked
(``show_values``). Day offsets are shown: with the de-identified files they reveal the original
dates, so a report belongs with the maps, not with the shared data. Messages name files,
never values read from them.
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import re
import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Any

from pydicom.datadict import keyword_for_tag, private_dictionary_description
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from dicomveil.errors import InputError
from dicomveil.io import Kind, SourceFile, iter_files, read_source, sniff

__all__ = [
    "ChangeKind",
    "DiffReport",
    "ElementChange",
    "FilePair",
    "MatchMethod",
    "Step",
    "SummaryRow",
    "diff",
]

_PIXEL_TAGS = (0x7FE00008, 0x7FE00009, 0x7FE00010)
_CHUNK = 1 << 20
_VALUE_CHARS = 64
_DA = re.compile(r"^(\d{4})\.?(\d{2})\.?(\d{2})$")
_DT = re.compile(r"^(\d{4})(\d{2})(\d{2})(.*)$")


class ChangeKind(StrEnum):
    """What de-identification did to one element (in the order reports list them)."""

    REMOVED = "removed"
    EMPTIED = "emptied"
    REPLACED = "replaced"
    SHIFTED = "shifted"
    KEPT = "kept"
    ADDED = "added"


_KIND_ORDER = {kind: i for i, kind in enumerate(ChangeKind)}


class MatchMethod(StrEnum):
    """How an original file was paired with its de-identified file."""

    UID_MAP = "uid map"
    SAME_UID = "same UID"
    CONTENT = "content"


class StepKind(IntEnum):
    PUBLIC = 0
    CREATOR = 1
    PRIVATE = 2
    ORPHAN = 3  # a private element without its creator, or a private group length


@dataclass(frozen=True)
class Step:
    """One level of an element's path.

    Public elements (and private ones without a creator) are named by their tag; private
    creators by ``(group, creator)``; private elements by ``(group, creator, offset)``, so an
    element whose block moved (``0019,10xx`` to ``0019,11xx``) is still the same element.
    ``occurrence`` tells apart a creator that appears twice in one group.
    """

    kind: StepKind
    group: int
    element: int  # the tag's element; the offset (0x00-0xFF) of a private element
    creator: str = ""
    occurrence: int = 0

    @property
    def sort_key(self) -> tuple[int, int, str, int, int]:
        if self.kind is StepKind.PUBLIC:
            return (self.group, 0, "", 0, self.element)
        if self.kind is StepKind.ORPHAN:
            return (self.group, 2, "", 0, self.element)
        offset = -1 if self.kind is StepKind.CREATOR else self.element
        return (self.group, 1, self.creator, self.occurrence, offset)

    @property
    def text(self) -> str:
        """``(0010,0010)``, ``(0019,"SIEMENS MR HEADER")``, ``(0019,"SIEMENS MR HEADER",0C)``."""
        if self.kind in (StepKind.PUBLIC, StepKind.ORPHAN):
            return f"({self.group:04X},{self.element:04X})"
        creator = self.creator.replace('"', "'")
        if self.occurrence:
            creator += f"#{self.occurrence + 1}"
        if self.kind is StepKind.CREATOR:
            return f'({self.group:04X},"{creator}")'
        return f'({self.group:04X},"{creator}",{self.element:02X})'

    @property
    def keyword(self) -> str:
        """The data dictionary's keyword, ``[description]`` of a known private element, or
        an empty string."""
        if self.kind is StepKind.PUBLIC:
            return keyword_for_tag((self.group << 16) | self.element)
        if self.kind is StepKind.CREATOR:
            return "PrivateCreator"
        if self.kind is StepKind.PRIVATE:
            try:
                tag = (self.group << 16) | 0x1000 | self.element
                return f"[{private_dictionary_description(tag, self.creator)}]"
            except KeyError:
                return ""
        return ""

    @property
    def label(self) -> str:
        """The keyword of a public element, else the text."""
        return (self.kind is StepKind.PUBLIC and self.keyword) or self.text


StepPath = tuple[Step, ...]


def _path_text(steps: StepPath) -> str:
    return ">".join(step.text for step in steps)


def _path_keyword(steps: StepPath) -> str:
    """Keywords, joined; a step without one by its text, a path without any: empty."""
    keywords = [step.keyword for step in steps]
    if not any(keywords):
        return ""
    return ">".join(k or step.text for k, step in zip(keywords, steps, strict=True))


def _path_label(steps: StepPath) -> str:
    return ">".join(step.label for step in steps)


@dataclass(frozen=True)
class ElementChange:
    """One element of one file pair. ``before`` and ``after`` are PHI (short text)."""

    steps: StepPath = field(repr=False)
    path: str  # with item indices: (0040,0275)[0]>(0040,1001)
    keyword: str
    change: ChangeKind
    detail: str = ""
    before: str = field(default="", repr=False)
    after: str = field(default="", repr=False)


@dataclass(frozen=True)
class FilePair:
    """An original file, its de-identified file, and every element compared."""

    original: Path
    deidentified: Path
    matched_by: MatchMethod
    changes: tuple[ElementChange, ...]
    date_offset_days: int | None = None  # the whole-day shift found in this pair
    expected_offset_days: int | None = None  # from the map's date_offsets.csv

    def count(self, kind: ChangeKind) -> int:
        return sum(1 for c in self.changes if c.change is kind)

    @property
    def offset_disagrees(self) -> bool:
        """Dates moved by another offset than the map's date_offsets.csv records."""
        return (
            self.date_offset_days is not None
            and self.expected_offset_days is not None
            and self.date_offset_days != self.expected_offset_days
        )


@dataclass(frozen=True)
class SummaryRow:
    """One element path and one kind of change, across the batch: ``count`` of ``total``
    occurrences of the element (in either file of a pair)."""

    path: str
    keyword: str
    label: str
    change: ChangeKind
    count: int
    total: int
    detail: str = ""

    @property
    def phrase(self) -> str:
        if self.change is ChangeKind.SHIFTED and self.detail:
            return f"shifted {self.detail}"
        return f"{self.change.value} ({self.detail})" if self.detail else self.change.value

    def __str__(self) -> str:
        return f"{self.label}: {self.phrase} in {self.count}/{self.total}"


@dataclass
class DiffReport:
    """What :func:`diff` found: the matched pairs, the unmatched files on either side, and
    the files that are not DICOM or cannot be read (with the reason)."""

    original: Path
    deidentified: Path
    map_dir: Path | None = None
    pairs: list[FilePair] = field(default_factory=list)
    unmatched_original: list[Path] = field(default_factory=list)
    unmatched_deidentified: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def summary_rows(self) -> list[SummaryRow]:
        """Per element path and kind of change, across every pair, in tag order."""
        totals: Counter[StepPath] = Counter()
        details: dict[tuple[StepPath, ChangeKind], Counter[str]] = {}
        for pair in self.pairs:
            for change in pair.changes:
                totals[change.steps] += 1
                details.setdefault((change.steps, change.change), Counter())[change.detail] += 1
        return [
            SummaryRow(
                path=_path_text(steps),
                keyword=_path_keyword(steps),
                label=_path_label(steps),
                change=kind,
                count=sum(counted.values()),
                total=totals[steps],
                detail=_join_details(counted),
            )
            for (steps, kind), counted in sorted(
                details.items(),
                key=lambda kv: ([s.sort_key for s in kv[0][0]], _KIND_ORDER[kv[0][1]]),
            )
        ]

    def kind_counts(self) -> Counter[ChangeKind]:
        """How many element occurrences each kind of change has, across every pair."""
        return Counter(c.change for pair in self.pairs for c in pair.changes)

    def match_counts(self) -> Counter[MatchMethod]:
        return Counter(pair.matched_by for pair in self.pairs)

    def headline(self) -> str:
        methods = ", ".join(f"{m.value} {n}" for m, n in sorted(self.match_counts().items()))
        text = f"{len(self.pairs)} file pair(s) matched" + (f" ({methods})" if methods else "")
        text += (
            f"; unmatched: {len(self.unmatched_original)} original, "
            f"{len(self.unmatched_deidentified)} de-identified"
        )
        if self.skipped:
            text += f"; {len(self.skipped)} file(s) not compared (not DICOM or unreadable)"
        return text

    def to_text(self, *, show_values: bool = False) -> str:
        """Plain text: the headline, one line per summary row, the unmatched files, and with
        ``show_values`` each pair's changed elements with their values (PHI)."""
        lines = [
            f"dicomveil diff: {self.original} -> {self.deidentified}",
            self.headline(),
            "",
        ]
        lines += [str(row) for row in self.summary_rows()]
        lines += _offset_lines(self)
        lines += _file_lines("unmatched original files", self.unmatched_original)
        lines += _file_lines("unmatched de-identified files", self.unmatched_deidentified)
        if self.skipped:
            lines += ["", "not compared:"]
            lines += [f"  {path}: {reason}" for path, reason in self.skipped]
        if show_values:
            for pair in self.pairs:
                lines += ["", f"{pair.original} -> {pair.deidentified} ({pair.matched_by})"]
                for c in pair.changes:
                    if c.change is not ChangeKind.KEPT:
                        lines.append(
                            f"  {c.path} {c.keyword}: {c.change}: {c.before!r} -> {c.after!r}"
                        )
        return "\n".join(lines) + "\n"

    def to_html(self, *, show_values: bool = False) -> str:
        """A self-contained HTML page (inline CSS; no scripts, fonts or images; every text
        escaped). Values (PHI) only with ``show_values``."""
        from dicomveil.qc.diff.html import render

        return render(self, show_values)


def _join_details(counted: Counter[str]) -> str:
    if len(counted) == 1:
        return next(iter(counted))
    return "; ".join(f"{d or 'no detail'} ({n})" for d, n in sorted(counted.items()))


def _offset_lines(report: DiffReport) -> list[str]:
    wrong = [p for p in report.pairs if p.offset_disagrees]
    if not wrong:
        return []
    lines = ["", "dates shifted by another offset than date_offsets.csv records:"]
    lines += [f"  {p.original} -> {p.deidentified}" for p in wrong]
    return lines


def _file_lines(title: str, paths: list[Path]) -> list[str]:
    if not paths:
        return []
    return ["", f"{title}:", *(f"  {p}" for p in paths)]


# --------------------------------------------------------------------------------------------
# Scanning and matching


@dataclass(frozen=True)
class _FileInfo:
    path: Path
    sop_uid: str
    pixel_hash: str | None
    tiebreak: tuple[str, str, str, str] = field(repr=False)


def diff(original: Path, deidentified: Path, *, map_dir: Path | None = None) -> DiffReport:
    """Compare original files (a file or a folder) with their de-identified versions.

    Raises :class:`InputError` when a side is missing, holds no readable DICOM file, or the
    map folder has no ``uids.csv``.
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


def _read_maps(map_dir: Path) -> tuple[dict[str, str], dict[str, int]]:
    uids_csv = map_dir / "uids.csv"
    if not uids_csv.is_file():
        raise InputError("no uids.csv in the map folder", path=str(map_dir))
    uid_map = {row[0]: row[1] for row in _csv_rows(uids_csv, "id_old") if len(row) >= 2}
    offsets: dict[str, int] = {}
    offsets_csv = map_dir / "date_offsets.csv"
    if offsets_csv.is_file():
        for row in _csv_rows(offsets_csv, "patient_id"):
            if len(row) >= 3:
                try:
                    offsets[row[0]] = int(row[2])
                except ValueError:
                    raise InputError(
                        "malformed offset_days in date_offsets.csv", path=str(offsets_csv)
                    ) from None
    return uid_map, offsets


def _csv_rows(path: Path, first_header: str) -> list[list[str]]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read the map ({type(exc).__name__})", path=str(path)) from None
    if rows and rows[0] and rows[0][0].strip() == first_header:
        rows = rows[1:]
    return rows


def _scan(root: Path, skipped: list[tuple[Path, str]]) -> list[_FileInfo]:
    if not root.exists():
        raise InputError("no such file or folder", path=str(root))
    infos: list[_FileInfo] = []
    for path in iter_files(root):
        kind = sniff(path)
        if kind is not Kind.DICOM:
            if root.is_file():
                raise InputError(kind.value, path=str(path))
            skipped.append((path, kind.value))
            continue
        try:
            source = read_source(path)
        except InputError as exc:
            if root.is_file():
                raise
            skipped.append((path, exc.reason))
            continue
        if source.is_dicomdir:
            skipped.append((path, "DICOMDIR: not compared"))
            continue
        ds = source.dataset
        infos.append(
            _FileInfo(
                path,
                _text(ds, "SOPInstanceUID"),
                _pixel_hash(source),
                (
                    _text(ds, "Rows"),
                    _text(ds, "Columns"),
                    _text(ds, "InstanceNumber"),
                    _text(ds, "ImagePositionPatient"),
                ),
            )
        )
    if not infos:
        raise InputError("no readable DICOM file", path=str(root))
    return infos


def _text(ds: Dataset, keyword: str) -> str:
    try:
        value = ds.get(keyword)
    except Exception:  # a malformed value: no help in matching
        return ""
    if value is None:
        return ""
    if isinstance(value, MultiValue | list):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _pixel_hash(source: SourceFile) -> str | None:
    """SHA-256 of the Pixel Data value's bytes as stored (never decoded)."""
    digest = hashlib.sha256()
    span = source.pixels
    if span is not None:
        digest.update(span.tag.to_bytes(4, "big"))
        with source.path.open("rb") as fh:
            fh.seek(span.value_start)
            remaining = span.end - span.value_start
            while remaining > 0:
                chunk = fh.read(min(_CHUNK, remaining))
                if not chunk:
                    break
                digest.update(chunk)
                remaining -= len(chunk)
        return digest.hexdigest()
    for tag in _PIXEL_TAGS:
        if tag in source.dataset:  # deflated files are read whole
            value = source.dataset[tag].value
            digest.update(tag.to_bytes(4, "big"))
            digest.update(bytes(value) if isinstance(value, bytes | bytearray) else b"")
            return digest.hexdigest()
    return None


def _match(
    originals: list[_FileInfo], outputs: list[_FileInfo], uid_map: dict[str, str]
) -> list[tuple[_FileInfo, _FileInfo, MatchMethod]]:
    by_uid: dict[str, _FileInfo] = {}
    for info in outputs:
        if info.sop_uid:
            by_uid.setdefault(info.sop_uid, info)
    used: set[Path] = set()
    matched: list[tuple[_FileInfo, _FileInfo, MatchMethod]] = []
    left = list(originals)
    for method in (MatchMethod.UID_MAP, MatchMethod.SAME_UID):
        rest = []
        for o in left:
            target = uid_map.get(o.sop_uid) if method is MatchMethod.UID_MAP else o.sop_uid
            found = by_uid.get(target) if target else None
            if found is not None and found.path not in used:
                used.add(found.path)
                matched.append((o, found, method))
            else:
                rest.append(o)
        left = rest
    by_hash: dict[str, list[_FileInfo]] = {}
    for info in outputs:
        if info.pixel_hash is not None and info.path not in used:
            by_hash.setdefault(info.pixel_hash, []).append(info)
    for o in left:
        candidates = [d for d in by_hash.get(o.pixel_hash or "", []) if d.path not in used]
        if not candidates:
            continue
        best = max(
            candidates,
            key=lambda d: sum(a == b for a, b in zip(o.tiebreak, d.tiebreak, strict=True)),
        )
        used.add(best.path)
        matched.append((o, best, MatchMethod.CONTENT))
    matched.sort(key=lambda t: t[0].path)
    return matched


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
        if o.VR in ("DA", "DT") and d.VR == o.VR and not _is_empty(a):
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
