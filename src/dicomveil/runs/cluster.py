"""Cluster runs: the batch run on Dask, reading from and writing to any fsspec location.

Pseudonyms, UIDs and date offsets are keyed hashes, so workers share no state: a run on a
Dask cluster writes the same bytes as :func:`dicomveil.runs.batch.run` on one machine. The client
lists the inputs, cuts them into batches and submits one Dask task per batch
(:mod:`dicomveil.runs.executors`); each task, on its worker, de-identifies its files with the
same per-file pipeline as a local run (:class:`dicomveil.runs.batch._Worker`, built once per
worker thread and run) and hands back the results, which the client merges into a
:class:`~dicomveil.runs.batch.RunSummary`, shows as progress and writes into the maps
(``map_dir``, a local folder).

Locations (:mod:`dicomveil.runs.remote`). A plain path is used in place: on a real cluster it
must name the same folder on every worker (a shared file system). An fsspec URL is reached
through fsspec: each input object is streamed into a temporary file on the worker
(owner-only, deleted after use), and each output is written locally, then streamed to
``<output URL>/<the path the layout made>``.

Atomicity. Object stores publish an object only when its upload completes; other fsspec file
systems get a temporary sibling that is moved onto the final key. Together with deterministic
bytes this makes retries safe: a task that fails (or a worker that dies) is run again and
rewrites the same keys with the same bytes.

Messages name inputs and outputs, never values read from files. The key and the profile
travel to the workers pickled over the Dask comm, and results (which carry the original
patient IDs for the maps) travel back: use TLS for the comm (see the README).
"""

from __future__ import annotations

import contextlib
import math
import posixpath
import tempfile
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydicom

from dicomveil._version import __version__
from dicomveil.cleaners.text import Identifiers
from dicomveil.errors import ClusterError, safe_reason
from dicomveil.runs.batch import (
    Collector,
    FileResult,
    Outcome,
    RunConfig,
    RunSummary,
    Task,
    _Worker,
    discover,
)
from dicomveil.runs.executors import Executor, Work, executor_for
from dicomveil.runs.knowledge import Patients, learn, pooled, pooling, with_run_institutions
from dicomveil.runs.maps import MapStore
from dicomveil.runs.remote import (
    FoundInput,
    RemoteTask,
    check_remote_locations,
    fetch,
    filesystem,
    find_inputs,
    is_url,
    parse_storage_options,
    prepare_output,
    publishes_atomically,
    upload,
)
from dicomveil.runs.results import remover

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

__all__ = [
    "ClusterError",
    "RemoteTask",
    "is_url",
    "parse_storage_options",
    "run_on_dask",
    "runner_for",
]

_MAX_AUTO_BATCH = 64  # files per task at most, when the batch size is automatic
_TASKS_PER_SLOT = 4  # automatic batch size: about this many tasks per worker thread
_MAX_BATCH_BYTES = 256 * 1024 * 1024  # a batch closes before it holds more input than this
_SITES_PER_THREAD = 4  # runs whose worker state one worker thread keeps

Progress = Callable[[FileResult], None]
Runner = Callable[[RunConfig, Progress], RunSummary]


# --------------------------------------------------------------------------------------------
# What every task of one run needs (shipped to each worker once)


@dataclass(frozen=True, repr=False)
class _Job:
    token: str  # unique per run: worker state is cached under it
    config: RunConfig  # output: the local output folder (ignored when output_url is set)
    output_url: str | None
    storage_options: Mapping[str, Any]
    cwd: str  # the client's working folder: relative local inputs are resolved against it
    versions: tuple[str, str] = field(default_factory=lambda: _versions())  # the client's
    patients: Patients | None = None  # the first pass's values, when the cleaners read them

    def __repr__(self) -> str:  # Dask logs the arguments of failed tasks
        return f"<dicomveil run {self.token[:8]}>"


