"""The audit trail: who de-identified which files, how, and who checked the result.

An :class:`AuditTrail` lives in an embedded SQLite database (a file the user chooses, on a local
disk) or, for a team, in PostgreSQL (``postgresql://user@host/database``). The schema is
created on first use and carries its version; its tables (``runs``, ``files``,
``verifications``, ``subjects``, ``qc_events``) are described in
:mod:`~dicomveil.qc.audit.store`, their rows in :mod:`~dicomveil.qc.audit.records`.

Nothing read from a DICOM file is stored except the subject pseudonym, which is itself a
de-identified value; input paths are stored as the user gave them. A crash leaves a consistent
database: the run stays ``running`` until the next :meth:`AuditTrail.start_run` on the same host
finds its process gone and marks it ``interrupted``; :meth:`AuditTrail.files_done` tells what
was already done.

A batch run records itself through :class:`AuditRecorder`, whose instances are
:func:`dicomveil.run` progress callbacks::

    with AuditTrail.open("audit.sqlite") as trail, AuditRecorder(trail, config) as recorder:
        summary = run(inputs, config, progress=recorder)

Modules: :mod:`~dicomveil.qc.audit.records` (the records and :class:`AuditError`),
:mod:`~dicomveil.qc.audit.store` (the schema and the database),
:mod:`~dicomveil.qc.audit.writing` (runs, files, verifications and QC decisions written),
:mod:`~dicomveil.qc.audit.trail` (:class:`AuditTrail`, and what it reads),
:mod:`~dicomveil.qc.audit.recorder` (:class:`AuditRecorder`: a run recording itself),
:mod:`~dicomveil.qc.audit.sheets` (the tracking sheet and exports).
"""

from __future__ import annotations

import datetime as _dt
from functools import partial
from pathlib import Path

import sqlalchemy as sa

from dicomveil.qc.audit.records import (
    FileRecord,
    QcEvent,
    RunRecord,
    SubjectRecord,
    VerificationRecord,
)
from dicomveil.qc.audit.store import (
    _file_record,
    _files,
    _listing,
    _qc_events,
    _record,
    _run_record,
    _runs,
    _subject_record,
    _subjects,
    _verification_record,
    _verifications,
    deidentifiers,
)
from dicomveil.qc.audit.writing import AuditWriter
from dicomveil.qc.statuses import QcStatus as QcStatus  # re-exported: audit's public names
from dicomveil.qc.statuses import RunStatus as RunStatus
from dicomveil.runs.batch import Outcome


