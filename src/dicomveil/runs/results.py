"""What a run reports: each input's :class:`FileResult`, collected into a :class:`RunSummary`.

A run's memory does not grow with its number of inputs: the summary counts outcomes and
reasons, and keeps every result only when asked (``keep``, the library's default; the command
line streams them instead). The collector recognises two inputs of one SOP Instance UID (one
output path) by a set of the outputs written so far that moves to an SQLite file when it
outgrows a bounded size, or by the run journal (:mod:`dicomveil.runs.journal`) when there is
one.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import shutil
import sqlite3
import tempfile
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from dicomveil.runs.journal import Journal
    from dicomveil.runs.maps import MapStore

SEEN_IN_MEMORY = 10_000
"""Outputs remembered in memory before the collector's set moves to an SQLite file."""


class Outcome(StrEnum):
    WRITTEN = "written"
    WITHHELD = "withheld"
    SKIPPED = "skipped"
    FAILED = "failed"


def printable(text: str) -> str:
    """``text`` (a path) as any UTF-8 file, database or terminal takes it: the bytes of a
    name that are not UTF-8 (a Latin-1 name, which Python holds as surrogates) and control
    characters (a newline, a terminal's escape) written as a backslash, x and two hex
    digits."""
    if text.isprintable():
        return text
    raw = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in raw)


@dataclass(frozen=True)
class Task:
    """One input: a file on disk, or a member of a zip archive."""

    path: Path
    member: str | None = None
    skip: str | None = None  # why it is not read (a FIFO, a device, a link out of the input)
    index: int | None = None  # the member's entry in the archive, when its name repeats
    label: str | None = field(default=None, compare=False)  # --redact-paths: its keyed label
    # (size, mtime_ns) when the input was found, before it was read: what the run journal
    # records, so that a file changed while it was read is done again on a resume
    stat: tuple[int, int] | None = field(default=None, compare=False)

    @property
    def source(self) -> str:
        """The input by its path: ``path``, or ``path!member`` (``#n`` when the archive
        holds several members of that name)."""
        if not self.member:
            return str(self.path)
        entry = f" #{self.index}" if self.index is not None else ""
        return f"{self.path}!{self.member}{entry}"

    @property
    def display(self) -> str:
        """The input as messages, reports and the audit trail name it: its label with
        ``--redact-paths`` (see :mod:`dicomveil.runs.maps`), else its :attr:`source`, as
        :func:`printable` writes it."""
        return printable(self.label or self.source)

    def open_member(self, archive: zipfile.ZipFile) -> IO[bytes]:
        """The member's bytes, from the archive it is in (by entry when its name repeats)."""
        assert self.member is not None
        info = archive.infolist()[self.index] if self.index is not None else self.member
        return archive.open(info)


@dataclass
class FileResult:
    task: Task
    outcome: Outcome
    reason: str = ""
    output: Path | None = None
    size: int = 0
    uid_map: dict[str, str] = field(default_factory=dict)
    instance_uids: tuple[str, str, str] = field(default=("", "", ""), repr=False)
    patient_id: str = field(default="", repr=False)
    pseudonym: str = ""
    date_offset_days: int | None = None


@dataclass
class RunSummary:
    """A run's outcomes: counts and reasons always, every result only with ``keep``.

    Attributes
    ----------
    results : list of FileResult
        Every input's result, in the order they arrived (empty unless ``keep``).
    keep : bool
        Whether :attr:`results` keeps every result (memory grows with the inputs).
    counts : collections.Counter
        Inputs per outcome.
    resumed : int
        Inputs skipped because an earlier run finished them (``--resume``).
    total : int or None
        Inputs found, once the walk of the inputs has finished.
    """

    results: list[FileResult] = field(default_factory=list)
    keep: bool = True
    counts: Counter[Outcome] = field(default_factory=Counter)
    resumed: int = 0
    total: int | None = None
    _reasons: dict[Outcome, Counter[str]] = field(default_factory=dict, repr=False)

    def add(self, result: FileResult) -> None:
        """Count one result (and keep it, with :attr:`keep`).

        Parameters
        ----------
        result : FileResult
            The input's result.
        """
        self.counts[result.outcome] += 1
        if result.outcome is not Outcome.WRITTEN:
            self._reasons.setdefault(result.outcome, Counter())[result.reason] += 1
        if self.keep:
            self.results.append(result)

    def count(self, outcome: Outcome) -> int:
        """How many inputs came to ``outcome``.

        Parameters
        ----------
        outcome : Outcome
            Written, withheld, skipped or failed.

        Returns
        -------
        int
            The number of inputs.
        """
        return self.counts[outcome]

    def reasons(self, outcome: Outcome) -> Counter[str]:
        """The reasons of the inputs that came to ``outcome``, counted.

        Parameters
        ----------
        outcome : Outcome
            Withheld, skipped or failed (written files have notes, if any).

        Returns
        -------
        collections.Counter of str
            Reason -> number of inputs (reasons never hold values of the files).
        """
        return Counter(self._reasons.get(outcome, {}))

    def demote(self, task: Task, reason: str) -> None:
        """Count an input reported written as failed after all (its output was replaced).

        Parameters
        ----------
        task : Task
            The input.
        reason : str
            Why it failed.
        """
        self.counts[Outcome.WRITTEN] -= 1
        self.counts[Outcome.FAILED] += 1
        self._reasons.setdefault(Outcome.FAILED, Counter())[reason] += 1
        for result in self.results:
            if result.task == task and result.outcome is Outcome.WRITTEN:
                result.outcome, result.reason = Outcome.FAILED, reason
                break

    @property
    def ok(self) -> bool:
        """Whether no input failed."""
        return self.count(Outcome.FAILED) == 0

    @property
    def written(self) -> list[FileResult]:
        """The written inputs' results (kept results only: see :attr:`keep`)."""
        return [r for r in self.results if r.outcome is Outcome.WRITTEN]


