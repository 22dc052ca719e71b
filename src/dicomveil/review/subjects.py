"""What a reviewer sees of the audit trail: the queue of subjects, and one subject's runs,
studies, series, files, withheld inputs and verification findings.

Files are found only through the audit trail's records: an output is the run's output
folder joined with the recorded relative path, and must stay inside it; an input is the
recorded path (relative ones from the run's working folder). Nothing a request names is
ever used as a path.
"""

from __future__ import annotations

import datetime as _dt
import threading
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread

from dicomveil.qc.audit import AuditTrail, FileRecord, RunRecord, SubjectRecord, VerificationRecord
from dicomveil.qc.audit.trail import QcStatus
from dicomveil.review.store import Event, IndexRow, ReviewStore, SheetRow
from dicomveil.runs.batch import Outcome

__all__ = [
    "FileEntry",
    "QueueRow",
    "SeriesView",
    "StudyView",
    "SubjectView",
    "index_pending",
    "input_file",
    "output_file",
    "queue",
    "subject_view",
    "written_files",
]

_HEADER_TAGS = [
    0x00280010,  # Rows: an image (an RT Plan or an SR has none, and no frame to show)
    0x00080060,  # Modality
    0x0008103E,  # SeriesDescription
    0x00200013,  # InstanceNumber
    0x0020000D,  # StudyInstanceUID
    0x0020000E,  # SeriesInstanceUID
    0x00280008,  # NumberOfFrames
]


_INDEXING = threading.Lock()  # one reader of outputs into the index at a time


@dataclass(frozen=True)
class QueueRow:
    """One subject of the queue."""

    subject: SubjectRecord
    sheet: SheetRow
    written: int
    withheld: int
    failed: int
    studies: int | None  # None: not indexed yet
    verified: str  # the latest verification's verdict and findings, or ""


def queue(trail: AuditTrail, store: ReviewStore, status: QcStatus | None) -> list[QueueRow]:
    """The subjects, with their counts and the lab's columns.

    Parameters
    ----------
    trail : AuditTrail
        The audit trail.
    store : ReviewStore
        The review tables.
    status : QcStatus or None
        Only subjects with this QC status (None: all).

    Returns
    -------
    list of QueueRow
        By pseudonym.
    """
    counts = trail.subject_counts()
    sheet = store.sheet()
    studies = store.study_counts()
    checks: dict[str, str] = {}  # the latest verification's verdict per subject
    for event in trail.qc_events():
        if event.verification_id is not None:
            checks[event.pseudonym] = event.notes.removeprefix("verification: ")
    rows = []
    for subject in trail.subjects():
        if status is not None and subject.qc_status is not status:
            continue
        own = counts.get(subject.pseudonym, {})
        rows.append(
            QueueRow(
                subject,
                sheet.get(subject.pseudonym, SheetRow()),
                own.get(Outcome.WRITTEN, 0),
                own.get(Outcome.WITHHELD, 0),
                own.get(Outcome.FAILED, 0),
                studies.get(subject.pseudonym),
                checks.get(subject.pseudonym, ""),
            )
        )
    return rows


@dataclass(frozen=True)
class FileEntry:
    """A written file of the subject: its record, its run and what the index knows."""

    record: FileRecord
    run: RunRecord
    index: IndexRow | None


@dataclass
class SeriesView:
    """A series of the subject, its files by instance number."""

    uid: str
    modality: str
    description: str
    files: list[FileEntry] = field(default_factory=list)

    @property
    def first(self) -> FileEntry:
        """The file the page checks for the series (the first by instance number)."""
        return self.files[0]

    @property
    def frames(self) -> int:
        """Frames of all its files."""
        return sum(f.index.frames if f.index else 1 for f in self.files)


@dataclass
class StudyView:
    """A study of the subject and its series."""

    uid: str
    series: list[SeriesView] = field(default_factory=list)


@dataclass
class SubjectView:
    """Everything the subject page shows (see :func:`subject_view`)."""

    subject: SubjectRecord
    sheet: SheetRow
    runs: list[RunRecord]
    studies: list[StudyView]
    unindexed: list[FileEntry]  # written files whose output cannot be read any more
    withheld: list[FileRecord]
    failed: list[FileRecord]
    findings: list[dict[str, object]]
    verifications: list[VerificationRecord]
    operators: set[str]
    events: list[Event]

    @property
    def file_count(self) -> int:
        """Written files listed."""
        return sum(len(s.files) for st in self.studies for s in st.series) + len(self.unindexed)


