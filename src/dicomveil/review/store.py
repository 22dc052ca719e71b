"""The review application's own tables, created on first use beside the audit trail's in the
same database (SQLite file or PostgreSQL), and what it reads and writes in them.

``review_users``
    local accounts: name, argon2 hash of the password (never the password), role
    (:class:`Role`), active or not.
``review_events``
    every action of the application, with who and when: logins (and refused ones, without
    the name typed), original values shown, sign-offs and refusals by the four-eyes rule,
    edits of the tracking sheet, exports. Never a value read from a DICOM file.
``review_sheet``
    the lab's columns that the audit trail does not have: the study ID, and the date
    scanned (a date of the patient's care: identifying, see :mod:`dicomveil.review`).
``review_checks``
    per written file checked by "check every file": the output's modification time when
    it was checked, and the verdict (nothing else changed, changes no rule explains, or
    cannot tell); a file changed since is unchecked again.
``review_index``
    per written file of the audit trail: its study, series, modality, series description,
    instance number and frames, read from the de-identified output once, so that a
    subject's page lists thousands of files without reading them again.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from dicomveil.errors import AuditError
from dicomveil.io.database import open_database

__all__ = ["CheckRow", "Event", "IndexRow", "ReviewStore", "Role", "SheetRow", "User"]


class Role(StrEnum):
    """What an account may do.

    ``operator``: the queue and subject pages (no original values, no images), and the
    lab's columns of the sheet. ``reviewer``: also original values on request, images,
    sign-off, exports. ``admin``: also the export with original patient IDs.
    """

    OPERATOR = "operator"
    REVIEWER = "reviewer"
    ADMIN = "admin"

    @property
    def reviews(self) -> bool:
        """Whether the role sees originals and images and signs off."""
        return self is not Role.OPERATOR


@dataclass(frozen=True)
class User:
    """A logged-in account."""

    name: str
    role: Role


@dataclass(frozen=True)
class Event:
    """One action of the application (no values read from files)."""

    at: _dt.datetime
    who: str
    action: str
    subject: str | None
    detail: str


@dataclass(frozen=True)
class SheetRow:
    """The lab's columns of one subject that the audit trail does not hold."""

    study_id: str = ""
    date_scanned: str = ""


@dataclass(frozen=True)
class CheckRow:
    """A written file's check, as "check every file" stored it."""

    file_id: int
    output_mtime: float
    ok: bool | None  # None: cannot tell
    verdict: str


@dataclass(frozen=True)
class IndexRow:
    """What the application knows of one written file without reading it again."""

    file_id: int
    study: str
    series: str
    modality: str
    description: str
    number: int | None
    frames: int