class _Site:
    """A worker thread's state for one run: the per-file pipeline (built once), the output
    file system, and during a task a private scratch folder (fetched inputs, staged
    outputs) that is removed when the task ends, whatever happens."""

    def __init__(self, job: _Job) -> None:
        self.config = job.config
        self.worker = _Worker(job.config, job.patients)
        self.output = job.config.output.resolve()  # where the worker writes
        self.scratch: Path | None = None
        self.fs: AbstractFileSystem | None = None
        self.root = ""
        self.atomic = False
        if job.output_url is not None:
            self.fs, self.root = filesystem(job.output_url, job.storage_options)
            self.atomic = publishes_atomically(self.fs)

    @contextlib.contextmanager
    def task(self, items: Sequence[Task]) -> Iterator[None]:
        """Scratch space for one task, if it fetches inputs or stages outputs."""
        if self.fs is None and not any(isinstance(i, RemoteTask) for i in items):
            yield
            return
        with tempfile.TemporaryDirectory(prefix="dicomveil-") as folder:
            self.scratch = Path(folder)
            if self.fs is not None:  # outputs are staged here, then streamed
                staging = self.scratch / "out"
                self.worker.config = replace(self.config, output=staging)
                self.output = staging.resolve()
            try:
                yield
            finally:
                self.scratch = None


_THREAD = threading.local()


def _versions() -> tuple[str, str]:
    return __version__, pydicom.__version__


def _site(job: _Job) -> _Site:
    if job.versions != _versions():
        # Other versions could write other bytes: the output would not be reproducible.
        raise ClusterError(
            f"this worker runs dicomveil {__version__} with pydicom {pydicom.__version__}; "
            f"the client runs dicomveil {job.versions[0]} with pydicom {job.versions[1]}"
        )
    sites: OrderedDict[str, _Site] | None = getattr(_THREAD, "sites", None)
    if sites is None:
        sites = _THREAD.sites = OrderedDict()
    site = sites.get(job.token)
    if site is None:
        while len(sites) >= _SITES_PER_THREAD:
            sites.popitem(last=False)
        site = sites[job.token] = _Site(job)
    sites.move_to_end(job.token)
    return site


# --------------------------------------------------------------------------------------------
# On the worker: one task, one batch


def _run_batch(job: _Job, items: Sequence[Task]) -> list[FileResult]:
    """De-identify a batch of inputs; raises (and Dask retries the task) on I/O errors of
    the file systems, so that no file of the batch is reported failed for a transient one."""
    site = _site(job)
    results: list[FileResult] = []
    with site.task(items):
        for item in items:
            if isinstance(item, RemoteTask):
                results.extend(_process_remote(job, site, item))
                continue
            if not item.path.is_absolute():
                item_here = replace(item, path=Path(job.cwd, item.path))
            else:
                item_here = item
            result = site.worker.process(item_here)
            result.task = item
            results.append(_deliver(site, result))
    return results


def _learn_batch(job: _Job, items: Sequence[Task]) -> list[tuple[str, Identifiers] | None]:
    """The first pass over a batch (see :mod:`dicomveil.runs.knowledge`): its inputs'
    values pooled per patient; what cannot be read gives nothing (the second pass reports
    it)."""
    site = _site(job)
    found: list[tuple[str, Identifiers] | None] = []
    with site.task(items):
        for item in items:
            if isinstance(item, RemoteTask):
                assert site.scratch is not None
                try:
                    fetched = fetch(item.url, job.storage_options, site.scratch)
                except FileNotFoundError:
                    continue
                try:
                    found.extend(learn(site.worker, task) for task in discover([fetched]))
                finally:
                    fetched.unlink(missing_ok=True)
                continue
            here = item if item.path.is_absolute() else replace(item, path=Path(job.cwd, item.path))
            found.append(learn(site.worker, here))
    return list(pooling(found).items())  # pooled per patient: less to send back


def _first_pass(
    job: _Job, executor: Executor, batches: list[list[Task]], retries: int
) -> Patients | None:
    """Every input's values pooled per patient, when the profile's cleaners read them."""
    if not _Worker(job.config).engine.reads_patients:
        return None
    learning = replace(job, token=job.token + "-first-pass")
    patients: Patients = {}
    try:
        for _batch, outcome in executor.map(
            Work(_learn_batch, learning, batches, retries, name=learning.token)
        ):
            if not isinstance(outcome, BaseException):  # its files then know only themselves
                pooled(outcome, patients)
    finally:
        _forget(learning)
    return with_run_institutions(patients)


