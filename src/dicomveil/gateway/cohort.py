"""The cohort: which patients and instances belong to a project, and what they were called.

A query route answers only for its project's cohort (issue 16): the patients and the UIDs
(studies, series, instances) that were de-identified with the project's key, with their
pseudonyms and new UIDs. The cohort is durable: SQLite in the gateway's state folder
(``cohort.sqlite``, mode 0600), or a PostgreSQL database (``[gateway] cohort``, like the
audit trail's ``--audit``); it maps pseudonyms back to originals, like ``--map-dir``. It is
filled

* by every storing route, as each instance is written (:meth:`Cohort.record`);
* from the map folders of ``dicomveil run --map-dir`` (``patients.csv``, ``uids.csv``),
  listed in a query route's ``cohort_maps`` and imported when the gateway starts
  (:meth:`Cohort.import_maps`).

A project is a key: routes with the same key share their cohort (their pseudonyms and new
UIDs are the same), routes with different keys never see each other's. Projects are named
by the key's fingerprint, never by the key.
"""

from __future__ import annotations

import contextlib
import csv
import fnmatch
import logging
import re
import threading
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from dicomveil.errors import CohortError
from dicomveil.io.database import open_database
from dicomveil.runs.maps import INSTANCES_FILE, instance_uids

__all__ = ["COHORT_FILE", "Cohort", "CohortError"]

LOGGER = logging.getLogger(__name__)

COHORT_FILE = "cohort.sqlite"
_BATCH = 2000  # rows buffered before they are written
_FLUSH_SECONDS = 0.5
_IN_CHUNK = 500  # UIDs per IN (...) lookup

_metadata = sa.MetaData()
_patients = sa.Table(
    "cohort_patients",
    _metadata,
    sa.Column("project", sa.String(64), primary_key=True),
    sa.Column("original", sa.Text, primary_key=True),
    sa.Column("pseudonym", sa.Text, nullable=False),
    sa.Index("cohort_patients_by_pseudonym", "project", "pseudonym"),
)
_uids = sa.Table(
    "cohort_uids",
    _metadata,
    sa.Column("project", sa.String(64), primary_key=True),
    sa.Column("original", sa.String(64), primary_key=True),
    sa.Column("new", sa.String(64), nullable=False),
    sa.Index("cohort_uids_by_new", "project", "new"),
)


