"""The audit trail: who de-identified which files, how, and who checked the result.

An :class:`AuditTrail` lives in an embedded SQLite database (a file the user chooses, on a local
disk) or, for a team, in PostgreSQL (``postgresql://user@host/database``). The schema is
created on first use and carries its version. Tables:

``runs``
    one row per run: who (OS user or ``--operator``), started/finished (UTC), host, process,
    dicomveil version, profile name and digest (:attr:`Profile.digest`), PS3.15 edition, the
    options of the run, the key's fingerprint (never the key), output folder, counts of written,
    withheld, skipped and failed files, and status ``running``/``finished``/``interrupted``.
``files``
    one row per input, committed as it is recorded: run, SHA-256 of the input's bytes, the input
    path as the user gave it, the output path relative to the output folder, outcome, reason and
    the subject's pseudonym.
``verifications``
    one row per check of an output folder: who, when, folder, result, findings (count, JSON).
``subjects``
    the tracking sheet, per subject pseudonym: de-identified by/when (latest run), checked
    by/when (latest verification or QC decision), QC status ``pending``/``passed``/``failed``,
    notes. A run that writes new output for a subject puts its QC status back to ``pending``.
``qc_events``
    every change of a QC status: subject, when, who, status, notes, verification.

Nothing read from a DICOM file is stored except the subject pseudonym, which is itself a
de-identified value; input paths are stored as the user gave them. A crash leaves a consistent
database: the run stays ``running`` until the next :meth:`AuditTrail.start_run` on the same host
finds its process gone and marks it ``interrupted``; :meth:`AuditTrail.files_done` tells what
was already done.

A batch run records itself through :class:`AuditRecorder`, whose instances are
:func:`dicomveil.run` progress callbacks::

    with AuditTrail.open("audit.sqlite") as trail, AuditRecorder(trail, config) as recorder:
        summary = run(inputs, config, progress=recorder)
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import getpass
import hashlib
import os
import socket
import weakref
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError

from dicomveil._version import __version__
from dicomveil.errors import DicomveilError
from dicomveil.qc.statuses import QcStatus as QcStatus  # re-exported: audit's public names
from dicomveil.qc.statuses import RunStatus as RunStatus
from dicomveil.runs.batch import FileResult, Outcome, RunConfig, RunSummary, Task
from dicomveil.standard.tables import EDITION

SCHEMA_VERSION: Final = 1
_CHUNK: Final = 1 << 20


class AuditError(DicomveilError):
    """An audit database that cannot be opened, read or written."""


# --------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class RunRecord:
    id: int
    operator: str
    started_at: _dt.datetime
    finished_at: _dt.datetime | None
    host: str
    pid: int
    version: str
    profile_name: str
    profile_digest: str
    edition: str
    options: Mapping[str, Any]
    key_fingerprint: str
    output: str
    written: int
    withheld: int
    skipped: int
    failed: int
    status: RunStatus


@dataclass(frozen=True)
class FileRecord:
    id: int
    run_id: int
    input_sha256: str | None
    input_path: str
    output_path: str | None  # relative to the run's output folder
    outcome: Outcome
    reason: str
    subject: str | None  # the subject's pseudonym
    recorded_at: _dt.datetime


@dataclass(frozen=True)
class VerificationRecord:
    id: int
    operator: str
    verified_at: _dt.datetime
    output: str
    result: str
    findings_count: int
    findings: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class SubjectRecord:
    pseudonym: str
    deidentified_by: str | None
    deidentified_at: _dt.datetime | None
    deidentified_run: int | None
    verified_by: str | None
    verified_at: _dt.datetime | None
    qc_status: QcStatus
    notes: str


@dataclass(frozen=True)
class QcEvent:
    id: int
    pseudonym: str
    at: _dt.datetime
    who: str
    status: QcStatus
    notes: str
    verification_id: int | None


# --------------------------------------------------------------------------------------------
# Schema


class _UtcDateTime(sa.types.TypeDecorator[_dt.datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out (SQLite stores them naive, in UTC)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(
        self, value: _dt.datetime | None, dialect: sa.Dialect
    ) -> _dt.datetime | None:
        if value is None:
            return None
        value = _utc(value)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(
        self, value: _dt.datetime | None, dialect: sa.Dialect
    ) -> _dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=_dt.UTC) if value.tzinfo is None else _utc(value)


def _enum(cls: type[StrEnum]) -> sa.Enum:
    return sa.Enum(
        cls,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda members: [m.value for m in members],
        name=f"{cls.__name__.lower()}_values",
    )


_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_metadata = sa.MetaData()

_schema_version = sa.Table(
    "schema_version", _metadata, sa.Column("version", sa.Integer, nullable=False)
)
_runs = sa.Table(
    "runs",
    _metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("operator", sa.Text, nullable=False),
    sa.Column("started_at", _UtcDateTime, nullable=False),
    sa.Column("finished_at", _UtcDateTime),
    sa.Column("host", sa.Text, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("dicomveil_version", sa.Text, nullable=False),
    sa.Column("profile_name", sa.Text, nullable=False),
    sa.Column("profile_digest", sa.String(64), nullable=False),
    sa.Column("edition", sa.Text, nullable=False),
    sa.Column("options", sa.JSON, nullable=False),
    sa.Column("key_fingerprint", sa.String(64), nullable=False),
    sa.Column("output", sa.Text, nullable=False),
    sa.Column("written", sa.Integer, nullable=False, default=0),
    sa.Column("withheld", sa.Integer, nullable=False, default=0),
    sa.Column("skipped", sa.Integer, nullable=False, default=0),
    sa.Column("failed", sa.Integer, nullable=False, default=0),
    sa.Column("status", _enum(RunStatus), nullable=False),
    sa.Index("runs_host_status", "host", "status"),
)
_files = sa.Table(
    "files",
    _metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("run_id", _ID, sa.ForeignKey("runs.id"), nullable=False, index=True),
    sa.Column("input_sha256", sa.String(64), index=True),
    sa.Column("input_path", sa.Text, nullable=False),
    sa.Column("output_path", sa.Text),
    sa.Column("outcome", _enum(Outcome), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("subject", sa.Text, index=True),
    sa.Column("recorded_at", _UtcDateTime, nullable=False),
)
_verifications = sa.Table(
    "verifications",
    _metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("operator", sa.Text, nullable=False),
    sa.Column("verified_at", _UtcDateTime, nullable=False),
    sa.Column("output", sa.Text, nullable=False),
    sa.Column("result", sa.Text, nullable=False),
    sa.Column("findings_count", sa.Integer, nullable=False),
    sa.Column("findings", sa.JSON, nullable=False),
)
_subjects = sa.Table(
    "subjects",
    _metadata,
    sa.Column("pseudonym", sa.Text, primary_key=True),
    sa.Column("deidentified_by", sa.Text),
    sa.Column("deidentified_at", _UtcDateTime),
    sa.Column("deidentified_run", _ID, sa.ForeignKey("runs.id")),
    sa.Column("verified_by", sa.Text),
    sa.Column("verified_at", _UtcDateTime),
    sa.Column("qc_status", _enum(QcStatus), nullable=False),
    sa.Column("notes", sa.Text, nullable=False, default=""),
)
_qc_events = sa.Table(
    "qc_events",
    _metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column(
        "pseudonym", sa.Text, sa.ForeignKey("subjects.pseudonym"), nullable=False, index=True
    ),
    sa.Column("at", _UtcDateTime, nullable=False),
    sa.Column("who", sa.Text, nullable=False),
    sa.Column("status", _enum(QcStatus), nullable=False),
    sa.Column("notes", sa.Text, nullable=False),
    sa.Column("verification_id", _ID, sa.ForeignKey("verifications.id")),
)

TABLES: Final = tuple(_metadata.sorted_tables)


# --------------------------------------------------------------------------------------------
# Helpers


def _utc(value: _dt.datetime) -> _dt.datetime:
    """An aware datetime in UTC; a naive one is taken to be in UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=_dt.UTC)
    return value.astimezone(_dt.UTC)


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def current_user() -> str:
    """The OS user name, or ``unknown`` where the system cannot tell."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def _who(operator: str | None) -> str:
    return operator.strip() if operator and operator.strip() else current_user()


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def input_sha256(task: Task) -> str | None:
    """SHA-256 of an input's bytes (a zip member's own bytes), streamed; None if unreadable."""
    digest = hashlib.sha256()
    try:
        if task.member is None:
            with task.path.open("rb") as fh:
                while chunk := fh.read(_CHUNK):
                    digest.update(chunk)
        else:
            with zipfile.ZipFile(task.path) as archive, archive.open(task.member) as fh:
                while chunk := fh.read(_CHUNK):
                    digest.update(chunk)
    except (OSError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError):
        return None
    return digest.hexdigest()


def _database_url(url_or_path: str | Path) -> tuple[URL, Path | None]:
    """The SQLAlchemy URL (psycopg for PostgreSQL) and, for SQLite, the file."""
    text = str(url_or_path)
    if isinstance(url_or_path, Path) or "://" not in text:
        path = Path(text).expanduser()
        return URL.create("sqlite", database=str(path)), path
    if text.startswith("postgres://"):
        text = "postgresql://" + text[len("postgres://") :]
    try:
        url = make_url(text)
    except ArgumentError:
        raise AuditError("the audit database URL cannot be parsed") from None
    backend = url.get_backend_name()
    if backend == "postgresql":
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        return url, None
    if backend == "sqlite" and url.database and url.database != ":memory:":
        return url, Path(url.database)
    raise AuditError(
        f"the audit database is a SQLite file path or a postgresql:// URL, not {url.drivername}://"
    )


_ENGINES: weakref.WeakSet[sa.Engine] = weakref.WeakSet()


def _forget_connections_after_fork() -> None:
    # A worker process forked by a batch run inherits the parent's pooled connections: it must
    # never use nor close them (SQLAlchemy's "using connection pools with multiprocessing").
    for engine in list(_ENGINES):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_connections_after_fork)


def _describe(exc: SQLAlchemyError) -> str:
    """The driver's first line of the error, without statement or parameters."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --------------------------------------------------------------------------------------------
