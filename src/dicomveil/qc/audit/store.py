"""The audit database: its schema, opening it (SQLite or PostgreSQL), transactions, and rows
turned into records.

The schema is created on first use and carries its version (:data:`SCHEMA_VERSION`). Tables:

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
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, Self, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from dicomveil._version import __version__
from dicomveil.errors import AuditError
from dicomveil.io.database import describe, open_database
from dicomveil.qc.audit.records import (
    FileRecord,
    QcEvent,
    RunRecord,
    SubjectRecord,
    VerificationRecord,
    _utc,
)
from dicomveil.qc.statuses import QcStatus, RunStatus
from dicomveil.runs.batch import Outcome

SCHEMA_VERSION: Final = 1


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


def _numbered(name: str, *columns: sa.Column[Any] | sa.Index) -> sa.Table:
    """A table whose rows are numbered: ``id`` first, then ``columns``."""
    return sa.Table(
        name, _metadata, sa.Column("id", _ID, primary_key=True, autoincrement=True), *columns
    )


_schema_version = sa.Table(
    "schema_version", _metadata, sa.Column("version", sa.Integer, nullable=False)
)
_runs = _numbered(
    "runs",
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
_files = _numbered(
    "files",
    sa.Column("run_id", _ID, sa.ForeignKey("runs.id"), nullable=False, index=True),
    sa.Column("input_sha256", sa.String(64), index=True),
    sa.Column("input_path", sa.Text, nullable=False),
    sa.Column("output_path", sa.Text),
    sa.Column("outcome", _enum(Outcome), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("subject", sa.Text, index=True),
    sa.Column("recorded_at", _UtcDateTime, nullable=False),
)
_verifications = _numbered(
    "verifications",
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
_qc_events = _numbered(
    "qc_events",
    sa.Column(
        "pseudonym", sa.Text, sa.ForeignKey("subjects.pseudonym"), nullable=False, index=True
    ),
    sa.Column("at", _UtcDateTime, nullable=False),
    sa.Column("who", sa.Text, nullable=False),
    sa.Column("status", _enum(QcStatus), nullable=False),
    sa.Column("notes", sa.Text, nullable=False),
    sa.Column("verification_id", _ID, sa.ForeignKey("verifications.id")),
)

_reidentifications = _numbered(
    "reidentifications",
    sa.Column("operator", sa.Text, nullable=False),
    sa.Column("at", _UtcDateTime, nullable=False),
    sa.Column("host", sa.Text, nullable=False),
    sa.Column("dicomveil_version", sa.Text, nullable=False),
    sa.Column("output", sa.Text, nullable=False),
    sa.Column("certificate", sa.Text, nullable=False),  # the recipient's subject
    sa.Column("restored", sa.Integer, nullable=False),
    sa.Column("refused", sa.Integer, nullable=False),
)

_risk_assessments = _numbered(
    "risk_assessments",
    sa.Column("operator", sa.Text, nullable=False),
    sa.Column("at", _UtcDateTime, nullable=False),
    sa.Column("output", sa.Text, nullable=False),
    sa.Column("subjects", sa.Integer, nullable=False),
    sa.Column("k", sa.Integer, nullable=False),
    sa.Column("wanted_k", sa.Integer, nullable=False),
    sa.Column("below_k", sa.Integer, nullable=False),
    sa.Column("report", sa.JSON, nullable=False),  # counts only: no values
)

TABLES: Final = tuple(_metadata.sorted_tables)


# --------------------------------------------------------------------------------------------
# The database


class AuditStore:
    """The audit database, opened: the base of :class:`~dicomveil.qc.audit.AuditTrail`, which
    is what callers open.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The engine of the database (see :meth:`open`).
    location : str
        The database for messages: the SQLite file, or the URL with its password hidden.
    """

    def __init__(self, engine: sa.Engine, location: str) -> None:
        self._engine = engine
        self.location = location  # for messages: the password of a URL is hidden

    @classmethod
    def open(cls, url_or_path: str | Path, *, create: bool = True) -> Self:
        """Open (and with ``create``, create) the audit database at a path or URL.

        A path is an SQLite file (created readable by its owner only); ``postgresql://...``
        is a PostgreSQL database, whose tables are created on first use. Without ``create``
        a missing database or schema is an error (for commands that only read or annotate).

        Parameters
        ----------
        url_or_path : str or pathlib.Path
            An SQLite file, or a ``postgresql://`` (or ``postgres://``) URL.
        create : bool, default True
            Create the file and the schema when they are missing.

        Returns
        -------
        Self
            The opened database; close it (or use ``with``) when done.

        Raises
        ------
        AuditError
            The URL cannot be parsed or names another database; the file cannot be created;
            without ``create``, there is no database or no dicomveil schema; the schema has
            another version; the database cannot be reached.
        """
        database = open_database(
            url_or_path, what="audit database", error=AuditError, create=create
        )
        engine, location = database.engine, database.location
        store = cls(engine, location)
        try:
            store._prepare(create)
        except BaseException:
            engine.dispose()
            raise
        return store

    def close(self) -> None:
        """Close the database's connections."""
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Connection]:
        try:
            with self._engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise AuditError(f"audit database {self.location}: {describe(exc)}") from None

    def _read(self, query: sa.Select[Any], record: Callable[[sa.Row[Any]], _R]) -> list[_R]:
        """The rows ``query`` selects, each made a record by ``record``."""
        with self._transaction() as conn:
            return [record(row) for row in conn.execute(query)]

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