def subject_view(trail: AuditTrail, store: ReviewStore, pseudonym: str) -> SubjectView | None:
    """One subject, its files grouped by study and series (outputs indexed on first view).

    Parameters
    ----------
    trail : AuditTrail
        The audit trail.
    store : ReviewStore
        The review tables.
    pseudonym : str
        The subject.

    Returns
    -------
    SubjectView or None
        None for a subject the audit trail does not know.
    """
    subject = trail.subject(pseudonym)
    if subject is None:
        return None
    records = trail.files(subject=pseudonym)
    runs = {r.id: r for r in trail.runs() if r.id in {f.run_id for f in records}}
    written = _latest_outputs(r for r in records if r.outcome is Outcome.WRITTEN)
    index = store.indexed(r.id for r in written)
    if len(index) < len(written):
        with _INDEXING:  # not the same files as the background index at the same time
            index = store.indexed(r.id for r in written)
            fresh = list(_index_rows([r for r in written if r.id not in index], runs))
            store.add_index(fresh)
        index.update((row.file_id, row) for row in fresh)
    studies: dict[str, StudyView] = {}
    unindexed: list[FileEntry] = []
    for record in written:
        entry = FileEntry(record, runs[record.run_id], index.get(record.id))
        if entry.index is None or not entry.index.study:
            unindexed.append(entry)
            continue
        study = studies.setdefault(entry.index.study, StudyView(entry.index.study))
        series = next((s for s in study.series if s.uid == entry.index.series), None)
        if series is None:
            series = SeriesView(entry.index.series, entry.index.modality, entry.index.description)
            study.series.append(series)
        series.files.append(entry)
    for study in studies.values():
        for series in study.series:
            series.files.sort(key=_instance_order)
    outputs = {runs[r.run_id].output for r in written}
    verifications = [v for out in sorted(outputs) for v in trail.verifications(output=out)]
    own = {(runs[r.run_id].output, r.output_path) for r in written}
    findings = [
        f
        for v in verifications
        for f in v.findings
        if (v.output, str(f.get("file", ""))) in own or not f.get("file")
    ]
    return SubjectView(
        subject=subject,
        sheet=store.sheet().get(pseudonym, SheetRow()),
        runs=sorted(runs.values(), key=lambda r: r.id),
        studies=list(studies.values()),
        unindexed=unindexed,
        withheld=[r for r in records if r.outcome is Outcome.WITHHELD],
        failed=[r for r in records if r.outcome is Outcome.FAILED],
        findings=findings,
        verifications=verifications,
        operators=trail.subject_operators(pseudonym),
        events=store.events(pseudonym, limit=50),
    )


def index_pending(trail: AuditTrail, store: ReviewStore, batch: int = 500) -> int:
    """Index written files that are not yet (the queue's study counts; a subject's first
    view then reads nothing). An output that cannot be read gets an empty row, so that it
    is not read again.

    Parameters
    ----------
    trail : AuditTrail
        The audit trail.
    store : ReviewStore
        The review tables.
    batch : int
        Files read at most.

    Returns
    -------
    int
        The files indexed.
    """
    with _INDEXING:
        records = trail.files_by_id(store.unindexed(batch))
        runs = {r.id: r for r in trail.runs() if r.id in {f.run_id for f in records}}
        rows = {row.file_id: row for row in _index_rows(records, runs)}
        for record in records:
            rows.setdefault(record.id, IndexRow(record.id, "", "", "", "", None, 0))
        store.add_index(rows.values())
    return len(rows)


def written_files(trail: AuditTrail, pseudonym: str) -> list[tuple[FileRecord, RunRecord]]:
    """A subject's written files (one record per output: the latest run's), with their runs.

    Parameters
    ----------
    trail : AuditTrail
        The audit trail.
    pseudonym : str
        The subject.

    Returns
    -------
    list of (FileRecord, RunRecord)
        In the order recorded.
    """
    records = trail.files(subject=pseudonym, outcome=Outcome.WRITTEN)
    runs = {r.id: r for r in trail.runs() if r.id in {f.run_id for f in records}}
    return [(record, runs[record.run_id]) for record in _latest_outputs(records)]


def _instance_order(entry: FileEntry) -> tuple[int, int]:
    number = entry.index.number if entry.index is not None else None
    return (number if number is not None else 1 << 30, entry.record.id)


def _latest_outputs(records: Iterable[FileRecord]) -> list[FileRecord]:
    """One record per output file: the latest run's (a rerun writes the same file again)."""
    latest: dict[tuple[int, str | None], FileRecord] = {}
    for record in records:
        latest[(record.run_id, record.output_path)] = record
    by_output: dict[str | None, FileRecord] = {}
    for record in sorted(latest.values(), key=lambda r: r.id):
        by_output[record.output_path] = record
    return sorted(by_output.values(), key=lambda r: r.id)


def _index_rows(records: list[FileRecord], runs: dict[int, RunRecord]) -> Iterable[IndexRow]:
    """Index rows read from the outputs (an output that cannot be read: none)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for record in records:
            path = output_file(runs[record.run_id], record)
            if path is None:
                continue
            try:
                ds = dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
                number = ds.get("InstanceNumber")
                frames = ds.get("NumberOfFrames")
                yield IndexRow(
                    record.id,
                    str(ds.get("StudyInstanceUID", "") or ""),
                    str(ds.get("SeriesInstanceUID", "") or ""),
                    str(ds.get("Modality", "") or ""),
                    str(ds.get("SeriesDescription", "") or ""),
                    int(number) if number not in (None, "") else None,
                    0 if "Rows" not in ds else int(frames) if frames not in (None, "") else 1,
                )
            except Exception:  # noqa: S112 - a damaged or replaced output: listed as unreadable
                continue


def output_file(run: RunRecord, record: FileRecord) -> Path | None:
    """The written file of a record, if it is still there and inside the run's output.

    Parameters
    ----------
    run : RunRecord
        The record's run.
    record : FileRecord
        A written file's record.

    Returns
    -------
    pathlib.Path or None
        The file, or None (not written, gone, or a path leading outside the output).
    """
    if record.output_path is None:
        return None
    root = Path(run.output).resolve()
    path = (root / record.output_path).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


def input_file(run: RunRecord, record: FileRecord) -> Path | None:
    """The original file of a record, if it can be found (not a zip member, not a path
    redacted with ``--redact-paths``, still on disk).

    Parameters
    ----------
    run : RunRecord
        The record's run.
    record : FileRecord
        The record.

    Returns
    -------
    pathlib.Path or None
        The file, or None.
    """
    text = record.input_path
    if "!" in text or run.options.get("redact_paths"):
        return None
    path = Path(text)
    if not path.is_absolute():
        cwd = run.options.get("cwd")
        if not isinstance(cwd, str):
            return None
        path = Path(cwd) / path
    return path if path.is_file() else None


def when(value: _dt.datetime | None) -> str:
    """A time for the pages: UTC, to the minute."""
    if value is None:
        return ""
    return value.astimezone(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
