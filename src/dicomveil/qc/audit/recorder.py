"""A batch run recording itself in the audit trail: :class:`AuditRecorder`, whose instances
are :func:`dicomveil.run` progress callbacks::

    with AuditTrail.open("audit.sqlite") as trail, AuditRecorder(trail, config) as recorder:
        summary = run(inputs, config, progress=recorder)

or, with :func:`recording`, the same when an audit database is given and nothing otherwise.
"""

from __future__ import annotations

import contextlib
import hashlib
import zipfile
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from dicomveil.errors import AuditError
from dicomveil.qc.audit.trail import AuditTrail
from dicomveil.qc.statuses import RunStatus
from dicomveil.runs.batch import FileResult, Outcome, RunConfig, Task

_CHUNK: Final = 1 << 20


def input_sha256(task: Task) -> str | None:
    """SHA-256 of an input's bytes (a zip member's own bytes), streamed.

    Parameters
    ----------
    task : Task
        The input: a file, or a member of a zip archive.

    Returns
    -------
    str or None
        The hexadecimal digest, or None when the input cannot be read.
    """
    digest = hashlib.sha256()
    try:
        if task.member is None:
            with task.path.open("rb") as fh:
                while chunk := fh.read(_CHUNK):
                    digest.update(chunk)
        else:
            with zipfile.ZipFile(task.path) as archive, task.open_member(archive) as fh:
                while chunk := fh.read(_CHUNK):
                    digest.update(chunk)
    except (OSError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError):
        return None
    return digest.hexdigest()


class AuditRecorder:
    """Records one run: ``with`` starts it, each call records a :class:`FileResult` (use the
    recorder as :func:`dicomveil.run`'s ``progress``), leaving the block finishes it, or marks
    it interrupted when the block raised.

    Parameters
    ----------
    trail : AuditTrail
        The audit trail to record into.
    config : RunConfig
        The run's configuration.
    operator : str, optional
        Who runs it (default: the OS user name).
    options : Mapping[str, Any], optional
        More settings to store with the run's options.

    Raises
    ------
    AuditError
        From the block's start, a call or its end: the database cannot be written (the end
        of a block that raised hides no error of its own).
    """

    def __init__(
        self,
        trail: AuditTrail,
        config: RunConfig,
        *,
        operator: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.trail = trail
        self._config = config
        self._operator = operator
        self._options = options
        self._counts: Counter[Outcome] = Counter()
        self._run_id: int | None = None

    @property
    def run_id(self) -> int:
        """The run's id in the audit trail.

        Returns
        -------
        int
            The id :meth:`AuditTrail.start_run` gave.

        Raises
        ------
        AuditError
            The run has not started (the recorder is used outside a ``with`` block).
        """
        if self._run_id is None:
            raise AuditError("the run has not started: use the recorder in a with block")
        return self._run_id

    def __enter__(self) -> Self:
        self._run_id = self.trail.start_run(
            self._config, operator=self._operator, options=self._options
        )
        return self

    def __call__(self, result: FileResult) -> None:
        self.trail.record_file(self.run_id, result, input_sha256(result.task))
        self._counts[result.outcome] += 1

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._run_id is None:
            return
        if exc_type is None:
            with self.trail._transaction() as conn:
                self.trail._end_run(conn, self._run_id, self._counts, RunStatus.FINISHED)
        else:
            with contextlib.suppress(AuditError):  # do not hide the error that stopped the run
                self.trail.interrupt_run(self._run_id)


@contextlib.contextmanager
def recording(
    audit: str | Path | None,
    config: RunConfig,
    *,
    operator: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> Iterator[AuditRecorder | None]:
    """An :class:`AuditRecorder` on the database ``audit`` for the block, or None without one.

    Parameters
    ----------
    audit : str or pathlib.Path or None
        The audit database (an SQLite file or a ``postgresql://`` URL), or None.
    config, operator, options
        As for :class:`AuditRecorder`.

    Yields
    ------
    AuditRecorder or None
        The recorder to give :func:`dicomveil.run` as ``progress``; None without ``audit``.

    Raises
    ------
    AuditError
        The database cannot be opened or written.
    """
    if audit is None:
        yield None
        return
    with (
        AuditTrail.open(audit) as trail,
        AuditRecorder(trail, config, operator=operator, options=options) as recorder,
    ):
        yield recorder
