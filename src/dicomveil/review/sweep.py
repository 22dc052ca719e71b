"""Check every file of a subject (the subject page checks the first file of each series; a
reviewer who wants certainty about every file asks for this).

Each written file is checked as its own page checks it (:func:`~dicomveil.review.checks.
check_file`), in a background thread, one subject at a time per subject; the verdicts go
into ``review_checks`` with the output's modification time, so that a file changed since
counts as unchecked again. The subject page shows the summary and names the files whose
changes no rule explains.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from dicomveil.qc.audit import AuditTrail, FileRecord, RunRecord
from dicomveil.review.checks import check_file
from dicomveil.review.store import CheckRow, ReviewStore
from dicomveil.review.subjects import input_file, output_file, written_files

__all__ = ["SweepSummary", "Sweeps", "summary"]

LOGGER = logging.getLogger(__name__)
_BATCH: Final = 50  # checks stored at a time


@dataclass
class SweepSummary:
    """What "check every file" found for a subject, as its files are now."""

    files: int = 0
    checked: int = 0  # checked since the output was last written
    ok: int = 0
    unknown: int = 0  # cannot tell (no original here, a profile that cannot be rebuilt)
    unexplained: list[tuple[int, str]] = field(default_factory=list)  # file id, verdict
    running: bool = False


class Sweeps:
    """The background checks under way, one per subject at most."""

    def __init__(self) -> None:
        self._running: set[str] = set()
        self._lock = threading.Lock()

    def running(self, pseudonym: str) -> bool:
        """Whether the subject's files are being checked.

        Parameters
        ----------
        pseudonym : str
            The subject.

        Returns
        -------
        bool
            True while its check runs.
        """
        with self._lock:
            return pseudonym in self._running

    def start(self, trail: AuditTrail, store: ReviewStore, pseudonym: str) -> bool:
        """Start checking every written file of a subject (unless it is under way).

        Parameters
        ----------
        trail : AuditTrail
            The audit trail.
        store : ReviewStore
            Where the checks go.
        pseudonym : str
            The subject.

        Returns
        -------
        bool
            False when its check was already running.
        """
        with self._lock:
            if pseudonym in self._running:
                return False
            self._running.add(pseudonym)
        thread = threading.Thread(
            target=self._sweep, args=(trail, store, pseudonym), name="review-sweep", daemon=True
        )
        thread.start()
        return True

    def _sweep(self, trail: AuditTrail, store: ReviewStore, pseudonym: str) -> None:
        try:
            batch: list[CheckRow] = []
            for record, run in written_files(trail, pseudonym):
                batch.append(_checked(record, run))
                if len(batch) >= _BATCH:
                    store.set_checks(batch)
                    batch = []
            store.set_checks(batch)
        except Exception as exc:  # logged by its type: the page shows what was stored
            LOGGER.warning("checking every file failed: %s", type(exc).__name__)
        finally:
            with self._lock:
                self._running.discard(pseudonym)


def _checked(record: FileRecord, run: RunRecord) -> CheckRow:
    output = output_file(run, record)
    if output is None:
        return CheckRow(record.id, 0.0, None, "cannot tell: the output cannot be read")
    found = check_file(run, input_file(run, record), output)
    return CheckRow(record.id, _mtime(output), found.ok, found.verdict)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def summary(
    store: ReviewStore, files: Iterable[tuple[FileRecord, RunRecord]], running: bool
) -> SweepSummary:
    """What the stored checks say of these files now.

    Parameters
    ----------
    store : ReviewStore
        Where the checks are.
    files : Iterable of (FileRecord, RunRecord)
        The subject's written files and their runs.
    running : bool
        Whether its check is under way.

    Returns
    -------
    SweepSummary
        The counts, and the files with changes no rule explains.
    """
    pairs = list(files)
    stored = store.checks(record.id for record, _run in pairs)
    result = SweepSummary(files=len(pairs), running=running)
    for record, run in pairs:
        row = stored.get(record.id)
        if row is None:
            continue
        output = output_file(run, record)
        if output is not None and _mtime(output) != row.output_mtime:
            continue  # written again since: not checked as it is
        result.checked += 1
        if row.ok is True:
            result.ok += 1
        elif row.ok is None:
            result.unknown += 1
        else:
            result.unexplained.append((record.id, row.verdict))
    return result
