"""The run journal: what a run has done, so that ``dicomveil run --resume`` skips it.

The journal is an SQLite file in the run's state folder, outside the shareable output. It
records, per input, a keyed identity (an HMAC of the input's path under the run's key: the
path itself, which may carry a patient's name, is never stored), the input's size and
modification time, its outcome, and, for a written input, a keyed hash of its output's path
(so that an input of the same SOP Instance UID is recognised across a resume). Its ``meta``
table holds the key's fingerprint and a digest of everything that decides the output bytes
(profile, layout, crosswalk, pixel settings, the day). A journal of another key or other
settings is emptied when opened: every input is done again.

Entries are committed in batches, after the output is in place: a run killed at any moment
loses at most the entries of its last batch, whose inputs a resumed run simply does again
(the output is the same bytes). Nothing in the journal is a value read from a file.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from dicomveil.errors import DicomveilError

if TYPE_CHECKING:
    from dicomveil.identity.keys import Key
    from dicomveil.runs.batch import FileResult, Task

FORMAT = "dicomveil-journal/2"
JOURNAL_NAME = "journal.sqlite"
_COMMIT_EVERY = 256  # entries
_COMMIT_SECONDS = 1.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS inputs (
    id TEXT PRIMARY KEY,        -- keyed hash of the input's path (never the path)
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    outcome TEXT NOT NULL,      -- written, withheld, skipped, failed
    output TEXT,                -- keyed hash of the output's path, for a written input
    written TEXT,               -- the output's path in the output folder (de-identified)
    instance TEXT               -- keyed hash of a written input's SOP Instance UID
);
"""
_INDEXES = """
CREATE INDEX IF NOT EXISTS inputs_output ON inputs (output);
CREATE INDEX IF NOT EXISTS inputs_instance ON inputs (instance);
"""


class JournalError(DicomveilError):
    """The journal cannot be opened or written."""


def default_state_dir(output: Path) -> Path:
    """The state folder of an output folder: ``$XDG_STATE_HOME/dicomveil/runs/<hash>``
    (``~/.local/state`` without it), one per output folder.

    Parameters
    ----------
    output : pathlib.Path
        The run's output folder.

    Returns
    -------
    pathlib.Path
        Its state folder (not created here).
    """
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    digest = hashlib.sha256(str(output.resolve()).encode("utf-8", "surrogateescape"))
    return Path(base) / "dicomveil" / "runs" / digest.hexdigest()[:20]