_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_metadata = sa.MetaData()
_users = sa.Table(
    "review_users",
    _metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
_sessions = sa.Table(  # the live sessions: a session ends when its row goes (logging out)
    "review_sessions",
    _metadata,
    sa.Column("digest", sa.String(64), primary_key=True),  # sha256 of the cookie's id
    sa.Column("who", sa.String(64), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)
_events = sa.Table(
    "review_events",
    _metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("who", sa.String(64), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("subject", sa.Text, index=True),
    sa.Column("detail", sa.Text, nullable=False, default=""),
)
_sheet = sa.Table(
    "review_sheet",
    _metadata,
    sa.Column("pseudonym", sa.Text, primary_key=True),
    sa.Column("study_id", sa.Text, nullable=False, default=""),
    sa.Column("date_scanned", sa.Text, nullable=False, default=""),
    sa.Column("updated_by", sa.String(64)),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
_index = sa.Table(
    "review_index",
    _metadata,
    sa.Column("file_id", _ID, primary_key=True, autoincrement=False),
    sa.Column("study", sa.String(64), nullable=False),
    sa.Column("series", sa.String(64), nullable=False),
    sa.Column("modality", sa.String(16), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("number", sa.Integer),
    sa.Column("frames", sa.Integer, nullable=False),
)

_checks = sa.Table(
    "review_checks",
    _metadata,
    sa.Column("file_id", _ID, primary_key=True, autoincrement=False),
    sa.Column("output_mtime", sa.Float, nullable=False),
    sa.Column("ok", sa.Boolean),
    sa.Column("verdict", sa.Text, nullable=False),
    sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
)

_HASHER: Final = PasswordHasher()
# Verifying a wrong name costs what verifying a wrong password costs (no timing oracle).
_DUMMY_HASH: Final = _HASHER.hash("dicomveil: no such account")
NAME_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def _digest(sid: str) -> str:
    return hashlib.sha256(sid.encode("utf-8", "surrogateescape")).hexdigest()


class ReviewStore:
    """The review tables of an audit database (created when missing).

    Parameters
    ----------
    url_or_path : str or pathlib.Path
        The audit database: a SQLite file (it must exist: ``dicomveil run --audit`` made
        it) or a ``postgresql://`` URL.

    Raises
    ------
    AuditError
        The database cannot be opened, or its tables cannot be made.
    """

    def __init__(self, url_or_path: str | Path) -> None:
        database = open_database(url_or_path, what="audit database", error=AuditError, create=False)
        self._db, self.location = database, database.location
        try:
            with self._db.transaction() as conn:
                _metadata.create_all(conn, checkfirst=True)
        except AuditError:
            self._db.close()
            raise

    def close(self) -> None:
        """Close the database's connections."""
        self._db.close()

    # ---------------------------------------------------------------- accounts

    def add_user(self, name: str, password: str, role: Role) -> None:
        """Create an account, or replace the password and role of an existing one.

        Parameters
        ----------
        name : str
            Letters, digits, ``.``, ``_`` and ``-``; at most 64.
        password : str
            At least 8 characters (stored as an argon2 hash).
        role : Role
            What the account may do.

        Raises
        ------
        AuditError
            A name or password that cannot be used, or the database cannot be written.
        """
        if not name or len(name) > 64 or not set(name) <= NAME_CHARS:
            raise AuditError("an account name is 1-64 letters, digits, '.', '_' or '-'")
        if len(password) < 8:
            raise AuditError("a password has at least 8 characters")
        values = {"password_hash": _HASHER.hash(password), "role": role.value, "active": True}
        with self._db.transaction() as conn:
            done = conn.execute(_users.update().where(_users.c.name == name).values(**values))
            if not done.rowcount:
                conn.execute(_users.insert().values(name=name, created_at=_now(), **values))

    def users(self) -> list[tuple[str, Role, bool]]:
        """The accounts: name, role, active.

        Returns
        -------
        list of (str, Role, bool)
            By name.
        """
        query = sa.select(_users.c.name, _users.c.role, _users.c.active).order_by(_users.c.name)
        with self._db.transaction() as conn:
            return [(n, Role(r), bool(a)) for n, r, a in conn.execute(query)]

    def authenticate(self, name: str, password: str) -> User | None:
        """The account, when the password is its password.

        Parameters
        ----------
        name : str
            The account's name.
        password : str
            The password given.

        Returns
        -------
        User or None
            None for an unknown or inactive account or a wrong password.
        """
        query = sa.select(_users).where(_users.c.name == name)
        with self._db.transaction() as conn:
            row = conn.execute(query).one_or_none()
        stored = row.password_hash if row is not None and row.active else _DUMMY_HASH
        try:
            _HASHER.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if row is None or not row.active:
            return None
        if _HASHER.check_needs_rehash(stored):
            with self._db.transaction() as conn:
                conn.execute(
                    _users.update()
                    .where(_users.c.name == name)
                    .values(password_hash=_HASHER.hash(password))
                )
        return User(row.name, Role(row.role))

    def user(self, name: str) -> User | None:
        """An active account by name (for a session), or None.

        Parameters
        ----------
        name : str
            The account's name.

        Returns
        -------
        User or None
            The account, if it exists and is active.
        """
        query = sa.select(_users.c.name, _users.c.role).where(
            _users.c.name == name, _users.c.active.is_(True)
        )
        with self._db.transaction() as conn:
            row = conn.execute(query).one_or_none()
        return None if row is None else User(row.name, Role(row.role))

    # ---------------------------------------------------------------- events

    def open_session(self, who: str) -> str:
        """A new session of ``who``: its id, for the cookie (only its digest is stored, so
        that a reader of the database cannot take a session over).

        Parameters
        ----------
        who : str
            The account.

        Returns
        -------
        str
            The session's id.
        """
        sid = secrets.token_urlsafe(24)
        with self._db.transaction() as conn:
            conn.execute(_sessions.insert().values(digest=_digest(sid), who=who, at=_now()))
        return sid

    def session_user(self, sid: str) -> str | None:
        """The account of a live session, or None (ended, or never opened here)."""
        with self._db.transaction() as conn:
            row = conn.execute(
                sa.select(_sessions.c.who).where(_sessions.c.digest == _digest(sid))
            ).first()
        return None if row is None else str(row[0])

    def close_session(self, sid: str) -> None:
        """End a session (logging out): its cookie lets no one in any more."""
        with self._db.transaction() as conn:
            conn.execute(_sessions.delete().where(_sessions.c.digest == _digest(sid)))

    def log(self, who: str, action: str, subject: str | None = None, detail: str = "") -> None:
        """Record an action.

        Parameters
        ----------
        who : str
            The account (``-`` when nobody is logged in).
        action : str
            What was done (``login``, ``reveal``, ``sign-off``...).
        subject : str, optional
            The subject's pseudonym.
        detail : str
            More, never a value read from a file.
        """
        with self._db.transaction() as conn:
            conn.execute(
                _events.insert().values(
                    at=_now(), who=who, action=action, subject=subject, detail=detail
                )
            )

    def events(self, subject: str | None = None, limit: int = 200) -> list[Event]:
        """The latest actions, newest first.

        Parameters
        ----------
        subject : str, optional
            Only this subject's.
        limit : int
            At most this many.

        Returns
        -------
        list of Event
            The actions.
        """
        query = sa.select(_events).order_by(_events.c.id.desc()).limit(limit)
        if subject is not None:
            query = query.where(_events.c.subject == subject)
        with self._db.transaction() as conn:
            rows = conn.execute(query).all()
        return [Event(_utc(r.at), r.who, r.action, r.subject, r.detail) for r in rows]

    # ---------------------------------------------------------------- the lab's columns

    def sheet(self) -> dict[str, SheetRow]:
        """The lab's columns, by pseudonym.

        Returns
        -------
        dict of str to SheetRow
            The subjects that have any.
        """
        with self._db.transaction() as conn:
            rows = conn.execute(sa.select(_sheet)).all()
        return {r.pseudonym: SheetRow(r.study_id, r.date_scanned) for r in rows}

    def set_sheet(self, pseudonym: str, row: SheetRow, who: str) -> None:
        """Replace a subject's lab columns.

        Parameters
        ----------
        pseudonym : str
            The subject.
        row : SheetRow
            The new values.
        who : str
            Who edits.
        """
        values = {
            "study_id": row.study_id,
            "date_scanned": row.date_scanned,
            "updated_by": who,
            "updated_at": _now(),
        }
        with self._db.transaction() as conn:
            done = conn.execute(
                _sheet.update().where(_sheet.c.pseudonym == pseudonym).values(**values)
            )
            if not done.rowcount:
                conn.execute(_sheet.insert().values(pseudonym=pseudonym, **values))

    # ---------------------------------------------------------------- the file index

    def indexed(self, file_ids: Iterable[int]) -> dict[int, IndexRow]:
        """The index rows of these files (those indexed).

        Parameters
        ----------
        file_ids : Iterable[int]
            Ids of the audit trail's file records.

        Returns
        -------
        dict of int to IndexRow
            By file id.
        """
        return {int(r.file_id): _index_row(r._mapping) for r in self._of_files(_index, file_ids)}

    def add_index(self, rows: Iterable[IndexRow]) -> None:
        """Add index rows (a file indexed meanwhile by another request: its row is kept).

        Parameters
        ----------
        rows : Iterable[IndexRow]
            The rows.
        """
        values = [
            {
                "file_id": r.file_id,
                "study": r.study,
                "series": r.series,
                "modality": r.modality,
                "description": r.description,
                "number": r.number,
                "frames": r.frames,
            }
            for r in rows
        ]
        if not values:
            return
        insert = self._db.insert_new(_index, ["file_id"])
        with self._db.transaction() as conn:  # a file indexed meanwhile by another request: kept
            conn.execute(insert, values)

    def checks(self, file_ids: Iterable[int]) -> dict[int, CheckRow]:
        """The stored checks of these files (those checked).

        Parameters
        ----------
        file_ids : Iterable[int]
            Ids of the audit trail's file records.

        Returns
        -------
        dict of int to CheckRow
            By file id.
        """
        return {
            int(r.file_id): CheckRow(int(r.file_id), float(r.output_mtime), r.ok, r.verdict)
            for r in self._of_files(_checks, file_ids)
        }

    def _of_files(self, table: sa.Table, file_ids: Iterable[int]) -> list[sa.Row[Any]]:
        """The rows of ``table`` for these file ids (looked up 500 at a time)."""
        wanted = list(file_ids)
        rows: list[sa.Row[Any]] = []
        with self._db.transaction() as conn:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                rows.extend(conn.execute(sa.select(table).where(table.c.file_id.in_(chunk))))
        return rows

    def set_checks(self, rows: Iterable[CheckRow]) -> None:
        """Store checks, replacing earlier ones of the same files.

        Parameters
        ----------
        rows : Iterable[CheckRow]
            The checks.
        """
        values = [
            {
                "file_id": r.file_id,
                "output_mtime": r.output_mtime,
                "ok": r.ok,
                "verdict": r.verdict,
                "checked_at": _now(),
            }
            for r in rows
        ]
        if not values:
            return
        with self._db.transaction() as conn:
            ids = [v["file_id"] for v in values]
            conn.execute(_checks.delete().where(_checks.c.file_id.in_(ids)))
            conn.execute(_checks.insert(), values)

    def unindexed(self, limit: int) -> list[int]:
        """Written files of the audit trail that the index does not hold yet.

        Parameters
        ----------
        limit : int
            At most this many.

        Returns
        -------
        list of int
            Their file record ids.
        """
        query = sa.text(
            "SELECT f.id FROM files f LEFT JOIN review_index i ON i.file_id = f.id "
            "WHERE f.outcome = 'written' AND f.output_path IS NOT NULL AND i.file_id IS NULL "
            "ORDER BY f.id LIMIT :limit"
        )
        with self._db.transaction() as conn:
            return [int(file_id) for (file_id,) in conn.execute(query, {"limit": limit})]

    def study_counts(self) -> dict[str, int]:
        """Per subject, the studies of its indexed files.

        Returns
        -------
        dict of str to int
            Pseudonym -> studies (subjects not indexed yet are missing).
        """
        query = sa.text(
            "SELECT f.subject, COUNT(DISTINCT i.study) FROM review_index i "
            "JOIN files f ON f.id = i.file_id WHERE f.subject IS NOT NULL AND i.study <> '' "
            "GROUP BY f.subject"
        )
        with self._db.transaction() as conn:
            return {subject: int(count) for subject, count in conn.execute(query)}


def _index_row(m: Mapping[Any, Any]) -> IndexRow:
    return IndexRow(
        int(m["file_id"]),
        m["study"],
        m["series"],
        m["modality"],
        m["description"],
        m["number"],
        int(m["frames"]),
    )


def _utc(value: _dt.datetime) -> _dt.datetime:
    return value.replace(tzinfo=_dt.UTC) if value.tzinfo is None else value.astimezone(_dt.UTC)