# The trail

_VERDICTS: Final = {
    "pass": QcStatus.PASSED,
    "passed": QcStatus.PASSED,
    "findings": QcStatus.FAILED,
    "fail": QcStatus.FAILED,
    "failed": QcStatus.FAILED,
}


@dataclass
class _RunInfo:
    operator: str
    started_at: _dt.datetime
    output: Path


class AuditTrail:
    """The audit database. Open it with :meth:`open`; close it (or use ``with``) when done."""

    def __init__(self, engine: sa.Engine, location: str) -> None:
        self._engine = engine
        self.location = location  # for messages: the password of a URL is hidden
        self._runs_cache: dict[int, _RunInfo] = {}

    # ---------------------------------------------------------------- opening and closing

    @classmethod
    def open(cls, url_or_path: str | Path, *, create: bool = True) -> AuditTrail:
        """Open (and with ``create``, create) the audit database at a path or URL.

        A path is an SQLite file (created readable by its owner only); ``postgresql://...``
        is a PostgreSQL database, whose tables are created on first use. Without ``create``
        a missing database or schema is an error (for commands that only read or annotate).
        """
        url, sqlite_file = _database_url(url_or_path)
        location = url.render_as_string(hide_password=True)
        if sqlite_file is not None:
            location = str(sqlite_file)
            if not sqlite_file.exists():
                if not create:
                    raise AuditError(f"no audit database at {sqlite_file}")
                try:
                    sqlite_file.parent.mkdir(parents=True, exist_ok=True)
                    fd = os.open(sqlite_file, os.O_WRONLY | os.O_CREAT, 0o600)
                    os.close(fd)
                except OSError as exc:
                    raise AuditError(
                        f"cannot create the audit database {sqlite_file} ({exc.strerror})"
                    ) from None
            engine = sa.create_engine(url, hide_parameters=True, connect_args={"timeout": 60})
            sa.event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = sa.create_engine(url, hide_parameters=True, pool_pre_ping=True)
        _ENGINES.add(engine)
        trail = cls(engine, location)
        try:
            trail._prepare(create)
        except BaseException:
            engine.dispose()
            raise
        return trail

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Connection]:
        try:
            with self._engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise AuditError(f"audit database {self.location}: {_describe(exc)}") from None

    def _prepare(self, create: bool) -> None:
        try:
            version = self._schema_version(create)
        except AuditError:
            if not create:
                raise
            # Two processes creating the schema at once: the second sees the first's tables.
            version = self._schema_version(create)
        if version != SCHEMA_VERSION:
            raise AuditError(
                f"audit database {self.location} has schema version {version}; this dicomveil "
                f"{__version__} reads version {SCHEMA_VERSION}"
            )

    def _schema_version(self, create: bool) -> int:
        with self._transaction() as conn:
            if not create and not sa.inspect(conn).has_table("schema_version"):
                raise AuditError(f"{self.location} is not a dicomveil audit database")
            _metadata.create_all(conn, checkfirst=True)
            version = conn.execute(sa.select(_schema_version.c.version)).scalar()
            if version is None:
                conn.execute(_schema_version.insert().values(version=SCHEMA_VERSION))
                return SCHEMA_VERSION
            return int(version)

    # ---------------------------------------------------------------- runs and files

    def start_run(
        self,
        config: RunConfig,
        *,
        operator: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> int:
        """Record the start of a run; returns its id.

        Runs of this host still marked ``running`` whose process is gone are marked
        ``interrupted`` first (with the counts of the files they recorded).
        """
        host = socket.gethostname()
        with self._transaction() as conn:
            stale = conn.execute(
                sa.select(_runs.c.id, _runs.c.pid).where(
                    _runs.c.host == host, _runs.c.status == RunStatus.RUNNING
                )
            ).all()
            for run_id, pid in stale:
                if not _alive(pid):
                    self._end_run(conn, run_id, None, RunStatus.INTERRUPTED)
        who = _who(operator)
        started = _now()
        output = config.output.resolve()
        profile = config.profile
        settings: dict[str, Any] = {
            "options": sorted(o.value for o in profile.options),
            "layout": config.layout.template,
            "crosswalk": config.crosswalk is not None,
            "map_dir": config.map_dir is not None,
            "workers": config.workers,
        }
        settings.update(options or {})
        with self._transaction() as conn:
            run_id = conn.execute(
                _runs.insert()
                .values(
                    operator=who,
                    started_at=started,
                    host=host,
                    pid=os.getpid(),
                    dicomveil_version=__version__,
                    profile_name=profile.name,
                    profile_digest=profile.digest,
                    edition=EDITION,
                    options=settings,
                    key_fingerprint=config.key.fingerprint,
                    output=str(output),
                    status=RunStatus.RUNNING,
                )
                .returning(_runs.c.id)
            ).scalar_one()
        self._runs_cache[int(run_id)] = _RunInfo(who, started, output)
        return int(run_id)

    def _run_info(self, conn: Connection, run_id: int) -> _RunInfo:
        info = self._runs_cache.get(run_id)
        if info is None:
            row = conn.execute(
                sa.select(_runs.c.operator, _runs.c.started_at, _runs.c.output).where(
                    _runs.c.id == run_id
                )
            ).one_or_none()
            if row is None:
                raise AuditError(f"no run {run_id} in the audit database")
            info = _RunInfo(row.operator, row.started_at, Path(row.output))
            self._runs_cache[run_id] = info
        return info

    def record_file(self, run_id: int, result: FileResult, input_sha256: str | None) -> None:
        """Record one input's outcome (committed at once) and update its subject's row."""
        with self._transaction() as conn:
            info = self._run_info(conn, run_id)
            output_path = None  # a failed file's output (a collision) belongs to another input
            if result.output is not None and result.outcome is Outcome.WRITTEN:
                try:
                    output_path = result.output.resolve().relative_to(info.output).as_posix()
                except ValueError:
                    output_path = result.output.as_posix()
            subject = result.pseudonym or None
            conn.execute(
                _files.insert().values(
                    run_id=run_id,
                    input_sha256=input_sha256,
                    input_path=result.task.display,
                    output_path=output_path,
                    outcome=result.outcome,
                    reason=result.reason,
                    subject=subject,
                    recorded_at=_now(),
                )
            )
            if subject is not None and result.outcome is Outcome.WRITTEN:
                self._deidentified(conn, subject, run_id, info)

    def _deidentified(self, conn: Connection, subject: str, run_id: int, info: _RunInfo) -> None:
        row = conn.execute(
            sa.select(_subjects).where(_subjects.c.pseudonym == subject)
        ).one_or_none()
        if row is None:
            try:
                with conn.begin_nested():
                    conn.execute(
                        _subjects.insert().values(
                            pseudonym=subject,
                            deidentified_by=info.operator,
                            deidentified_at=info.started_at,
                            deidentified_run=run_id,
                            qc_status=QcStatus.PENDING,
                            notes="",
                        )
                    )
                return
            except IntegrityError:  # another run inserted it meanwhile
                row = conn.execute(
                    sa.select(_subjects).where(_subjects.c.pseudonym == subject)
                ).one()
        if row.deidentified_run == run_id:
            return
        values: dict[str, Any] = {
            "deidentified_by": info.operator,
            "deidentified_at": info.started_at,
            "deidentified_run": run_id,
        }
        checked = row.qc_status is not QcStatus.PENDING or row.verified_at is not None
        if checked:
            values["qc_status"] = QcStatus.PENDING
        conn.execute(_subjects.update().where(_subjects.c.pseudonym == subject).values(**values))
        if checked and row.qc_status is not QcStatus.PENDING:
            conn.execute(
                _qc_events.insert().values(
                    pseudonym=subject,
                    at=_now(),
                    who=info.operator,
                    status=QcStatus.PENDING,
                    notes=f"new output from run {run_id}",
                )
            )

    def finish_run(self, run_id: int, summary: RunSummary) -> None:
        """Mark a run finished, with the counts of its summary."""
        counts = Counter(r.outcome for r in summary.results)
        with self._transaction() as conn:
            self._end_run(conn, run_id, counts, RunStatus.FINISHED)

    def interrupt_run(self, run_id: int) -> None:
        """Mark a run interrupted, with the counts of the files it recorded."""
        with self._transaction() as conn:
            self._end_run(conn, run_id, None, RunStatus.INTERRUPTED)

    def _end_run(
        self,
        conn: Connection,
        run_id: int,
        counts: Mapping[Outcome, int] | None,
        status: RunStatus,
    ) -> None:
        if counts is None:
            rows = conn.execute(
                sa.select(_files.c.outcome, sa.func.count())
                .where(_files.c.run_id == run_id)
                .group_by(_files.c.outcome)
            ).all()
            counts = {outcome: n for outcome, n in rows}
        conn.execute(
            _runs.update()
            .where(_runs.c.id == run_id)
            .values(
                finished_at=_now() if status is RunStatus.FINISHED else None,
                status=status,
                **{o.value: counts.get(o, 0) for o in Outcome},
            )
        )

    def files_done(
        self, input_sha256: str, profile_digest: str, key_fingerprint: str
    ) -> FileRecord | None:
        """The latest record of this input under this profile and key, or None."""
        query = (
            sa.select(_files)
            .join(_runs, _runs.c.id == _files.c.run_id)
            .where(
                _files.c.input_sha256 == input_sha256,
                _runs.c.profile_digest == profile_digest,
                _runs.c.key_fingerprint == key_fingerprint,
            )
            .order_by(_files.c.id.desc())
            .limit(1)
        )
        with self._transaction() as conn:
            row = conn.execute(query).one_or_none()
        return None if row is None else _file_record(row)

    # ---------------------------------------------------------------- verification and QC

    def record_verification(
        self,
        output: str | Path,
        who: str | None,
        result: str,
        findings: Sequence[Mapping[str, Any]],
        *,
        subjects: Iterable[str] | None = None,
    ) -> int:
        """Record a check of an output folder; returns its id.

        ``findings`` must name tags, files and reasons, never values read from files. The
        subjects checked are ``subjects`` or else those that runs wrote into ``output``; each
        gets checked by/when, and QC status ``passed`` for a result ``pass``/``passed`` and
        ``failed`` for ``findings``/``fail``/``failed`` (:class:`dicomveil.qc.verify.Verdict`'s
        words); any other result (``could-not-check``) leaves the status as it was.
        """
        folder = Path(output).resolve()
        operator = _who(who)
        at = _now()
        items = [dict(f) for f in findings]
        status = _VERDICTS.get(result.strip().lower())
        with self._transaction() as conn:
            verification_id = int(
                conn.execute(
                    _verifications.insert()
                    .values(
                        operator=operator,
                        verified_at=at,
                        output=str(folder),
                        result=result,
                        findings_count=len(items),
                        findings=items,
                    )
                    .returning(_verifications.c.id)
                ).scalar_one()
            )
            if subjects is None:
                covered = set(
                    conn.execute(
                        sa.select(_files.c.subject)
                        .distinct()
                        .join(_runs, _runs.c.id == _files.c.run_id)
                        .where(
                            _runs.c.output == str(folder),
                            _files.c.outcome == Outcome.WRITTEN,
                            _files.c.subject.is_not(None),
                        )
                    ).scalars()
                )
            else:
                covered = set(subjects)
            known = set(
                conn.execute(
                    sa.select(_subjects.c.pseudonym).where(_subjects.c.pseudonym.in_(covered))
                ).scalars()
            )
            for pseudonym in sorted(covered - known):
                conn.execute(
                    _subjects.insert().values(
                        pseudonym=pseudonym, qc_status=QcStatus.PENDING, notes=""
                    )
                )
            for pseudonym in sorted(covered):
                values: dict[str, Any] = {"verified_by": operator, "verified_at": at}
                if status is not None:
                    values["qc_status"] = status
                current = conn.execute(
                    _subjects.update()
                    .where(_subjects.c.pseudonym == pseudonym)
                    .values(**values)
                    .returning(_subjects.c.qc_status)
                ).scalar_one()
                conn.execute(
                    _qc_events.insert().values(
                        pseudonym=pseudonym,
                        at=at,
                        who=operator,
                        status=current,
                        notes=f"verification: {result}, {len(items)} finding(s)",
                        verification_id=verification_id,
                    )
                )
        return verification_id

    def set_qc(
        self,
        pseudonym: str,
        status: QcStatus | str,
        who: str | None = None,
        notes: str | None = None,
    ) -> SubjectRecord:
        """Set a subject's QC status (and notes, unless None); a decision of passed or failed
        also makes ``who`` the subject's checker."""
        try:
            new = QcStatus(status)
        except ValueError:
            choices = ", ".join(s.value for s in QcStatus)
            raise AuditError(f"QC status {status!r} is not one of {choices}") from None
        operator = _who(who)
        at = _now()
        with self._transaction() as conn:
            row = conn.execute(
                sa.select(_subjects).where(_subjects.c.pseudonym == pseudonym)
            ).one_or_none()
            if row is None:
                raise AuditError(f"no subject {pseudonym} in the audit database")
            values: dict[str, Any] = {"qc_status": new}
            if notes is not None:
                values["notes"] = notes
            if new is not QcStatus.PENDING:
                values.update(verified_by=operator, verified_at=at)
            conn.execute(
                _subjects.update().where(_subjects.c.pseudonym == pseudonym).values(**values)
            )
            conn.execute(
                _qc_events.insert().values(
                    pseudonym=pseudonym,
                    at=at,
                    who=operator,
                    status=new,
                    notes=row.notes if notes is None else notes,
                )
            )
            updated = conn.execute(
                sa.select(_subjects).where(_subjects.c.pseudonym == pseudonym)
            ).one()
        return _subject_record(updated)

    # ---------------------------------------------------------------- queries

    def runs(
        self,
        *,
        run_id: int | None = None,
        since: _dt.datetime | None = None,
        status: RunStatus | str | None = None,
    ) -> list[RunRecord]:
        """Runs, oldest first; ``since`` compares the start (a naive datetime is UTC)."""
        query = sa.select(_runs).order_by(_runs.c.id)
        if run_id is not None:
            query = query.where(_runs.c.id == run_id)
        if since is not None:
            query = query.where(_runs.c.started_at >= _utc(since))
        if status is not None:
            query = query.where(_runs.c.status == RunStatus(status))
        with self._transaction() as conn:
            return [_run_record(row) for row in conn.execute(query)]

    def files(
        self,
        *,
        run_id: int | None = None,
        outcome: Outcome | str | None = None,
        since: _dt.datetime | None = None,
        subject: str | None = None,
        input_sha256: str | None = None,
    ) -> list[FileRecord]:
        """File records in the order recorded; ``since`` compares the time recorded."""
        query = sa.select(_files).order_by(_files.c.id)
        if run_id is not None:
            query = query.where(_files.c.run_id == run_id)
        if outcome is not None:
            query = query.where(_files.c.outcome == Outcome(outcome))
        if since is not None:
            query = query.where(_files.c.recorded_at >= _utc(since))
        if subject is not None:
            query = query.where(_files.c.subject == subject)
        if input_sha256 is not None:
            query = query.where(_files.c.input_sha256 == input_sha256)
        with self._transaction() as conn:
            return [_file_record(row) for row in conn.execute(query)]

    def verifications(
        self,
        *,
        since: _dt.datetime | None = None,
        output: str | Path | None = None,
        operator: str | None = None,
    ) -> list[VerificationRecord]:
        """Verifications, oldest first."""
        query = sa.select(_verifications).order_by(_verifications.c.id)
        if since is not None:
            query = query.where(_verifications.c.verified_at >= _utc(since))
        if output is not None:
            query = query.where(_verifications.c.output == str(Path(output).resolve()))
        if operator is not None:
            query = query.where(_verifications.c.operator == operator)
        with self._transaction() as conn:
            return [_verification_record(row) for row in conn.execute(query)]

    def subjects(self) -> list[SubjectRecord]:
        """The tracking sheet, by pseudonym."""
        with self._transaction() as conn:
            rows = conn.execute(sa.select(_subjects).order_by(_subjects.c.pseudonym))
            return [_subject_record(row) for row in rows]

    def qc_events(self, pseudonym: str | None = None) -> list[QcEvent]:
        """The history of QC statuses, oldest first."""
        query = sa.select(_qc_events).order_by(_qc_events.c.id)
        if pseudonym is not None:
            query = query.where(_qc_events.c.pseudonym == pseudonym)
        with self._transaction() as conn:
            return [_record(QcEvent, row) for row in conn.execute(query)]


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers never block the run, and a commit costs no fsync of the database file; a
    # crash of the process loses nothing committed.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


_Record = TypeVar(
    "_Record", "RunRecord", "FileRecord", "SubjectRecord", "VerificationRecord", "QcEvent"
)
# Columns whose names differ from the record's fields.
_COLUMN_OF = {"version": "dicomveil_version"}


def _record(kind: type[_Record], row: sa.Row[Any]) -> _Record:
    """A record dataclass from a row: each field from the column of the same name."""
    values = row._mapping
    return kind(**{f.name: values[_COLUMN_OF.get(f.name, f.name)]
                   for f in dataclasses.fields(kind)})  # fmt: skip


def _run_record(row: sa.Row[Any]) -> RunRecord:
    record = _record(RunRecord, row)
    return dataclasses.replace(record, options=dict(record.options))


def _file_record(row: sa.Row[Any]) -> FileRecord:
    return _record(FileRecord, row)


def _subject_record(row: sa.Row[Any]) -> SubjectRecord:
    return _record(SubjectRecord, row)


def _verification_record(row: sa.Row[Any]) -> VerificationRecord:
    record = _record(VerificationRecord, row)
    return dataclasses.replace(record, findings=list(record.findings))


# --------------------------------------------------------------------------------------------
# Recording a batch run


class AuditRecorder:
    """Records one run: ``with`` starts it, each call records a :class:`FileResult` (use the
    recorder as :func:`dicomveil.run`'s ``progress``), leaving the block finishes it, or marks
    it interrupted when the block raised."""

    def __init__(
        self,
        trail: AuditTrail,
        config: RunConfig,
        *,
        operator: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.trail = trail
        self._config = config
        self._operator = operator
        self._options = options
        self._counts: Counter[Outcome] = Counter()
        self._run_id: int | None = None

    @property
    def run_id(self) -> int:
        if self._run_id is None:
            raise AuditError("the run has not started: use the recorder in a with block")
        return self._run_id

    def __enter__(self) -> Self:
        self._run_id = self.trail.start_run(
            self._config, operator=self._operator, options=self._options
        )
        return self

    def __call__(self, result: FileResult) -> None:
        self.trail.record_file(self.run_id, result, input_sha256(result.task))
        self._counts[result.outcome] += 1

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._run_id is None:
            return
        if exc_type is None:
            with self.trail._transaction() as conn:
                self.trail._end_run(conn, self._run_id, self._counts, RunStatus.FINISHED)
        else:
            with contextlib.suppress(AuditError):  # do not hide the error that stopped the run
                self.trail.interrupt_run(self._run_id)


@contextlib.contextmanager
def recording(
    audit: str | Path | None,
    config: RunConfig,
    *,
    operator: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> Iterator[AuditRecorder | None]:
    """An :class:`AuditRecorder` on the database ``audit`` for the block, or None without one."""
    if audit is None:
        yield None
        return
    with (
        AuditTrail.open(audit) as trail,
        AuditRecorder(trail, config, operator=operator, options=options) as recorder,
    ):
        yield recorder


# --------------------------------------------------------------------------------------------
# Sheets and exports