class Journal:
    """The run journal in ``folder`` (see the module's description).

    Parameters
    ----------
    folder : pathlib.Path
        The state folder (made, mode 0700).
    key : Key
        The run's key: input and output identities are keyed hashes under it.
    settings : str
        A digest of everything that decides the output bytes; a journal with another is
        emptied.
    resume : bool
        Keep the entries of earlier runs (``--resume``); False empties the journal.

    Raises
    ------
    JournalError
        The folder or the database cannot be made, opened or written.
    """

    def __init__(
        self, folder: Path, key: Key, settings: str, *, resume: bool, output: Path | None = None
    ) -> None:
        self.path = folder / JOURNAL_NAME
        self.output = output  # the output folder: a written input's file must still be there
        self._secret = hmac.new(key.secret, b"dicomveil journal", hashlib.sha256).digest()
        self.skipped = 0  # inputs skipped as done by an earlier run
        self.before_commit: Callable[[], None] | None = None  # the maps', made durable first
        self.earlier = False  # entries of an earlier run kept (a resume): worth looking up
        self.reset_reason: str | None = None  # why earlier entries were dropped, if they were
        self._pending = 0
        self._last_commit = time.monotonic()
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA cache_size=-8192")  # 8 MB: a million entries stay quick
            self._db.executescript(_SCHEMA)
            self._start(key.fingerprint, settings, resume)
            self._db.executescript(_INDEXES)  # on the table of this format
            self._db.execute("BEGIN")
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(f"cannot open the run journal {self.path} ({exc})") from None

    def _start(self, fingerprint: str, settings: str, resume: bool) -> None:
        meta = dict(self._db.execute("SELECT name, value FROM meta").fetchall())
        wanted = {"format": FORMAT, "key": fingerprint, "settings": settings}
        has_entries = self._db.execute("SELECT 1 FROM inputs LIMIT 1").fetchone() is not None
        if resume and has_entries and meta != wanted:
            self.reset_reason = (
                "another key" if meta.get("key") != fingerprint else "other settings"
            )
        if meta.get("format", FORMAT) != FORMAT:  # an earlier version's: its table too
            self._db.execute("DROP TABLE inputs")
            self._db.executescript(_SCHEMA)
        if not resume or meta != wanted:
            self._db.execute("DELETE FROM inputs")
            self._db.execute("DELETE FROM meta")
            self._db.executemany("INSERT INTO meta VALUES (?, ?)", sorted(wanted.items()))
        else:
            self.earlier = has_entries

    # ---------------------------------------------------------------------------------------
    def _hash(self, kind: bytes, text: str) -> str:
        message = kind + b"\0" + text.encode("utf-8", "surrogateescape")
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:32]

    def input_id(self, task: Task) -> str:
        """The keyed identity of an input (its path, and member within an archive)."""
        return self._hash(b"input", task.source)

    def output_id(self, output: Path) -> str:
        """The keyed identity of an output file's path."""
        return self._hash(b"output", str(output))

    @staticmethod
    def _stat(task: Task) -> tuple[int, int] | None:
        return input_stat(task.path)

    def done(self, task: Task) -> bool:
        """Whether an earlier run finished ``task`` (the same input, unchanged since) with
        an outcome that a new attempt would repeat: written, withheld or skipped. Failed
        inputs are tried again.

        Parameters
        ----------
        task : Task
            The input.

        Returns
        -------
        bool
            True when the input can be skipped (counted in :attr:`skipped`).
        """
        stat = self._stat(task)
        if stat is None:
            return False
        row = self._db.execute(
            "SELECT size, mtime_ns, outcome, written FROM inputs WHERE id = ?",
            (self.input_id(task),),
        ).fetchone()
        if row is None or (row[0], row[1]) != stat or row[2] == "failed":
            return False
        written = row[3] if row[2] == "written" and self.output is not None else None
        if written is not None and not (self.output / written).is_file():
            return False  # its output was removed, or this is another output folder
        self.skipped += 1
        return True

    def writer_of(self, output: Path, task: Task) -> str | None:
        """The id of another input than ``task`` recorded as having written ``output``."""
        row = self._db.execute(
            "SELECT id FROM inputs WHERE output = ? AND outcome = 'written' AND id != ? LIMIT 1",
            (self.output_id(output), self.input_id(task)),
        ).fetchone()
        return None if row is None else str(row[0])

    def superseded(self, result: FileResult) -> Path | None:
        """The output an earlier run wrote for this input, when this result replaces it by
        another file (the input changed: its UIDs or patient) and no other input's entry
        names it: a file to remove, else the output would hold the old one beside the new.
        None at once in a run that kept no earlier entries (this run's own name no other
        file of the input)."""
        if self.output is None or not self.earlier:
            return None
        row = self._db.execute(
            "SELECT written FROM inputs WHERE id = ? AND outcome = 'written'",
            (self.input_id(result.task),),
        ).fetchone()
        if row is None or row[0] is None:
            return None
        old = self.output / row[0]
        new = result.output if result.outcome.value == "written" else None
        if new is not None and _inside(new, self.output) == row[0]:
            return None  # the same file, written again
        other = self._db.execute(
            "SELECT 1 FROM inputs WHERE written = ? AND outcome = 'written' AND id != ? LIMIT 1",
            (row[0], self.input_id(result.task)),
        ).fetchone()
        return None if other is not None else old

    def instance_writer(self, uid: str, task: Task) -> str | None:
        """The id of another input than ``task`` recorded as having written an instance of
        the SOP Instance UID ``uid`` (an earlier run's: a resumed run skips it)."""
        row = self._db.execute(
            "SELECT id FROM inputs WHERE instance = ? AND outcome = 'written' AND id != ? LIMIT 1",
            (self._hash(b"instance", uid), self.input_id(task)),
        ).fetchone()
        return None if row is None else str(row[0])

    def record(self, result: FileResult) -> None:
        """Record one input's outcome (committed with its batch; see :meth:`flush`), with
        its size and time as they were before it was read (:attr:`Task.stat`)."""
        stat = result.task.stat or self._stat(result.task)
        if stat is None:
            return
        output = written = instance = None
        if result.outcome.value == "written" and result.output is not None:
            output = self.output_id(result.output)
            written = _inside(result.output, self.output)
            uid = result.instance_uids[2]
            instance = self._hash(b"instance", uid) if uid else None
        try:
            self._db.execute(
                "INSERT OR REPLACE INTO inputs VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    self.input_id(result.task),
                    stat[0],
                    stat[1],
                    result.outcome.value,
                    output,
                    written,
                    instance,
                ),
            )
        except sqlite3.Error as exc:  # a full disk
            raise JournalError(f"cannot write the run journal {self.path} ({exc})") from None
        self._pending += 1
        now = time.monotonic()
        if self._pending >= _COMMIT_EVERY or now - self._last_commit >= _COMMIT_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Commit the entries recorded so far (after :attr:`before_commit`)."""
        if self.before_commit is not None:
            self.before_commit()
        try:
            self._db.execute("COMMIT")
            self._db.execute("BEGIN")
        except sqlite3.Error as exc:  # a full disk
            raise JournalError(f"cannot write the run journal {self.path} ({exc})") from None
        self._pending = 0
        self._last_commit = time.monotonic()

    def close(self) -> None:
        """Commit (after :attr:`before_commit`) and close."""
        try:
            if self.before_commit is not None:
                self.before_commit()
        except DicomveilError:  # the maps could not be kept: their inputs are not done
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("COMMIT")
        self._db.close()


def _inside(output: Path, folder: Path | None) -> str | None:
    """``output``'s path in ``folder`` (None without one, or outside it)."""
    if folder is None:
        return None
    try:
        return output.relative_to(folder).as_posix()
    except ValueError:
        return None


def input_stat(path: Path) -> tuple[int, int] | None:
    """An input's size and modification time (ns), as the journal compares them; None when
    it cannot be read."""
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_size, found.st_mtime_ns