class Cohort:
    """The cohorts of a gateway's projects, in one database.

    Parameters
    ----------
    url_or_path : str or pathlib.Path
        A SQLite file (created, mode 0600) or a ``postgresql://`` URL (the tables are created
        on first use; they live beside the audit trail's when it is the same database).

    Raises
    ------
    CohortError
        The URL cannot be used, or the database cannot be reached or prepared.
    """

    def __init__(self, url_or_path: str | Path) -> None:
        database = open_database(url_or_path, what="cohort database", error=CohortError)
        self._db, self.location = database, database.location
        try:
            with self._db.transaction() as conn:
                _metadata.create_all(conn, checkfirst=True)
        except CohortError:
            self._db.close()
            raise
        self._lock = threading.Lock()
        # Instances written are recorded in batches (one transaction per instance costs the
        # receiving thread about half a millisecond): flushed at _BATCH rows, every
        # _FLUSH_SECONDS, before every lookup and on close. A record lost in a crash only
        # hides that instance from queries (fail closed); a batch that cannot be written
        # (the database is unreachable) is kept and written at the next flush.
        self._patient_rows: list[dict[str, str]] = []
        self._uid_rows: list[dict[str, str]] = []
        self._closed = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, name="cohort", daemon=True)
        self._flusher.start()

    def close(self) -> None:
        """Write what is recorded and close the database."""
        self._closed.set()
        self._flusher.join(5.0)
        try:
            with self._lock:
                self._flush()
        finally:
            self._db.close()

    def _flush_loop(self) -> None:
        while not self._closed.wait(_FLUSH_SECONDS):
            try:
                with self._lock:
                    self._flush()
            except CohortError as exc:
                LOGGER.warning("%s (kept, written at the next attempt)", exc)

    def _flush(self) -> None:
        """Write the buffered records (the lock held); the rows stay buffered on failure."""
        if not self._patient_rows and not self._uid_rows:
            return
        with self._db.transaction() as conn:
            for table, rows in ((_patients, self._patient_rows), (_uids, self._uid_rows)):
                if rows:
                    conn.execute(self._upsert(table), rows)
        self._patient_rows, self._uid_rows = [], []

    def _upsert(self, table: sa.Table) -> Any:
        """An INSERT that leaves a row already there (an original's pseudonym and new UID
        are the same under one key, so the first row is the row)."""
        return self._db.insert_new(table, ["project", "original"])

    def record(
        self,
        project: str,
        patient_id: str,
        pseudonym: str,
        uid_map: Mapping[str, str],
        own: Collection[str] | None = None,
    ) -> None:
        """Add what one written instance holds (idempotent).

        Parameters
        ----------
        project : str
            The project (its key's fingerprint).
        patient_id : str
            The original Patient ID ("" when the instance had none).
        pseudonym : str
            Its pseudonym.
        uid_map : Mapping[str, str]
            The instance's UIDs, original to new.
        own : Collection[str], optional
            The instance's own original Study, Series and SOP Instance UIDs: only these of
            ``uid_map`` join the cohort (a prior study or a source image the instance refers
            to does not). None: every UID of ``uid_map``.
        """
        with self._lock:
            if patient_id:
                self._patient_rows.append(
                    {"project": project, "original": patient_id, "pseudonym": pseudonym}
                )
            self._uid_rows.extend(
                {"project": project, "original": old, "new": new}
                for old, new in uid_map.items()
                if own is None or old in own
            )
            if len(self._uid_rows) + len(self._patient_rows) >= _BATCH:
                with contextlib.suppress(CohortError):  # kept for the flusher to retry
                    self._flush()

    def import_maps(self, project: str, folder: Path) -> tuple[int, int]:
        """Add the maps of a ``dicomveil run --map-dir`` folder.

        Parameters
        ----------
        project : str
            The project (its key's fingerprint).
        folder : Path
            The map folder: ``patients.csv`` and ``uids.csv`` (``id_old,id_new``), and
            ``instances.csv`` (the written instances' own original UIDs): only the UIDs it
            names join the cohort, not those the instances refer to. A map folder of an
            earlier version, without ``instances.csv``: every UID of ``uids.csv`` (logged).

        Returns
        -------
        tuple[int, int]
            The patients and the UIDs taken.

        Raises
        ------
        OSError
            A map cannot be read.
        CohortError
            The database cannot be written.
        """
        patients, uids = _read_pairs(folder / "patients.csv"), _read_pairs(folder / "uids.csv")
        own = instance_uids(folder)
        if own is not None:
            uids = [(old, new) for old, new in uids if old in own]
        else:
            LOGGER.warning(
                "map folder without %s (an earlier version's): every UID of uids.csv joins "
                "the cohort, those the instances refer to included",
                INSTANCES_FILE,
            )
        with self._lock:
            self._patient_rows.extend(
                {"project": project, "original": old, "pseudonym": new} for old, new in patients
            )
            self._uid_rows.extend(
                {"project": project, "original": old, "new": new} for old, new in uids
            )
            self._flush()
        return len(patients), len(uids)

    def _select(self, query: sa.Select[Any]) -> list[sa.Row[Any]]:
        """The rows of a lookup, after writing what is buffered."""
        with self._lock:
            self._flush()
        with self._db.transaction() as conn:
            return list(conn.execute(query))

    def patients_matching(self, project: str, pattern: str) -> set[str]:
        """The original Patient IDs whose pseudonym matches a C-FIND value.

        Parameters
        ----------
        project : str
            The project.
        pattern : str
            The value: a pseudonym, or one with ``*`` and ``?`` wildcards (PS3.4 C.2.2.2.4).

        Returns
        -------
        set[str]
            The originals (empty when no pseudonym of the cohort matches).

        Raises
        ------
        CohortError
            The database cannot be read.
        """
        columns = sa.select(_patients.c.original, _patients.c.pseudonym).where(
            _patients.c.project == project
        )
        if "*" in pattern or "?" in pattern:
            compiled = re.compile(fnmatch.translate(pattern.replace("[", "[[]")))
            rows = self._select(columns)
            return {row.original for row in rows if compiled.match(row.pseudonym)}
        rows = self._select(columns.where(_patients.c.pseudonym == pattern))
        return {row.original for row in rows}

    def original_uids(self, project: str, new: Iterable[str]) -> set[str]:
        """The original UIDs of new ones (those of the cohort; the rest are left out).

        Parameters
        ----------
        project : str
            The project.
        new : Iterable[str]
            New UIDs, as the de-identified data carries them.

        Returns
        -------
        set[str]
            Their originals.

        Raises
        ------
        CohortError
            The database cannot be read.
        """
        wanted = sorted(set(new))
        found: set[str] = set()
        for start in range(0, len(wanted), _IN_CHUNK):
            chunk = wanted[start : start + _IN_CHUNK]
            query = sa.select(_uids.c.original).where(
                _uids.c.project == project, _uids.c.new.in_(chunk)
            )
            found.update(row.original for row in self._select(query))
        return found

    def has_patient(self, project: str, original: str) -> bool:
        """Whether an original Patient ID is in the cohort.

        Parameters
        ----------
        project : str
            The project.
        original : str
            The Patient ID as the clinical archive holds it.

        Returns
        -------
        bool
            True when the cohort holds it.

        Raises
        ------
        CohortError
            The database cannot be read.
        """
        return self._has(_patients, project, original)

    def has_uid(self, project: str, original: str) -> bool:
        """Whether an original UID (study, series, instance) is in the cohort.

        Parameters
        ----------
        project : str
            The project.
        original : str
            The UID as the clinical archive holds it.

        Returns
        -------
        bool
            True when the cohort holds it.

        Raises
        ------
        CohortError
            The database cannot be read.
        """
        return self._has(_uids, project, original)

    def _has(self, table: sa.Table, project: str, original: str) -> bool:
        query = (
            sa.select(sa.literal(1))
            .where(table.c.project == project, table.c.original == original)
            .limit(1)
        )
        return bool(self._select(query))


def _read_pairs(path: Path) -> list[tuple[str, str]]:
    """The rows of a two-column map after its header (a missing file: none)."""
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8", errors="surrogateescape") as fh:
        rows = list(csv.reader(fh))
    return [(row[0], row[1]) for row in rows[1:] if len(row) >= 2 and row[0] and row[1]]