class AuditTrail(AuditWriter):
    """The audit database. Open it with :meth:`open`; close it (or use ``with``) when done.

    What it writes comes from :class:`~dicomveil.qc.audit.writing.AuditWriter`; opening,
    closing and the constructor's parameters from :class:`~dicomveil.qc.audit.store.AuditStore`;
    what it reads is here.
    """

    # ---------------------------------------------------------------- queries

    def files_done(
        self, input_sha256: str, profile_digest: str, key_fingerprint: str
    ) -> FileRecord | None:
        """The latest record of an input de-identified under a profile and key.

        Parameters
        ----------
        input_sha256 : str
            SHA-256 of the input's bytes.
        profile_digest : str
            The profile's digest.
        key_fingerprint : str
            The key's fingerprint.

        Returns
        -------
        FileRecord or None
            The latest record of this input under this profile and key, or None.

        Raises
        ------
        AuditError
            The database cannot be read.
        """
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

    def runs(
        self,
        *,
        run_id: int | None = None,
        since: _dt.datetime | None = None,
        status: RunStatus | str | None = None,
    ) -> list[RunRecord]:
        """The runs, oldest first.

        Parameters
        ----------
        run_id : int, optional
            Only this run.
        since : datetime.datetime, optional
            Only runs started then or later (a naive datetime is UTC).
        status : RunStatus or str, optional
            Only runs with this status.

        Returns
        -------
        list of RunRecord
            The runs.

        Raises
        ------
        AuditError
            The database cannot be read.
        ValueError
            ``status`` is not a run status.
        """
        checked = None if status is None else RunStatus(status)
        query = _listing(_runs, "started_at", since, id=run_id, status=checked)
        return self._read(query, _run_record)

    def files(
        self,
        *,
        run_id: int | None = None,
        outcome: Outcome | str | None = None,
        since: _dt.datetime | None = None,
        subject: str | None = None,
        input_sha256: str | None = None,
    ) -> list[FileRecord]:
        """The file records, in the order recorded.

        Parameters
        ----------
        run_id : int, optional
            Only this run's.
        outcome : Outcome or str, optional
            Only files with this outcome.
        since : datetime.datetime, optional
            Only files recorded then or later (a naive datetime is UTC).
        subject : str, optional
            Only this subject's (a pseudonym).
        input_sha256 : str, optional
            Only records of an input with these bytes.

        Returns
        -------
        list of FileRecord
            The records.

        Raises
        ------
        AuditError
            The database cannot be read.
        ValueError
            ``outcome`` is not an outcome.
        """
        query = _listing(
            _files,
            "recorded_at",
            since,
            run_id=run_id,
            outcome=None if outcome is None else Outcome(outcome),
            subject=subject,
            input_sha256=input_sha256,
        )
        return self._read(query, _file_record)

    def file(self, file_id: int) -> FileRecord | None:
        """One file record by its number.

        Parameters
        ----------
        file_id : int
            The record's ``id``.

        Returns
        -------
        FileRecord or None
            The record, or None when there is none.

        Raises
        ------
        AuditError
            The database cannot be read.
        """
        found = self.files_by_id([file_id])
        return found[0] if found else None

    def files_by_id(self, file_ids: list[int]) -> list[FileRecord]:
        """File records by their numbers (those that exist), in the order recorded.

        Parameters
        ----------
        file_ids : list of int
            The records' ``id``.

        Returns
        -------
        list of FileRecord
            The records.

        Raises
        ------
        AuditError
            The database cannot be read.
        """
        found: list[FileRecord] = []
        file_ids = [i for i in file_ids if 0 <= i < 2**63]  # a larger number names no row
        for start in range(0, len(file_ids), 500):
            chunk = file_ids[start : start + 500]
            query = sa.select(_files).where(_files.c.id.in_(chunk)).order_by(_files.c.id)
            found.extend(self._read(query, _file_record))
        return found

    def verifications(
        self,
        *,
        since: _dt.datetime | None = None,
        output: str | Path | None = None,
        operator: str | None = None,
    ) -> list[VerificationRecord]:
        """The verifications, oldest first.

        Parameters
        ----------
        since : datetime.datetime, optional
            Only those made then or later (a naive datetime is UTC).
        output : str or pathlib.Path, optional
            Only checks of this folder.
        operator : str, optional
            Only checks by this operator.

        Returns
        -------
        list of VerificationRecord
            The verifications.

        Raises
        ------
        AuditError
            The database cannot be read.
        """
        folder = None if output is None else str(Path(output).resolve())
        query = _listing(_verifications, "verified_at", since, output=folder, operator=operator)
        return self._read(query, _verification_record)

    def subjects(self) -> list[SubjectRecord]:
        """The tracking sheet.

        Returns
        -------
        list of SubjectRecord
            One record per subject, by pseudonym.

        Raises
        ------
        AuditError
            The database cannot be read.
        """
        query = sa.select(_subjects).order_by(_subjects.c.pseudonym)
        return self._read(query, _subject_record)

    def subject(self, pseudonym: str) -> SubjectRecord | None:
        """One subject's row of the tracking sheet.

        Parameters
        ----------
        pseudonym : str
            The subject.

        Returns
        -------
        SubjectRecord or None
            The row, or None for a subject the audit trail does not know.

        Raises
        ------
        AuditError
            The database cannot be read.
        """
        found = self._read(
            sa.select(_subjects).where(_subjects.c.pseudonym == pseudonym), _subject_record
        )
        return found[0] if found else None

    def qc_events(self, pseudonym: str | None = None) -> list[QcEvent]:
        """The history of QC statuses, oldest first.

        Parameters
        ----------
        pseudonym : str, optional
            Only this subject's.

        Returns
        -------
        list of QcEvent
            The changes of QC status.

        Raises
        ------
        AuditError
            The database cannot be read.
        """
        query = _listing(_qc_events, pseudonym=pseudonym)
        return self._read(query, partial(_record, QcEvent))

    def subject_counts(self) -> dict[str, dict[Outcome, int]]:
        """Per subject, how many inputs had each outcome (an input recorded by several runs,
        by its bytes, counts once).

        Returns
        -------
        dict of str to dict of Outcome to int
            Pseudonym -> outcome -> inputs.

        Raises
        ------
        AuditError
            The database cannot be read.
        """
        identity = sa.func.coalesce(_files.c.input_sha256, _files.c.input_path)
        query = (
            sa.select(_files.c.subject, _files.c.outcome, sa.func.count(sa.distinct(identity)))
            .where(_files.c.subject.is_not(None))
            .group_by(_files.c.subject, _files.c.outcome)
        )
        counts: dict[str, dict[Outcome, int]] = {}
        with self._transaction() as conn:
            for subject, outcome, count in conn.execute(query):
                counts.setdefault(subject, {})[Outcome(outcome)] = int(count)
        return counts

    def subject_operators(self, pseudonym: str) -> set[str]:
        """Who ran the de-identification of a subject: the operators of every run that
        wrote one of its files (the four-eyes rule keeps them from signing it off).

        Parameters
        ----------
        pseudonym : str
            The subject.

        Returns
        -------
        set of str
            The operators.

        Raises
        ------
        AuditError
            The database cannot be read.
        """
        with self._transaction() as conn:
            return deidentifiers(conn, pseudonym)