def _process_remote(job: _Job, site: _Site, item: RemoteTask) -> list[FileResult]:
    assert site.scratch is not None
    try:
        fetched = fetch(item.url, job.storage_options, site.scratch)
    except FileNotFoundError:
        return [FileResult(item, Outcome.FAILED, "cannot read: no such object")]
    try:
        results = []
        for task in discover([fetched]):  # a zip archive gives one task per member
            result = site.worker.process(task)
            result.task = RemoteTask(item.path, task.member, task.skip, task.index, url=item.url)
            results.append(_deliver(site, result))
        return results
    finally:
        fetched.unlink(missing_ok=True)


def _deliver(site: _Site, result: FileResult) -> FileResult:
    """Move a written output to the output location; its result names it relative to the
    output URL (or by its local path, when the output is a local folder)."""
    if result.outcome is not Outcome.WRITTEN or result.output is None or site.fs is None:
        return result
    staged = result.output
    relative = staged.relative_to(site.output).as_posix()
    try:
        upload(staged, site.fs, posixpath.join(site.root, relative), atomic=site.atomic)
    finally:
        staged.unlink(missing_ok=True)
        for folder in staged.parents:  # the layout's folders, now empty
            if folder == site.output or site.output not in folder.parents:
                break
            try:
                folder.rmdir()
            except OSError:
                break
    result.output = Path(relative)
    return result


def _forget(job: _Job) -> None:
    """Drop the state this thread keeps for a run (a run in this process, without Dask)."""
    sites: OrderedDict[str, _Site] | None = getattr(_THREAD, "sites", None)
    if sites is not None:
        sites.pop(job.token, None)


# --------------------------------------------------------------------------------------------
# On the client: batching, running


def _batches(found: Sequence[FoundInput], batch_size: int, slots: int) -> list[list[Task]]:
    """Consecutive inputs, ``batch_size`` per batch (0: a few tasks per worker thread, at
    most 64 files); a batch also closes before it holds more than 256 MB of input."""
    if batch_size <= 0:
        batch_size = min(_MAX_AUTO_BATCH, max(1, math.ceil(len(found) / (slots * _TASKS_PER_SLOT))))
    batches: list[list[Task]] = []
    current: list[Task] = []
    size = 0
    for entry in found:
        if current and (len(current) >= batch_size or size + entry.size > _MAX_BATCH_BYTES):
            batches.append(current)
            current, size = [], 0
        current.append(entry.task)
        size += entry.size
    if current:
        batches.append(current)
    return batches


