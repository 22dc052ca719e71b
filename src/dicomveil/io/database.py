"""Opening a database with SQLAlchemy: a SQLite file (created readable by its owner only) or
a PostgreSQL URL (psycopg). Shared by the audit trail (:mod:`dicomveil.qc.audit`) and the
gateway's cohort (:mod:`dicomveil.gateway.cohort`); each names its database in messages
(``what``) and raises its own error class.
"""

from __future__ import annotations

import contextlib
import os
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from dicomveil.errors import DicomveilError

__all__ = ["Database", "describe", "open_database"]


class Database:
    """An opened database: its engine, how messages name it, and its transactions.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The engine.
    location : str
        The SQLite file, or the URL with its password hidden.
    what : str
        The database's name in messages ("cohort database").
    error : type[DicomveilError]
        What a database error becomes.
    """

    def __init__(
        self, engine: sa.Engine, location: str, what: str, error: type[DicomveilError]
    ) -> None:
        self.engine = engine
        self.location = location
        self._what = what
        self._error = error

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A connection in a transaction, committed at the end (rolled back on an error).

        Yields
        ------
        sqlalchemy.engine.Connection
            The connection.

        Raises
        ------
        DicomveilError
            Of the database's error class: the driver's first line, never a statement or
            its parameters.
        """
        try:
            with self.engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise self._error(f"{self._what} {self.location}: {describe(exc)}") from None

    def insert_new(self, table: sa.Table, keys: list[str]) -> Any:
        """An INSERT that leaves a row whose ``keys`` are already there as it is (SQLite and
        PostgreSQL: ``ON CONFLICT DO NOTHING``).

        Parameters
        ----------
        table : sqlalchemy.Table
            The table.
        keys : list of str
            The columns of its primary key or unique index.

        Returns
        -------
        Any
            The statement, to execute with rows.
        """
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(table).on_conflict_do_nothing(index_elements=keys)

    def close(self) -> None:
        """Close the database's connections."""
        self.engine.dispose()


def _url(text: str | Path, what: str, error: type[DicomveilError]) -> tuple[URL, Path | None]:
    """The SQLAlchemy URL (psycopg for PostgreSQL) and, for SQLite, the file."""
    if isinstance(text, Path) or "://" not in text:
        path = Path(text).expanduser()
        return URL.create("sqlite", database=str(path)), path
    if text.startswith("postgres://"):
        text = "postgresql://" + text[len("postgres://") :]
    try:
        url = make_url(text)
    except ArgumentError:
        raise error(f"the {what} URL cannot be parsed") from None
    backend = url.get_backend_name()
    if backend == "postgresql":
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        return url, None
    if backend == "sqlite" and url.database and url.database != ":memory:":
        return url, Path(url.database)
    raise error(f"the {what} is a SQLite file path or a postgresql:// URL, not {url.drivername}://")


_ENGINES: weakref.WeakSet[sa.Engine] = weakref.WeakSet()


def _forget_connections_after_fork() -> None:
    # A worker process forked by a batch run inherits the parent's pooled connections: it must
    # never use nor close them (SQLAlchemy's "using connection pools with multiprocessing").
    for engine in list(_ENGINES):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_connections_after_fork)


def open_database(
    url_or_path: str | Path,
    *,
    what: str,
    error: type[DicomveilError],
    create: bool = True,
) -> Database:
    """Open the database at a path (SQLite) or ``postgresql://`` URL; no schema is made.

    Parameters
    ----------
    url_or_path : str or pathlib.Path
        An SQLite file, or a ``postgresql://`` (or ``postgres://``) URL.
    what : str
        The database's name in messages ("audit database").
    error : type[DicomveilError]
        The error raised.
    create : bool, default True
        Create a missing SQLite file (mode 0600); without it a missing file is an error.

    Returns
    -------
    Database
        The engine (dispose of it when done) and the location for messages.

    Raises
    ------
    DicomveilError
        Of class ``error``: the URL cannot be parsed or names another database, or the file
        is missing (without ``create``) or cannot be created.
    """
    url, sqlite_file = _url(url_or_path, what, error)
    if sqlite_file is None:
        engine = sa.create_engine(url, hide_parameters=True, pool_pre_ping=True)
        location = url.render_as_string(hide_password=True)
    else:
        location = str(sqlite_file)
        if not sqlite_file.exists():
            if not create:
                raise error(f"no {what} at {sqlite_file}")
            try:
                sqlite_file.parent.mkdir(parents=True, exist_ok=True)
                os.close(os.open(sqlite_file, os.O_WRONLY | os.O_CREAT, 0o600))
            except OSError as exc:
                raise error(f"cannot create the {what} {sqlite_file} ({exc.strerror})") from None
        engine = sa.create_engine(url, hide_parameters=True, connect_args={"timeout": 60})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    _ENGINES.add(engine)
    return Database(engine, location, what, error)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers never block the writers, and a commit costs no fsync of the database file;
    # a crash of the process loses nothing committed.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def describe(exc: SQLAlchemyError) -> str:
    """The driver's first line of an error, without statement or parameters.

    Parameters
    ----------
    exc : sqlalchemy.exc.SQLAlchemyError
        The error.

    Returns
    -------
    str
        One line for a message.
    """
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
