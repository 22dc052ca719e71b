"""The records of the audit trail, as its readers get them, and what every part of it shares.

Nothing here loads the database layer (SQLAlchemy): the sheets and the command line use these
names without it.
"""

from __future__ import annotations

import datetime as _dt
import getpass
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dicomveil.qc.statuses import QcStatus, RunStatus
from dicomveil.runs.batch import Outcome


@dataclass(frozen=True)
class RunRecord:
    """One row of ``runs``: one batch run.

    Its ``id`` is the number :meth:`AuditTrail.start_run` returned, which ``--run`` takes.

    Attributes
    ----------
    operator : str
        Who ran it (the OS user or ``--operator``).
    started_at, finished_at : datetime.datetime
        When it started and finished (aware, UTC); ``finished_at`` is None unless finished.
    host : str
        The host it ran on.
    pid : int
        Its process ID on that host.
    version : str
        The dicomveil version that ran it.
    profile_name, profile_digest : str
        The profile's name and digest (:attr:`dicomveil.profiles.Profile.digest`).
    edition : str
        The PS3.15 edition of the tables.
    options : Mapping[str, Any]
        The options of the run (profile options, layout, workers, ...).
    key_fingerprint : str
        The key's fingerprint (never the key).
    output : str
        The output folder (resolved).
    written, withheld, skipped, failed : int
        How many files had each outcome.
    status : RunStatus
        ``running``, ``finished`` or ``interrupted``.
    """

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
    """One row of ``files``: one input of a run and what became of it.

    Numbered (``id``) in the order recorded, as :meth:`AuditTrail.files` lists them.

    Attributes
    ----------
    run_id : int
        The run that recorded it.
    input_sha256 : str or None
        SHA-256 of the input's bytes; None when they could not be read.
    input_path : str
        The input as the user gave it.
    output_path : str or None
        The output file, relative to the run's output folder; None unless written.
    outcome : Outcome
        Written, withheld, skipped or failed.
    reason : str
        Why it was withheld, skipped or failed.
    subject : str or None
        The subject's pseudonym.
    recorded_at : datetime.datetime
        When it was recorded (aware, UTC).
    """

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
    """One row of ``verifications``: one check of an output folder.

    Its ``id`` is the number :meth:`AuditTrail.record_verification` returned; the QC events
    it caused carry it.

    Attributes
    ----------
    operator : str
        Who checked.
    verified_at : datetime.datetime
        When (aware, UTC).
    output : str
        The folder checked (resolved).
    result : str
        The verdict (``pass``, ``findings``, ``could-not-check``, ...).
    findings_count : int
        How many findings the check reported.
    findings : list of dict
        The findings: tags, files and reasons, never values read from files.
    """

    id: int
    operator: str
    verified_at: _dt.datetime
    output: str
    result: str
    findings_count: int
    findings: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class SubjectRecord:
    """One row of ``subjects``: the tracking sheet's line of one subject.

    Keyed by pseudonym; runs, verifications and :meth:`AuditTrail.set_qc` update it.

    Attributes
    ----------
    pseudonym : str
        The subject's pseudonym.
    deidentified_by, deidentified_at, deidentified_run
        Who de-identified the subject's files, when, in which run (the latest run).
    verified_by, verified_at
        Who checked them and when (the latest verification or QC decision).
    qc_status : QcStatus
        ``pending``, ``passed`` or ``failed``.
    notes : str
        The notes of the latest QC decision.
    """

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
    """One row of ``qc_events``: one change of a subject's QC status.

    Numbered (``id``) in the order of the changes, as :meth:`AuditTrail.qc_events` lists
    them.

    Attributes
    ----------
    pseudonym : str
        The subject.
    at : datetime.datetime
        When (aware, UTC).
    who : str
        Who changed it.
    status : QcStatus
        The new status.
    notes : str
        The notes that went with it.
    verification_id : int or None
        The verification that set it, if one did.
    """

    id: int
    pseudonym: str
    at: _dt.datetime
    who: str
    status: QcStatus
    notes: str
    verification_id: int | None


def _utc(value: _dt.datetime) -> _dt.datetime:
    """An aware datetime in UTC; a naive one is taken to be in UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=_dt.UTC)
    return value.astimezone(_dt.UTC)


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def current_user() -> str:
    """The OS user name.

    Returns
    -------
    str
        The name of the user running the process, or ``unknown`` where the system cannot
        tell.
    """
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def _who(operator: str | None) -> str:
    return operator.strip() if operator and operator.strip() else current_user()
