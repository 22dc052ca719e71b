"""Batch runs: files, folders and zip archives in, de-identified files out, on every core.

One worker process per core compiles the profile once and handles files in chunks; workers share
no mutable state (pseudonyms, UIDs and date offsets are keyed hashes), so the output does not
depend on the number of workers. The parent collects results, detects outputs that collide,
writes the maps (``--map-dir``) and counts outcomes. No message carries a value read from a
file: inputs are named by their path as the user gave it, outputs by de-identified values.
"""

from __future__ import annotations

import datetime as _dt
import gc
import os
import shutil
import tempfile
import warnings
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import IO

from pydicom.dataset import Dataset

from dicomveil.cleaners.pixels import PixelSettings, clean_pixels
from dicomveil.engine import Engine, Result
from dicomveil.errors import CrosswalkError, DeidentificationError, DicomveilError, InputError
from dicomveil.identity.crosswalk import Crosswalk
from dicomveil.identity.keys import Key
from dicomveil.identity.pseudonyms import Pseudonymizer
from dicomveil.io import (
    Kind,
    SourceFile,
    copy_file,
    failure_reason,
    iter_files,
    make_folder,
    read_scanned,
    read_source,
    remove_stale_temporaries,
    sniff,
    special_file_reason,
    write_output,
)
from dicomveil.io.layout import Layout
from dicomveil.profiles import Profile
from dicomveil.runs.knowledge import Patients, first_pass, patient_chunks
from dicomveil.runs.maps import Gate, gated, task_labeler, write_maps
from dicomveil.runs.output_key import check_output_key


class Outcome(StrEnum):
    WRITTEN = "written"
    WITHHELD = "withheld"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True)
class Task:
    """One input: a file on disk, or a member of a zip archive."""

    path: Path
    member: str | None = None
    skip: str | None = None  # why it is not read (a FIFO, a device, a link out of the input)
    index: int | None = None  # the member's entry in the archive, when its name repeats
    label: str | None = field(default=None, compare=False)  # --redact-paths: its keyed label

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
        ``--redact-paths`` (see :mod:`dicomveil.runs.maps`), else its :attr:`source`."""
        return self.label or self.source

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
    patient_id: str = field(default="", repr=False)
    pseudonym: str = ""
    date_offset_days: int | None = None


@dataclass(frozen=True)
class RunConfig:
    profile: Profile
    key: Key
    output: Path
    layout: Layout = field(default_factory=Layout)
    crosswalk: Crosswalk | None = None
    map_dir: Path | None = None
    workers: int = 0  # 0: one per core
    today: _dt.date | None = None
    chunk_size: int = 8
    pixels: PixelSettings = field(default_factory=PixelSettings)  # clean-pixel-data
    dry_run: bool = False  # decide every input, write nothing (see :func:`run`)
    redact_paths: bool = False  # name inputs by keyed labels (see :mod:`dicomveil.runs.maps`)
    allow_other_key: bool = False  # write into an output folder another key wrote
    # The release gate (``--verify``): None follows the profile's ``verify``; True checks
    # each written file with the verifier (:class:`~dicomveil.qc.verify.gate.ReleaseGate`),
    # False never does. ``gate`` puts another gate in its place (unless ``verify`` is False).
    verify: bool | None = None
    gate: Gate | None = None

    @property
    def verifying(self) -> bool:
        """Whether written files pass the release gate first."""
        if self.verify is not None:
            return self.verify
        return self.gate is not None or self.profile.verify

    def release_gate(self) -> Gate | None:
        """The gate each written file must pass, or None (see ``verify``)."""
        if not self.verifying:
            return None
        if self.gate is not None:
            return self.gate
        from dicomveil.qc.verify.gate import ReleaseGate  # the verifier: loaded when on

        return ReleaseGate(self.profile)

    @property
    def labeler(self) -> Callable[[Task], str] | None:
        """How the run's collector names inputs: None (by path) unless ``redact_paths``."""
        return task_labeler(self.key if self.redact_paths else None)