def run_on_dask(
    inputs: Sequence[str | Path],
    output: str | Path,
    config: RunConfig,
    *,
    address: str | None,
    batch_size: int = 0,
    storage_options: Mapping[str, Any] | None = None,
    retries: int = 2,
    progress: Progress | None = None,
) -> RunSummary:
    """De-identify every file under ``inputs`` into ``output``, on Dask or on this machine.

    Parameters
    ----------
    inputs : Sequence[str or Path]
        Local paths or fsspec URLs.
    output : str or Path
        A local path or an fsspec URL (``config.output`` is ignored).
    config : RunConfig
        The run's settings; ``config.map_dir``, if set, is a local folder.
    address : str or None
        A scheduler address (``tcp://host:8786``), ``"local"`` for a new local cluster of
        ``config.workers`` processes (0: one per core), or None for worker processes of this
        machine without Dask.
    batch_size : int
        Files per task (0: automatic).
    storage_options : Mapping[str, Any] or None
        fsspec storage options for the URLs.
    retries : int
        A task that raises is run again up to this many times; when it still fails, its
        files are reported failed.
    progress : Callable[[FileResult], None] or None
        Called with each file's result as it arrives.

    Returns
    -------
    RunSummary
        Every file's result; each result's ``output`` is the file's local path, or its path
        relative to an output URL.

    Raises
    ------
    ClusterError
        A map folder given as a URL, a location that cannot be used, an output inside an
        input (or the reverse), a missing extra, a cluster that cannot be reached.
    DicomveilError
        Local locations refused as :func:`dicomveil.runs.batch.run` refuses them.
    InputError
        An input URL that cannot be listed or names nothing.
    """
    options = dict(storage_options or {})
    if config.map_dir is not None and is_url(str(config.map_dir)):
        raise ClusterError("the map folder must be a local folder")
    check_remote_locations(inputs, output, options, config.map_dir)
    found = list(find_inputs(inputs, options))
    local_output = None if is_url(output) else Path(output).resolve()
    job = _Job(
        token=uuid.uuid4().hex,
        config=config if local_output is None else replace(config, output=local_output),
        output_url=None if local_output is not None else str(output),
        storage_options=options,
        cwd=str(Path.cwd()),
    )
    prepare_output(output, options)
    summary = RunSummary(keep=config.keep_results)
    maps = MapStore(paths=config.redact_paths) if config.map_dir is not None else None
    collect = Collector(summary, progress, config.labeler, maps=maps)

    if found:
        with executor_for(address, config.workers, len(found)) as executor:
            batches = _batches(found, batch_size, executor.slots)
            job = replace(job, patients=_first_pass(job, executor, batches, retries))
            try:
                work = Work(_run_batch, job, batches, retries, name=job.token)
                for batch, outcome in executor.map(work):
                    if isinstance(outcome, BaseException):
                        reason = (
                            f"the task failed {retries + 1} time(s) ({safe_reason(outcome)}); "
                            "run again to complete the output"
                        )
                        outcome = [FileResult(task, Outcome.FAILED, reason) for task in batch]
                    for result in outcome:
                        collect(result)
                _settle(job, collect)
            finally:
                _forget(job)  # batches run in this process kept the run's state here
    collect.close()
    if maps is not None:
        try:
            if config.map_dir is not None:
                maps.write(config.map_dir)
        finally:
            maps.close()
    return summary


def _settle(job: _Job, collect: Collector) -> None:
    """Two inputs of one SOP Instance UID (see :class:`~dicomveil.runs.results.Collector`):
    the later one's file removed, and the output of the one reported written written again
    here where the later one's may have replaced it, as a local run does."""
    if job.output_url is None:
        remove = remover(job.config.output)
    else:
        fs, root = filesystem(job.output_url, job.storage_options)

        def remove(output: Path) -> None:
            with contextlib.suppress(FileNotFoundError):
                fs.rm(posixpath.join(root, output.as_posix()))

    collect.settle(remove)
    for task in collect.overwritten.values():
        again = _run_batch(job, [task])[0]
        if again.outcome is not Outcome.WRITTEN or again.output not in collect.overwritten:
            why = again.reason or "moved"
            collect.summary.demote(task, f"written again after a same-UID input, but {why}")
    collect.overwritten.clear()


def runner_for(
    inputs: Sequence[str],
    output: str,
    *,
    address: str | None,
    storage_options: Sequence[str] = (),
    batch_size: int = 0,
) -> Runner | None:
    """Choose, for the command line, how a run is run.

    Parameters
    ----------
    inputs : Sequence[str]
        The inputs as given: local paths or fsspec URLs.
    output : str
        The output as given: a local path or an fsspec URL.
    address : str or None
        ``--dask``: a scheduler address, ``"local"``, or None.
    storage_options : Sequence[str]
        ``--storage-option``: ``KEY=VALUE`` pairs.
    batch_size : int
        ``--batch-size``: files per task (0: automatic).

    Returns
    -------
    Runner or None
        A runner through :func:`run_on_dask` when Dask is asked for or a location is a URL;
        None for a plain run.

    Raises
    ------
    ClusterError
        ``--storage-option`` or ``--batch-size`` without Dask or a URL, or a malformed
        storage option.
    """
    if address is None and not any(is_url(p) for p in [*inputs, output]):
        if storage_options:
            raise ClusterError("--storage-option goes with URL inputs or outputs")
        if batch_size:
            raise ClusterError("--batch-size goes with --dask or URL inputs or outputs")
        return None
    options = parse_storage_options(storage_options)

    def execute(config: RunConfig, progress: Progress) -> RunSummary:
        return run_on_dask(
            inputs,
            output,
            config,
            address=address,
            batch_size=batch_size,
            storage_options=options,
            progress=progress,
        )

    return execute
