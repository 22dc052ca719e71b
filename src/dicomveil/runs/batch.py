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
import hashlib
import itertools
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
from pathlib import Path
from typing import TYPE_CHECKING

from pydicom.dataset import Dataset

if TYPE_CHECKING:
    from dicomveil.identity.envelope import Recipient

from dicomveil.cleaners.pixels import PixelSettings, clean_pixels
from dicomveil.engine import Engine, Result
from dicomveil.errors import CrosswalkError, DeidentificationError, DicomveilError, InputError
from dicomveil.identity.crosswalk import Crosswalk
from dicomveil.identity.keys import Key
from dicomveil.identity.pseudonyms import Pseudonymizer
from dicomveil.io import (
    Kind,
    OutputClaim,
    SourceFile,
    claim_output,
    copy_file,
    failure_reason,
    iter_files,
    make_folder,
    read_scanned,
    read_source,
    sniff,
    special_file_reason,
    write_output,
)
from dicomveil.io.layout import Layout
from dicomveil.profiles import Profile
from dicomveil.runs.journal import Journal, input_stat
from dicomveil.runs.knowledge import Patients, first_pass, patient_chunks
from dicomveil.runs.lifetime import exit_with_parent
from dicomveil.runs.locations import check_locations, outermost
from dicomveil.runs.maps import Gate, MapStore, gated, task_labeler
from dicomveil.runs.output_key import check_output_key
from dicomveil.runs.results import Collector, FileResult, Outcome, RunSummary, Task, remover

# What a run reports lives in results.py; re-exported here, where callers have found it.
__all__ = ["Collector", "FileResult", "Outcome", "RunConfig", "RunSummary", "Task"]


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
    # Memory flat in the number of inputs: False counts results without keeping them all
    # (RunSummary.keep). ``state_dir`` holds the run journal (:mod:`dicomveil.runs.journal`);
    # ``resume`` skips the inputs it records as done.
    keep_results: bool = True
    state_dir: Path | None = None
    resume: bool = False
    recipients: tuple[Recipient, ...] = ()  # the reversible option's (see engine.reversible)

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


# --------------------------------------------------------------------------------------------
# Discovering inputs


def discover(inputs: Sequence[Path]) -> Iterator[Task]:
    """Tasks for every file under the inputs (each once); zip archives are opened, never
    extracted."""
    for root in inputs:
        if not root.exists():
            raise InputError("no such file or folder", path=str(root))
    for root in outermost(inputs):
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
                names, stat = Counter(name for name, _ in entries), input_stat(path)
                for name, entry in sorted(entries):
                    if not name.endswith("/"):  # folders
                        index = entry if names[name] > 1 else None
                        yield Task(path, name, index=index, stat=stat)
            else:
                yield Task(path, stat=input_stat(path))


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
            recipients=config.recipients,
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
            instance_uids=result.instance_uids,
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
    gc.freeze()  # loaded by now (tables, profile) and kept: out of the collector's full passes
    exit_with_parent()


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
    on_total: Callable[[int], None] | None = None,
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
    if config.resume and (config.state_dir is None or config.dry_run):
        raise DicomveilError("resuming needs a state folder (the run journal), and no dry run")
    claim: OutputClaim | None = None
    journal: Journal | None = None
    maps: MapStore | None = None
    if not config.dry_run:
        make_folder(config.output, "the output folder")
        if config.map_dir is not None:
            make_folder(config.map_dir, "the map folder")
        claim = claim_output(config.output)  # a second run into it stops here, changing nothing
    summary = RunSummary(keep=config.keep_results)
    try:
        if config.state_dir is not None and not config.dry_run:
            settings = run_settings(config)
            journal = Journal(
                config.state_dir, config.key, settings, resume=config.resume, output=config.output
            )
        if config.map_dir is not None and claim is not None:
            maps = MapStore(paths=config.redact_paths, folder=config.map_dir)
            if journal is not None:
                journal.before_commit = maps.commit
        collect = Collector(summary, progress, config.labeler, journal, maps)
        stream = tasks if tasks is not None else discover(inputs)
        probe = _Worker(config)
        patients = _execute(iter(stream), config, probe, collect, on_total)
        if not config.dry_run:
            collect.settle(remover(config.output))
        if (collect.overwritten or collect.refind) and not config.dry_run:
            _rewrite(collect, inputs, tasks, config, patients)
        collect.close()
        if maps is not None and config.map_dir is not None:
            maps.write(config.map_dir)
    finally:
        if journal is not None:  # first: it commits the maps before its last entries
            summary.resumed = journal.skipped
            journal.close()
        if maps is not None:
            maps.close()
        if claim is not None:
            claim.release()
    return summary