class Collector:
    """Adds each result to a summary as it arrives, failing an input whose output another
    input of the run already wrote (two files with one SOP Instance UID), then reports it.

    The failed input's worker may have renamed its file into place after the first one's:
    :attr:`overwritten` holds the results whose output must be written again (see
    :func:`run`), so that the file on disk is the input reported written."""

    def __init__(
        self,
        summary: RunSummary,
        progress: Callable[[FileResult], None] | None = None,
        label: Callable[[Task], str] | None = None,
    ) -> None:
        self.summary = summary
        self.progress = progress
        self.label = label  # --redact-paths: each input is named by its keyed label
        self._seen: dict[Path, FileResult] = {}
        self.overwritten: dict[Path, FileResult] = {}

    def __call__(self, result: FileResult) -> None:
        if self.label is not None:
            result.task = replace(result.task, label=self.label(result.task))
        if result.outcome is Outcome.WRITTEN and result.output is not None:
            earlier = self._seen.get(result.output)
            if earlier is not None and earlier.task != result.task:
                result.outcome = Outcome.FAILED
                result.reason = (
                    f"same SOP Instance UID as {earlier.task.display}: the output holds only "
                    "that one"
                )
                self.overwritten[result.output] = earlier
            else:
                self._seen[result.output] = result
        self.summary.results.append(result)
        if self.progress is not None:
            self.progress(result)


@dataclass
class RunSummary:
    results: list[FileResult] = field(default_factory=list)

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
        return sum(1 for r in self.results if r.outcome is outcome)

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
        return Counter(r.reason for r in self.results if r.outcome is outcome)

    @property
    def ok(self) -> bool:
        return self.count(Outcome.FAILED) == 0

    @property
    def written(self) -> list[FileResult]:
        return [r for r in self.results if r.outcome is Outcome.WRITTEN]


# --------------------------------------------------------------------------------------------
# Discovering inputs


def discover(inputs: Sequence[Path]) -> Iterator[Task]:
    """Tasks for every file under the inputs; zip archives are opened, never extracted."""
    for root in inputs:
        if not root.exists():
            raise InputError("no such file or folder", path=str(root))
        for path in iter_files(root):
            special = special_file_reason(path, root)
            if special is not None:
                yield Task(path, skip=special)
                continue
            # A DICOM file is never opened as an archive (and checking that first spares
            # reading the end of every DICOM file for a zip directory).
            if sniff(path) is not Kind.DICOM and zipfile.is_zipfile(path):
                try:
                    with zipfile.ZipFile(path) as archive:
                        entries = [(i.filename, n) for n, i in enumerate(archive.infolist())]
                except (zipfile.BadZipFile, OSError):
                    yield Task(path)
                    continue
                names = Counter(name for name, _ in entries)
                for name, entry in sorted(entries):
                    if not name.endswith("/"):  # folders
                        yield Task(path, name, index=entry if names[name] > 1 else None)
            else:
                yield Task(path)


def check_locations(inputs: Sequence[Path], output: Path, map_dir: Path | None) -> None:
    """Refuse an output inside an input (it would be read again) and maps inside the output."""
    out = output.resolve()
    for root in inputs:
        base = root.resolve()
        if base == out or (root.is_dir() and base in out.parents):
            raise DicomveilError(f"the output folder {output} is inside the input {root}")
        if out in base.parents and root.is_dir():
            raise DicomveilError(f"the input {root} is inside the output folder {output}")
    if map_dir is not None:
        maps = map_dir.resolve()
        if maps == out or out in maps.parents:
            raise DicomveilError("--map-dir must be outside the shareable output folder")


# --------------------------------------------------------------------------------------------
# Working on one file (in a worker process or inline)

_worker: _Worker | None = None


