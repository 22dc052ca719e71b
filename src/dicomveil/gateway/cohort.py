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

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

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
        self._add(project, [(patient_id, pseudonym)] if patient_id else [], uid_map.items())

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
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO patients VALUES (?, ?, ?)",
                [(project, old, new) for old, new in patients],
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO uids VALUES (?, ?, ?)",
                [(project, old, new) for old, new in uids],
            )

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
