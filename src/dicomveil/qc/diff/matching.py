"""Finding the files of both sides of a ``diff`` and pairing them: through the map folder's
``uids.csv``, by an unchanged SOP Instance UID, then by content (the Pixel Data bytes)."""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from dicomveil.errors import InputError
from dicomveil.io import Kind, SourceFile, read_source, regular_files, sniff
from dicomveil.qc.diff.steps import MatchMethod

_PIXEL_TAGS: Final = (0x7FE00008, 0x7FE00009, 0x7FE00010)
_CHUNK: Final = 1 << 20


@dataclass(frozen=True)
class _FileInfo:
    path: Path
    sop_uid: str
    pixel_hash: str | None
    tiebreak: tuple[str, str, str, str] = field(repr=False)


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
    for path in regular_files(root):
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