def _listing(
    table: sa.Table, when: str = "", since: _dt.datetime | None = None, **equal: object
) -> sa.Select[Any]:
    """The rows of ``table`` in the order of their ``id``: those whose column ``when`` is
    ``since`` or later (a naive datetime is UTC), and whose columns named in ``equal`` hold
    the values given (None: any)."""
    query = sa.select(table).order_by(table.c.id)
    if since is not None:
        query = query.where(table.c[when] >= _utc(since))
    for name, value in equal.items():
        if isinstance(value, int) and not _ROW_ID_MIN <= value <= _ROW_ID_MAX:
            return query.where(sa.false())  # no row holds it (and SQLite cannot bind it)
        if value is not None:
            query = query.where(table.c[name] == value)
    return query


# What an INTEGER column holds (a larger number, as a row number, names no row).
_ROW_ID_MIN, _ROW_ID_MAX = -(2**63), 2**63 - 1


_R = TypeVar("_R")
_Record = TypeVar(
    "_Record", "RunRecord", "FileRecord", "SubjectRecord", "VerificationRecord", "QcEvent"
)
# Columns whose names differ from the record's fields.
_COLUMN_OF = {"version": "dicomveil_version"}


def _record(kind: type[_Record], row: sa.Row[Any]) -> _Record:
    """A record dataclass from a row: each field from the column of the same name."""
    values = row._mapping
    return kind(
        **{f.name: values[_COLUMN_OF.get(f.name, f.name)] for f in dataclasses.fields(kind)}
    )


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


def deidentifiers(conn: Connection, pseudonym: str) -> set[str]:
    """Who de-identified a subject: the operators of the runs that wrote one of its files.
    The four-eyes rule keeps them from deciding its QC (the review's sign-off, ``track
    --set``, a verification they run).

    Parameters
    ----------
    conn : Connection
        An open connection (inside the caller's transaction).
    pseudonym : str
        The subject.

    Returns
    -------
    set of str
        The operators.
    """
    query = (
        sa.select(_runs.c.operator)
        .distinct()
        .join(_files, _files.c.run_id == _runs.c.id)
        .where(_files.c.subject == pseudonym, _files.c.outcome == Outcome.WRITTEN)
    )
    return {str(name) for name in conn.execute(query).scalars() if name}
