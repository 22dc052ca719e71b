"""Writing to the audit trail: runs and their files, verifications, QC decisions.

Each record is committed as it is made: a crash leaves a consistent database, whose runs stay
``running`` until the next :meth:`AuditWriter.start_run` on the same host finds their process
gone and marks them ``interrupted``.
"""

from __future__ import annotations

import datetime as _dt
import os
import socket
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from dicomveil._version import __version__
from dicomveil.errors import AuditError
from dicomveil.qc.audit.records import SubjectRecord, _now, _who
from dicomveil.qc.audit.store import (
    AuditStore,
    _files,
    _qc_events,
    _reidentifications,
    _risk_assessments,
    _runs,
    _subject_record,
    _subjects,
    _verifications,
    deidentifiers,
)
from dicomveil.qc.statuses import QcStatus, RunStatus
from dicomveil.runs.batch import FileResult, Outcome, RunConfig, RunSummary
from dicomveil.standard.tables import EDITION

_VERDICTS: Final = {"pass": QcStatus.PASSED, "passed": QcStatus.PASSED}
_VERDICTS.update(dict.fromkeys(("findings", "fail", "failed"), QcStatus.FAILED))


@dataclass
class _RunInfo:
    operator: str
    started_at: _dt.datetime
    output: Path


class AuditWriter(AuditStore):
    """What the audit trail writes: the base of :class:`~dicomveil.qc.audit.AuditTrail`, which
    is what callers open. The constructor's parameters are :class:`AuditStore`'s.
    """

    def __init__(self, engine: sa.Engine, location: str) -> None:
        super().__init__(engine, location)
        self._runs_cache: dict[int, _RunInfo] = {}

    # ---------------------------------------------------------------- runs and files

    def start_run(
        self,
        config: RunConfig,
        *,
        operator: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> int:
        """Record the start of a run.

        Runs of this host still marked ``running`` whose process is gone are marked
        ``interrupted`` first (with the counts of the files they recorded).

        Parameters
        ----------
        config : RunConfig
            The run's configuration: profile, key (its fingerprint is stored), output folder,
            layout, maps and workers.
        operator : str, optional
            Who runs it (default: the OS user name).
        options : Mapping[str, Any], optional
            More settings to store with the run's options.

        Returns
        -------
        int
            The run's id.

        Raises
        ------
        AuditError
            The database cannot be written.
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
            "redact_paths": config.redact_paths,
            "release_gate": config.verifying,
            "workers": config.workers,
            # Where relative input paths are relative to, and the profile's file (the review
            # application finds the originals and the rules with them); neither with
            # --redact-paths.
            "cwd": None if config.redact_paths else str(Path.cwd()),
            "profile_source": None if config.redact_paths else (profile.origin or None),
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
        """Record one input's outcome (committed at once) and update its subject's row.

        Parameters
        ----------
        run_id : int
            The run (:meth:`start_run`).
        result : FileResult
            What became of the input.
        input_sha256 : str or None
            SHA-256 of the input's bytes (:func:`~dicomveil.qc.audit.input_sha256`).

        Raises
        ------
        AuditError
            There is no such run, or the database cannot be written.
        """
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
                self._deidentified(conn, subject, run_id, info, known_only=False)
            elif subject is not None and result.outcome is Outcome.WITHHELD:  # one to review
                self._deidentified(conn, subject, run_id, info, known_only=True)

    def _deidentified(
        self, conn: Connection, subject: str, run_id: int, info: _RunInfo, *, known_only: bool
    ) -> None:
        """The subject's row (made when missing); de-identified by this run if not known_only."""
        row = conn.execute(
            sa.select(_subjects).where(_subjects.c.pseudonym == subject)
        ).one_or_none()
        if row is not None and known_only:
            return
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
            _add_qc_event(
                conn,
                subject,
                _now(),
                info.operator,
                QcStatus.PENDING,
                f"new output from run {run_id}",
            )

    def finish_run(self, run_id: int, summary: RunSummary) -> None:
        """Mark a run finished, with the counts of its summary.

        Parameters
        ----------
        run_id : int
            The run (:meth:`start_run`).
        summary : RunSummary
            What the run did.

        Raises
        ------
        AuditError
            The database cannot be written.
        """
        counts = Counter(summary.counts)
        with self._transaction() as conn:
            self._end_run(conn, run_id, counts, RunStatus.FINISHED)

    def interrupt_run(self, run_id: int) -> None:
        """Mark a run interrupted, with the counts of the files it recorded.

        Parameters
        ----------
        run_id : int
            The run (:meth:`start_run`).

        Raises
        ------
        AuditError
            The database cannot be written.
        """
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

    def record_reidentification(
        self, who: str | None, output: str, certificate: str, restored: int, refused: int
    ) -> None:
        """Record that files were re-identified (``dicomveil reidentify``).

        Parameters
        ----------
        who : str or None
            Who (None: the OS user name).
        output : str
            Where the re-identified files went.
        certificate : str
            The recipient certificate's subject ("" when none was given).
        restored, refused : int
            How many files were re-identified and refused.

        Raises
        ------
        AuditError
            The database cannot be written.
        """
        with self._transaction() as conn:
            conn.execute(
                _reidentifications.insert().values(
                    operator=_who(who), at=_now(), host=socket.gethostname(),
                    dicomveil_version=__version__, output=output, certificate=certificate,
                    restored=restored, refused=refused,
                )
            )  # fmt: skip

    def record_risk(self, output: str, report: Mapping[str, Any], who: str | None = None) -> None:
        """Record a release's risk assessment (``dicomveil risk --audit``).

        Parameters
        ----------
        output : str
            The release assessed.
        report : Mapping
            :meth:`dicomveil.qc.risk.RiskReport.as_dict` (counts, no values).
        who : str or None
            Who (None: the OS user name).

        Raises
        ------
        AuditError
            The database cannot be written.
        """
        with self._transaction() as conn:
            conn.execute(
                _risk_assessments.insert().values(
                    operator=_who(who), at=_now(), output=output,
                    subjects=int(report["subjects"]), k=int(report["k"]),
                    wanted_k=int(report["wanted_k"]), below_k=int(report["below_k"]),
                    report=dict(report),
                )
            )  # fmt: skip

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
        """Record a check of an output folder.

        The subjects checked are ``subjects`` or else those that runs wrote into ``output``;
        each gets checked by/when, and QC status ``passed`` for a result ``pass``/``passed``
        and ``failed`` for ``findings``/``fail``/``failed`` (:class:`dicomveil.qc.verify.Verdict`'s
        words); any other result (``could-not-check``) leaves the status as it was.

        Parameters
        ----------
        output : str or pathlib.Path
            The folder checked.
        who : str or None
            Who checked (None: the OS user name).
        result : str
            The verdict.
        findings : Sequence[Mapping[str, Any]]
            The findings: they must name tags, files and reasons, never values read from
            files.
        subjects : Iterable[str], optional
            The pseudonyms of the subjects checked.

        Returns
        -------
        int
            The verification's id.

        Raises
        ------
        AuditError
            The database cannot be written.
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
                if operator in deidentifiers(conn, pseudonym):
                    continue  # recorded, but the four-eyes rule: not their QC decision
                values: dict[str, Any] = {"verified_by": operator, "verified_at": at}
                if status is not None:
                    values["qc_status"] = status
                current = conn.execute(
                    _subjects.update()
                    .where(_subjects.c.pseudonym == pseudonym)
                    .values(**values)
                    .returning(_subjects.c.qc_status)
                ).scalar_one()
                notes = f"verification: {result}, {len(items)} finding(s)"
                _add_qc_event(conn, pseudonym, at, operator, current, notes, verification_id)
        return verification_id

    def set_qc(
        self,
        pseudonym: str,
        status: QcStatus | str,
        who: str | None = None,
        notes: str | None = None,
    ) -> SubjectRecord:
        """Set a subject's QC status (and notes, unless None).

        A decision of passed or failed also makes ``who`` the subject's checker.

        Parameters
        ----------
        pseudonym : str
            The subject.
        status : QcStatus or str
            ``pending``, ``passed`` or ``failed``.
        who : str, optional
            Who decides (default: the OS user name).
        notes : str, optional
            Notes, replacing the old (None: keep the old).

        Returns
        -------
        SubjectRecord
            The subject's row as it now is.

        Raises
        ------
        AuditError
            The status is not one of the three, the subject is unknown, or the database
            cannot be written.
        """
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
            if new is not QcStatus.PENDING and operator in deidentifiers(conn, pseudonym):
                raise AuditError(f"four-eyes rule: {operator} de-identified {pseudonym}")
            values: dict[str, Any] = {"qc_status": new}
            if notes is not None:
                values["notes"] = notes
            if new is not QcStatus.PENDING:
                values.update(verified_by=operator, verified_at=at)
            conn.execute(
                _subjects.update().where(_subjects.c.pseudonym == pseudonym).values(**values)
            )
            _add_qc_event(conn, pseudonym, at, operator, new, row.notes if notes is None else notes)
            updated = conn.execute(
                sa.select(_subjects).where(_subjects.c.pseudonym == pseudonym)
            ).one()
        return _subject_record(updated)

    def set_notes(self, pseudonym: str, notes: str) -> SubjectRecord:
        """Replace a subject's notes (its QC status and checker stay as they are).

        Parameters
        ----------
        pseudonym : str
            The subject.
        notes : str
            The new notes.

        Returns
        -------
        SubjectRecord
            The subject's row as it now is.

        Raises
        ------
        AuditError
            The subject is unknown, or the database cannot be written.
        """
        with self._transaction() as conn:
            updated = conn.execute(
                _subjects.update()
                .where(_subjects.c.pseudonym == pseudonym)
                .values(notes=notes)
                .returning(*_subjects.c)
            ).one_or_none()
            if updated is None:
                raise AuditError(f"no subject {pseudonym} in the audit database")
        return _subject_record(updated)


def _add_qc_event(
    conn: Connection,
    pseudonym: str,
    at: _dt.datetime,
    who: str,
    status: QcStatus,
    notes: str,
    verification_id: int | None = None,
) -> None:
    """A row of ``qc_events``: a subject's QC status changed (by a verification, if given)."""
    row = {
        "pseudonym": pseudonym,
        "at": at,
        "who": who,
        "status": status,
        "notes": notes,
        "verification_id": verification_id,
    }
    conn.execute(_qc_events.insert(), row)


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