class SeenOutputs:
    """The outputs written so far in a run, each with the input that wrote it.

    The latest ``limit`` outputs (default :data:`SEEN_IN_MEMORY`) are kept in memory with
    their tasks; older ones move to an SQLite file in a temporary folder (removed by
    :meth:`close`) as keyed identities only, ``identify(task)`` (no path, which may carry a
    name, is ever written there); or, when the run journal records them (``journaled``), are
    only forgotten here.
    """

    def __init__(
        self, identify: Callable[[Task], str], limit: int | None = None, *, journaled: bool = False
    ) -> None:
        self.identify = identify
        self.limit = SEEN_IN_MEMORY if limit is None else limit
        self.journaled = journaled
        self._memory: dict[Path | str, Task] = {}
        self._folder: str | None = None
        self._db: sqlite3.Connection | None = None

    def get(self, output: Path | str) -> Task | str | None:
        """The task that wrote ``output`` (in memory), its identity (moved to disk), or None."""
        task = self._memory.get(output)
        if task is not None or self._db is None:
            return task
        row = self._db.execute("SELECT input FROM seen WHERE output = ?", (str(output),)).fetchone()
        return None if row is None else str(row[0])

    def add(self, output: Path | str, task: Task) -> None:
        """Remember that ``task`` wrote ``output`` (a path, or another key of an output)."""
        self._memory[output] = task
        if len(self._memory) > self.limit:
            self._spill(len(self._memory) // 2)

    def discard(self, output: Path | str) -> None:
        """Forget ``output`` again (its writer failed after all)."""
        self._memory.pop(output, None)

    def _spill(self, n: int) -> None:
        oldest = list(itertools.islice(self._memory, n))
        if self.journaled:  # the journal has them: Collector asks it (Journal.writer_of)
            for output in oldest:
                del self._memory[output]
            return
        if self._db is None:
            self._folder = tempfile.mkdtemp(prefix="dicomveil-seen-")
            self._db = sqlite3.connect(Path(self._folder) / "seen.sqlite")
            self._db.execute("PRAGMA journal_mode=OFF")
            self._db.execute("PRAGMA synchronous=OFF")
            self._db.execute("CREATE TABLE seen (output TEXT PRIMARY KEY, input TEXT)")
        self._db.executemany(
            "INSERT OR REPLACE INTO seen VALUES (?, ?)",
            [(str(output), self.identify(self._memory[output])) for output in oldest],
        )
        for output in oldest:
            del self._memory[output]

    def close(self) -> None:
        """Remove the SQLite file, if there is one."""
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None


def remover(root: Path) -> Callable[[Path], None]:
    """What removes an output file of a run into ``root``, and the layout's folders it
    leaves empty (for :meth:`Collector.settle`)."""

    def remove(output: Path) -> None:
        output.unlink(missing_ok=True)
        for folder in output.parents:
            if folder == root or root not in folder.parents:
                break
            try:
                folder.rmdir()
            except OSError:  # not empty
                break

    return remove


def _random_identity() -> Callable[[Task], str]:
    secret = os.urandom(32)

    def identify(task: Task) -> str:
        message = task.source.encode("utf-8", "surrogateescape")
        return hmac.new(secret, message, hashlib.sha256).hexdigest()[:32]

    return identify


class Collector:
    """Adds each result to a summary as it arrives, failing an input whose output another
    input of the run already wrote (two files with one SOP Instance UID), then reports it.

    The failed input's worker may have renamed its file into place after the first one's:
    :attr:`overwritten` holds the tasks whose output must be written again (see
    :func:`dicomveil.runs.batch.run`), so that the file on disk is the input reported
    written. With a ``journal``, the inputs written by an earlier run count too (their
    outputs, to be written again, are in :attr:`journaled`), and each result is recorded.

    Two inputs of one SOP Instance UID whose outputs go to different paths (another
    patient, study or series in the layout) are caught by the instance's new UID: the later
    one fails, and its file is a stray (:attr:`strays`) that :meth:`settle` removes at the
    end of the run, unless an input reported written has that path after all.
    """

    def __init__(
        self,
        summary: RunSummary,
        progress: Callable[[FileResult], None] | None = None,
        label: Callable[[Task], str] | None = None,
        journal: Journal | None = None,
        maps: MapStore | None = None,
    ) -> None:
        self.summary = summary
        self.maps = maps
        self.progress = progress
        self.label = label  # --redact-paths: each input is named by its keyed label
        self.journal = journal
        self.identify = journal.input_id if journal is not None else _random_identity()
        self._seen = SeenOutputs(self.identify, journaled=journal is not None)
        self.overwritten: dict[Path, Task] = {}
        # output -> the identity of the input that wrote it first, when only that is known
        # (an input of an earlier run, or one whose task has moved to disk): found again
        # by walking the inputs (see dicomveil.runs.batch.run)
        self.refind: dict[Path, str] = {}
        # the new SOP Instance UIDs written so far, each with its input
        self._instances = SeenOutputs(_random_identity())
        # output -> the input that failed as a second instance of a UID, whose file it is
        self.strays: dict[Path, Task] = {}

    def __call__(self, result: FileResult) -> None:
        if self.label is not None:
            result.task = replace(result.task, label=self.label(result.task))
        if result.outcome is Outcome.WRITTEN and result.output is not None:
            self._check_duplicate(result, result.output)
            if result.outcome is Outcome.WRITTEN:
                self._check_instance(result, result.output)
        if self.maps is not None:  # first: the journal commits the maps before its entries
            self.maps.add(result)
        if self.journal is not None:
            stale = self.journal.superseded(result)
            if stale is not None:  # a resumed input that changed: its old file goes
                stale.unlink(missing_ok=True)
            self.journal.record(result)
        self.summary.add(result)
        if self.progress is not None:
            self.progress(result)

    def _check_duplicate(self, result: FileResult, output: Path) -> None:
        earlier = self._seen.get(output)
        if isinstance(earlier, Task):
            if earlier == result.task:
                return
            self._fail(result, earlier.display)
            self.overwritten[output] = earlier
            return
        if earlier is None and self.journal is not None:
            earlier = self.journal.writer_of(output, result.task)
        if earlier is not None and earlier != self.identify(result.task):
            self._fail(result, "an input written earlier")
            self.refind[output] = earlier
            return
        self._seen.add(output, result.task)

    def _check_instance(self, result: FileResult, output: Path) -> None:
        """Fail a second input of one new SOP Instance UID written to another path."""
        uid = result.instance_uids[2]
        if not uid:
            return
        earlier = self._instances.get(uid)
        if earlier is None and self.journal is not None and self.journal.earlier:
            # an earlier run's instance, whose input this resumed run skips
            earlier = self.journal.instance_writer(uid, result.task)
        if earlier is None or earlier == result.task:
            self._instances.add(uid, result.task)
            return
        self._fail(result, earlier.display if isinstance(earlier, Task) else "an input")
        self._seen.discard(output)  # this input does not own its path after all
        self.strays[output] = result.task

    def settle(self, remove: Callable[[Path], None]) -> None:
        """At the end of the run: remove each stray file (:attr:`strays`) with ``remove``,
        or, where an input reported written has its path, have that input's output written
        again (:attr:`overwritten`): the stray's writer may have renamed its file over it.

        Parameters
        ----------
        remove : callable
            Removes one output (a local file, or an object at the output URL).
        """
        for output, task in self.strays.items():
            owner = self._seen.get(output)
            if isinstance(owner, Task) and owner != task:
                self.overwritten[output] = owner
            elif isinstance(owner, str):
                self.refind[output] = owner
            else:
                remove(output)
        self.strays.clear()

    @staticmethod
    def _fail(result: FileResult, earlier: str) -> None:
        result.outcome = Outcome.FAILED
        result.reason = f"same SOP Instance UID as {earlier}: the output holds only that one"

    def close(self) -> None:
        """Commit the journal's last entries and drop the set of outputs."""
        self._seen.close()
        self._instances.close()
        if self.journal is not None:
            self.journal.flush()