def _execute(
    stream: Iterator[Task],
    config: RunConfig,
    probe: _Worker,
    collect: Collector,
    on_total: Callable[[int], None] | None,
) -> Patients | None:
    """Every input of ``stream`` through workers into ``collect``. Inputs are handed out as
    the walk finds them (nothing is listed first) unless the profile's cleaners need a first
    pass over every file. Returns what the first pass learned (None without one)."""
    summary, journal = collect.summary, collect.journal
    workers = config.workers or os.cpu_count() or 1
    patients: Patients | None = None

    def undone(tasks: Iterable[Task]) -> Iterator[Task]:  # --resume: what the journal lacks
        return (t for t in tasks if journal is None or not config.resume or not journal.done(t))

    if probe.engine.reads_patients:
        size = config.chunk_size
        # The first pass reads a few values a file: larger chunks, fewer round trips; it
        # starts on them as the walk finds the inputs (all of which it keeps, in order, for
        # the second pass).
        learn = size * 4
        head, few = _head(stream, workers * learn * 2)
        if few:
            workers = min(workers, max(1, len(head)))
            learn = max(1, min(learn, -(-len(head) // (workers * 4))))
        all_tasks: list[Task] = []

        def walked() -> Iterator[Task]:
            for task in itertools.chain(head, stream):
                all_tasks.append(task)
                yield task

        prepare = probe.engine.cleaner.prepare  # here once, for the second pass's workers
        learned = first_pass(lambda: probe, _chunks(walked(), learn), workers, prepare)
        assert learned is not None
        patients = learned.patients
        kept = [list(undone(c)) for c in patient_chunks(all_tasks, learned.keys, size)]
        _found(summary, sum(len(c) for c in kept), on_total)
        todo: Iterator[list[Task]] = (c for c in kept if c)
    else:
        stream = undone(stream)
        head, few = _head(stream, workers * config.chunk_size * 2)
        if few:
            workers = min(workers, max(1, len(head)))
        counted = _counting(itertools.chain(head, stream), summary, on_total)
        todo = _chunks(counted, config.chunk_size)
    if workers == 1:
        worker = probe if patients is None else _Worker(config, patients)
        for chunk in todo:
            for task in chunk:
                collect(worker.process(task))
        return patients
    with ProcessPoolExecutor(
        workers, initializer=_init_worker, initargs=(config, patients)
    ) as pool:
        pending: set[Future[list[FileResult]]] = set()
        for chunk in todo:
            pending.add(pool.submit(_process_chunk, chunk))
            if len(pending) >= workers * 2:
                break
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                for result in future.result():
                    collect(result)
                nxt = next(todo, None)
                if nxt is not None:
                    pending.add(pool.submit(_process_chunk, nxt))
    return patients


def _head(stream: Iterator[Task], count: int) -> tuple[list[Task], bool]:
    """The first ``count`` inputs, and whether the walk ended before them (few inputs: fewer
    workers than cores may do)."""
    head = list(itertools.islice(stream, count))
    return head, len(head) < count


def _found(summary: RunSummary, total: int, on_total: Callable[[int], None] | None) -> None:
    summary.total = total
    if on_total is not None:
        on_total(total)


def _counting(
    tasks: Iterator[Task], summary: RunSummary, on_total: Callable[[int], None] | None
) -> Iterator[Task]:
    """The tasks, passed on; the total is set (and told) when the walk has ended."""
    n = 0
    for task in tasks:
        n += 1
        yield task
    _found(summary, n, on_total)


def _chunks(tasks: Iterator[Task], size: int) -> Iterator[list[Task]]:
    while chunk := list(itertools.islice(tasks, size)):
        yield chunk


def run_settings(config: RunConfig) -> str:
    """A digest of what decides a run's output bytes (the journal's check on a resume)."""
    crosswalk = config.crosswalk
    mapping = sorted(crosswalk.mapping.items()) if crosswalk is not None else None
    sealed_for = sorted(r.der.hex() for r in config.recipients)
    text = repr(
        (
            config.profile.digest, str(config.layout), mapping, repr(config.pixels),
            config.today, sealed_for,
        )
    )  # fmt: skip
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def _rewrite(
    collect: Collector,
    inputs: Sequence[Path],
    tasks: Iterable[Task] | None,
    config: RunConfig,
    patients: Patients | None,
) -> None:
    """Write again the output of each input reported written whose file another input of
    the same SOP Instance UID may have replaced; one that now fails is counted failed. An
    input an earlier run of the journal wrote is found by walking the inputs again."""
    worker = _Worker(config, patients)
    for task in collect.overwritten.values():
        again = worker.process(replace(task, label=None))
        if again.outcome is not Outcome.WRITTEN or again.output not in collect.overwritten:
            why = again.reason or "moved"
            collect.summary.demote(task, f"written again after a same-UID input, but {why}")
    wanted = set(collect.refind.values())
    walk = tasks if isinstance(tasks, Sequence) else discover(inputs)
    for task in walk:
        if wanted and task.skip is None and (found := collect.identify(task)) in wanted:
            wanted.discard(found)
            worker.process(task)