class _Worker:
    def __init__(self, config: RunConfig, patients: Patients | None = None) -> None:
        self.config = config
        self.gate = config.release_gate()  # one per process: it learns the run's patients
        self._open: tuple[Path, zipfile.ZipFile] | None = None
        self.engine = Engine(
            config.profile.compile(),
            Pseudonymizer(config.key),
            crosswalk=config.crosswalk,
            today=config.today,
            patients=patients,
        )

    def process(self, task: Task) -> FileResult:
        with warnings.catch_warnings():
            # pydicom warns about invalid values in real-world files; they are not failures,
            # and the outcome must not depend on the caller's warning filters.
            warnings.simplefilter("ignore", UserWarning)
            return self._process(task)

    def _process(self, task: Task) -> FileResult:
        if task.skip is not None:
            return FileResult(task, Outcome.SKIPPED, task.skip)
        if task.member is None:
            return self._process_path(task, task.path)
        with tempfile.TemporaryDirectory(prefix="dicomveil-") as folder:
            extracted = Path(folder) / "member"
            try:
                with task.open_member(self._archive(task.path)) as src, extracted.open("wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
            except (zipfile.BadZipFile, zlib.error, OSError, RuntimeError, EOFError) as exc:
                return FileResult(
                    task, Outcome.FAILED, f"cannot read from the archive ({type(exc).__name__})"
                )
            if sniff(extracted) is not Kind.DICOM and zipfile.is_zipfile(extracted):
                return FileResult(
                    task, Outcome.SKIPPED, "a zip archive inside a zip archive: unpack it first"
                )
            return self._process_path(task, extracted)

    def _archive(self, path: Path) -> zipfile.ZipFile:
        """The archive at ``path``, kept open for its next member (its directory is read
        once, not once per member)."""
        if self._open is not None and self._open[0] == path:
            return self._open[1]
        if self._open is not None:
            self._open[1].close()
        archive = zipfile.ZipFile(path)
        self._open = (path, archive)
        return archive

    def _process_path(self, task: Task, path: Path) -> FileResult:
        try:  # the reading boundary: whatever parsing raises fails this file only
            read = self._read(task, path)
        except Exception as exc:
            return FileResult(task, Outcome.FAILED, failure_reason(exc))
        if isinstance(read, FileResult):
            return read
        source = read
        try:
            done = deidentify_source(
                self.engine, source, self._destination, pixels=self.config.pixels
            )
            if isinstance(done, Withheld):  # filed under its subject, for the audit trail
                return FileResult(task, Outcome.WITHHELD, str(done), pseudonym=done.pseudonym)
        except _WouldWriteError as would:
            return FileResult(task, Outcome.WRITTEN, output=would.target)
        except (CrosswalkError, DeidentificationError) as exc:
            return FileResult(task, Outcome.FAILED, str(exc))
        except DicomveilError as exc:
            return FileResult(task, Outcome.FAILED, str(exc))
        except OSError as exc:
            return FileResult(task, Outcome.FAILED, f"cannot write the output ({exc.strerror})")
        except Exception as exc:  # a value pydicom cannot decode or encode: fail, keep going
            return FileResult(task, Outcome.FAILED, f"cannot de-identify: {failure_reason(exc)}")
        written = done.file_result(task)
        if self.gate is not None and done.result is not None:
            return self._gated(written, path, self.gate)
        return written

    def _gated(self, written: FileResult, source: Path, gate: Gate) -> FileResult:
        """The release gate (``--verify``): a written file the verifier flags is withheld,
        moved out of the output (into the map folder's ``gated/``, or deleted); a gate that
        cannot check fails closed."""
        assert written.output is not None
        output, root = written.output.resolve(), self.config.output.resolve()
        reason = gated(gate, output, root, source, written.uid_map, self.config.map_dir)
        if reason is None:
            return written
        return FileResult(written.task, Outcome.WITHHELD, reason, pseudonym=written.pseudonym)

    def _destination(self, ds: Dataset, pseudonym: str) -> Path:
        """Where the de-identified ``ds`` goes; in a dry run, the write stops here."""
        target = self.config.layout.path(self.config.output, ds, pseudonym)
        if self.config.dry_run:
            raise _WouldWriteError(target)
        return target

    def _read(self, task: Task, path: Path) -> SourceFile | FileResult:
        """The input read, or the result that ends it (not DICOM, a DICOMDIR, unreadable)."""
        source = read_scanned(path)  # a well-formed file, read once
        if source is None:
            kind = sniff(path)
            if kind is Kind.NOT_DICOM:
                return FileResult(task, Outcome.SKIPPED, kind.value)
            if kind is not Kind.DICOM:
                return FileResult(task, Outcome.FAILED, kind.value)
            source = read_source(path, quick=False)  # the quick scan declined it
        if source.is_dicomdir:
            return FileResult(
                task,
                Outcome.SKIPPED,
                "DICOMDIR: never copied (use --dicomdir to write a fresh one)",
            )
        return source


class _WouldWriteError(Exception):
    """A dry run's destination: the file would be written to ``target`` (control flow).

    :func:`deidentify_source` asks for the destination only when the file is to be
    written, just before writing it, and lets this propagate.
    """

    def __init__(self, target: Path) -> None:
        super().__init__("dry run")
        self.target = target


class Withheld(str):
    """Why an input is withheld, and its subject's ``pseudonym`` ("" when none is known)."""

    pseudonym: str

    def __new__(cls, reason: str, pseudonym: str = "") -> Withheld:
        made = super().__new__(cls, reason)
        made.pseudonym = pseudonym
        return made


@dataclass(frozen=True)
class Deidentified:
    """One input de-identified and written (see :func:`deidentify_source`)."""

    output: Path
    size: int
    pseudonym: str
    result: Result | None = None  # None for a byte-identical copy

    def file_result(self, task: Task) -> FileResult:
        written = FileResult(
            task, Outcome.WRITTEN, output=self.output, size=self.size, pseudonym=self.pseudonym
        )
        result = self.result
        if result is None:
            return written
        return replace(
            written,
            reason="; ".join(result.notes),
            uid_map=result.uid_map,
            patient_id=result.patient_id_original,
            date_offset_days=result.date_offset_days,
        )


def deidentify_source(
    engine: Engine,
    source: SourceFile,
    destination: Callable[[Dataset, str], Path],
    *,
    pixels: PixelSettings | None = None,
    durable: bool = False,
) -> Deidentified | Withheld:
    """The per-file pipeline every front end shares (batch, cluster, gateway): the
    clean-pixel-data step, the engine, then the atomic write to ``destination(dataset,
    pseudonym)``. Returns what was written, or the reason the file is withheld; errors
    (:class:`DicomveilError`, :class:`OSError`, pydicom's on malformed values) propagate for
    the caller to report its own way."""
    if engine.profile.copy:
        pseudonym = engine.deidentify(source.dataset).patient_pseudonym
        target = destination(source.dataset, pseudonym)
        return Deidentified(target, copy_file(source.path, target, durable=durable), pseudonym)
    cleaned = clean_pixels(source, engine, pixels)  # a no-op without clean-pixel-data
    if cleaned.withheld is not None:
        return Withheld(cleaned.withheld, engine.subject_of(source.dataset))
    result = engine.deidentify(source.dataset, has_pixel_data=source.has_pixel_data)
    if result.dataset is None:
        assert result.withheld is not None
        reason = result.withheld_detail or result.withheld.reason
        return Withheld(reason, result.patient_pseudonym)
    target = destination(result.dataset, result.patient_pseudonym)
    size = write_output(source, result.dataset, target, pixels=cleaned.replacement, durable=durable)
    return Deidentified(target, size, result.patient_pseudonym, result)


def _init_worker(config: RunConfig, patients: Patients | None = None) -> None:
    global _worker
    _worker = _Worker(config, patients)
    # Loaded by now (tables, profile) and kept: out of the garbage collector's full passes.
    gc.freeze()


def _process_chunk(tasks: list[Task]) -> list[FileResult]:
    assert _worker is not None
    return [_worker.process(task) for task in tasks]


# --------------------------------------------------------------------------------------------
# The run


def run(
    inputs: Sequence[Path],
    config: RunConfig,
    *,
    progress: Callable[[FileResult], None] | None = None,
    tasks: Iterable[Task] | None = None,
) -> RunSummary:
    """De-identify every file under ``inputs`` into ``config.output``, in parallel.

    With ``config.dry_run`` every input is decided the same way (the same per-file pipeline
    up to the write) and nothing is written: no folder, no file; a written input's
    ``output`` says where it would go.

    Parameters
    ----------
    inputs : sequence of pathlib.Path
        Files, folders (walked recursively) and zip archives.
    config : RunConfig
        The profile, key, output folder, layout, maps and workers of the run.
    progress : callable, optional
        Called with each file's result as it arrives (from the calling thread).
    tasks : iterable of Task, optional
        The inputs, already discovered (default: discovered from ``inputs``).

    Returns
    -------
    RunSummary
        Every input's outcome (written, withheld, skipped, failed) and reason.

    Raises
    ------
    DicomveilError
        When the output or map folder lies inside an input, or an input inside it.
    InputError
        When an input does not exist.
    OutputKeyError
        When the output folder records another key and ``config.allow_other_key`` is
        False (see :mod:`dicomveil.runs.output_key`).
    """
    check_locations(inputs, config.output, config.map_dir)
    check_output_key(
        config.output,
        config.key.fingerprint,
        allow_other=config.allow_other_key,
        record=not config.dry_run,
    )
    all_tasks = list(tasks if tasks is not None else discover(inputs))
    if not config.dry_run:
        make_folder(config.output, "the output folder")
        if config.map_dir is not None:
            make_folder(config.map_dir, "the map folder")
        remove_stale_temporaries(config.output)
    summary = RunSummary()
    collect = Collector(summary, progress, config.labeler)

    workers = config.workers or os.cpu_count() or 1
    workers = min(workers, max(1, len(all_tasks)))
    chunks = [
        all_tasks[i : i + config.chunk_size] for i in range(0, len(all_tasks), config.chunk_size)
    ]
    learned = first_pass(partial(_Worker, config), all_tasks, chunks, workers)
    patients = learned.patients if learned is not None else None
    if learned is not None:
        chunks = patient_chunks(all_tasks, learned.keys, config.chunk_size)
    if workers == 1:
        worker = _Worker(config, patients)
        for task in all_tasks:
            collect(worker.process(task))
    else:
        with ProcessPoolExecutor(
            workers, initializer=_init_worker, initargs=(config, patients)
        ) as pool:
            pending: set[Future[list[FileResult]]] = set()
            queue = iter(chunks)
            for chunk in queue:
                pending.add(pool.submit(_process_chunk, chunk))
                if len(pending) >= workers * 2:
                    break
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    for result in future.result():
                        collect(result)
                    nxt = next(queue, None)
                    if nxt is not None:
                        pending.add(pool.submit(_process_chunk, nxt))
    if collect.overwritten and not config.dry_run:
        _rewrite(collect.overwritten.values(), config, patients)
    if config.map_dir is not None and not config.dry_run:
        write_maps(config.map_dir, summary, paths=config.redact_paths)
    return summary


def _rewrite(results: Iterable[FileResult], config: RunConfig, patients: Patients | None) -> None:
    """Write again the output of each input reported written whose file another input of
    the same SOP Instance UID may have replaced; one that now fails is failed."""
    worker = _Worker(config, patients)
    for result in results:
        again = worker.process(replace(result.task, label=None))
        if again.outcome is not Outcome.WRITTEN or again.output != result.output:
            result.outcome = Outcome.FAILED
            result.reason = f"written again after a same-UID input, but {again.reason or 'moved'}"
