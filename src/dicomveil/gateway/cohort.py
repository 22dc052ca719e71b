"""The cohort: which patients and instances belong to a project, and what they were called.

A query route answers only for its project's cohort (issue 16): the patients and the UIDs
(studies, series, instances) that were de-identified with the project's key, with their
pseudonyms and new UIDs. The cohort is durable (SQLite in the gateway's state folder,
``cohort.sqlite``, mode 0600: it maps pseudonyms back to originals, like ``--map-dir``) and
is filled

* by every storing route, as each instance is written (:meth:`Cohort.record`);
* from the map folders of ``dicomveil run --map-dir`` (``patients.csv``, ``uids.csv``),
  listed in a query route's ``cohort_maps`` and imported when the gateway starts
  (:meth:`Cohort.import_maps`).

A project is a key: routes with the same key share their cohort (their pseudonyms and new
UIDs are the same), routes with different keys never see each other's. Projects are named
by the key's fingerprint, never by the key.
"""

from __future__ import annotations

import csv
import fnmatch
import os
import re
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from contextlib import closing, suppress
from pathlib import Path

__all__ = ["COHORT_FILE", "Cohort"]

COHORT_FILE = "cohort.sqlite"
_BATCH = 2000  # rows buffered before they are written
_FLUSH_SECONDS = 0.5

_SCHEMA = """
CREATE TABLE IF NOT EXISTS patients (
    project TEXT NOT NULL, original TEXT NOT NULL, pseudonym TEXT NOT NULL,
    PRIMARY KEY (project, original));
CREATE INDEX IF NOT EXISTS patients_by_pseudonym ON patients (project, pseudonym);
CREATE TABLE IF NOT EXISTS uids (
    project TEXT NOT NULL, original TEXT NOT NULL, new TEXT NOT NULL,
    PRIMARY KEY (project, original));
CREATE INDEX IF NOT EXISTS uids_by_new ON uids (project, new);
"""


class Cohort:
    """The cohorts of a gateway's projects, in one SQLite file.

    Parameters
    ----------
    path : Path
        The database file (created, mode 0600).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with suppress(FileExistsError):
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        # Instances written are recorded in batches (one transaction per instance costs the
        # receiving thread about half a millisecond): flushed at _BATCH rows, every
        # _FLUSH_SECONDS, before every lookup and on close. A record lost in a crash only
        # hides that instance from queries (fail closed).
        self._patients: list[tuple[str, str, str]] = []
        self._uids: list[tuple[str, str, str]] = []
        self._closed = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, name="cohort", daemon=True)
        self._flusher.start()

    def close(self) -> None:
        """Write what is recorded and close the database."""
        self._closed.set()
        self._flusher.join(5.0)
        with self._lock:
            self._flush()
            self._db.close()

    def _flush_loop(self) -> None:
        while not self._closed.wait(_FLUSH_SECONDS):
            with self._lock:
                self._flush()

    def _flush(self) -> None:
        """Write the buffered records (the lock held)."""
        if not self._patients and not self._uids:
            return
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO patients VALUES (?, ?, ?)", self._patients)
            self._db.executemany("INSERT OR REPLACE INTO uids VALUES (?, ?, ?)", self._uids)
        self._patients, self._uids = [], []

    def record(
        self, project: str, patient_id: str, pseudonym: str, uid_map: Mapping[str, str]
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
        """
        with self._lock:
            if patient_id:
                self._patients.append((project, patient_id, pseudonym))
            self._uids.extend((project, old, new) for old, new in uid_map.items())
            if len(self._uids) + len(self._patients) >= _BATCH:
                self._flush()

    def import_maps(self, project: str, folder: Path) -> tuple[int, int]:
        """Add the maps of a ``dicomveil run --map-dir`` folder.

        Parameters
        ----------
        project : str
            The project (its key's fingerprint).
        folder : Path
            The map folder: ``patients.csv`` and ``uids.csv`` (``id_old,id_new``).

        Returns
        -------
        tuple[int, int]
            The patients and the UIDs read.

        Raises
        ------
        OSError
            A map cannot be read.
        """
        patients, uids = _read_pairs(folder / "patients.csv"), _read_pairs(folder / "uids.csv")
        self._add(project, patients, uids)
        return len(patients), len(uids)

    def _add(
        self,
        project: str,
        patients: Iterable[tuple[str, str]],
        uids: Iterable[tuple[str, str]],
    ) -> None:
        with self._lock:
            self._patients.extend((project, old, new) for old, new in patients)
            self._uids.extend((project, old, new) for old, new in uids)
            self._flush()

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
        """
        with self._lock, closing(self._db.cursor()) as cursor:
            self._flush()
            if "*" in pattern or "?" in pattern:
                rows = cursor.execute(
                    "SELECT original, pseudonym FROM patients WHERE project = ?", (project,)
                ).fetchall()
                compiled = re.compile(fnmatch.translate(pattern.replace("[", "[[]")))
                return {old for old, new in rows if compiled.match(new)}
            rows = cursor.execute(
                "SELECT original FROM patients WHERE project = ? AND pseudonym = ?",
                (project, pattern),
            ).fetchall()
        return {old for (old,) in rows}

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
        """
        found: set[str] = set()
        with self._lock, closing(self._db.cursor()) as cursor:
            self._flush()
            for uid in new:
                rows = cursor.execute(
                    "SELECT original FROM uids WHERE project = ? AND new = ?", (project, uid)
                ).fetchall()
                found.update(old for (old,) in rows)
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
        """
        return self._has("patients", project, original)

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
        """
        return self._has("uids", project, original)

    def _has(self, table: str, project: str, original: str) -> bool:
        with self._lock, closing(self._db.cursor()) as cursor:
            self._flush()
            row = cursor.execute(
                f"SELECT 1 FROM {table} WHERE project = ? AND original = ?",  # noqa: S608
                (project, original),
            ).fetchone()
        return row is not None


def _read_pairs(path: Path) -> list[tuple[str, str]]:
    """The rows of a two-column map after its header (a missing file: none)."""
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8", errors="surrogateescape") as fh:
        rows = list(csv.reader(fh))
    return [(row[0], row[1]) for row in rows[1:] if len(row) >= 2 and row[0] and row[1]]
