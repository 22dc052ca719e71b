"""Cluster runs: the batch run on Dask, reading from and writing to any fsspec location.

Pseudonyms, UIDs and date offsets are keyed hashes, so workers share no state: a run on a
Dask cluster writes the same bytes as :func:`dicomveil.runs.batch.run` on one machine. The client
lists the inputs, cuts them into batches and submits one Dask task per batch; each task, on
its worker, de-identifies its files with the same per-file pipeline as a local run
(:class:`dicomveil.runs.batch._Worker`, built once per worker thread and run) and hands back the
results, which the client merges into a :class:`~dicomveil.runs.batch.RunSummary`, shows as
progress and writes into the maps (``map_dir``, a local folder).

Locations. A plain path is used in place: on a real cluster it must name the same folder on
every worker (a shared file system). An fsspec URL (``s3://bucket/prefix``, ``gs://``,
``file:///...``; options such as ``endpoint_url`` in ``storage_options`` or the usual
environment) is reached through fsspec: each input object is streamed in 1 MiB chunks into a
temporary file on the worker (owner-only, deleted after use), and each output is written
locally, then streamed to ``<output URL>/<the path the layout made>``.

Atomicity. Object stores (S3, GCS, Azure) publish an object only when its PUT or multipart
upload completes, so outputs go straight to their key and an aborted upload is discarded.
Other fsspec file systems get a temporary sibling (``.<name>.<random>.dvtmp``) that is moved
onto the final key. Together with deterministic bytes this makes retries safe: a task that
fails (or a worker that dies) is run again and rewrites the same keys with the same bytes.

Messages name inputs and outputs, never values read from files. The key and the profile
travel to the workers pickled over the Dask comm, and results (which carry the original
patient IDs for the maps) travel back: use TLS for the comm (see the README).
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
import posixpath
import re
import shutil
import tempfile
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pydicom

from dicomveil._version import __version__
from dicomveil.errors import DicomveilError, InputError
from dicomveil.io import TEMP_SUFFIX, remove_stale_temporaries
from dicomveil.runs.batch import (
    Collector,
    FileResult,
    Outcome,
    RunConfig,
    RunSummary,
    Task,
    _Worker,
    check_locations,
    discover,
    write_maps,
)

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

_CHUNK = 1 << 20  # bytes per read and write when streaming to and from a file system
_BLOCK = 8 << 20  # fsspec block size: read-ahead, and the multipart upload part size
_MAX_AUTO_BATCH = 64  # files per task at most, when the batch size is automatic
_TASKS_PER_SLOT = 4  # automatic batch size: about this many tasks per worker thread
_MAX_BATCH_BYTES = 256 * 1024 * 1024  # a batch closes before it holds more input than this
_SITES_PER_THREAD = 4  # runs whose worker state one worker thread keeps
# Object stores publish an object only once its upload completes.
_ATOMIC_PUT = frozenset({"s3", "s3a", "gs", "gcs", "abfs", "abfss", "az"})
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_INSTALL_HINT = "pip install 'dicomveil[cluster]'"

Progress = Callable[[FileResult], None]
Runner = Callable[[RunConfig, Progress], RunSummary]


class ClusterError(DicomveilError):
    """A cluster run that cannot start: missing extra, bad location or options, no scheduler."""


# --------------------------------------------------------------------------------------------
# Locations and options


def is_url(location: str | os.PathLike[str]) -> bool:
    """True for an fsspec URL (``s3://…``, ``file://…``, ``simplecache::s3://…``); a
    :class:`~pathlib.Path` is always a local path."""
    if not isinstance(location, str):
        return False
    return bool(_URL.match(location)) or "::" in location


def parse_storage_options(pairs: Iterable[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs (the CLI's ``--storage-option``) as fsspec storage options.

    ``true``/``false`` become booleans and integers become ints; a dotted key
    (``client_kwargs.region_name=eu-west-1``) makes a nested dict. Errors name the key, never
    the value (it may be a secret).
    """
    options: dict[str, Any] = {}
    for number, pair in enumerate(pairs, start=1):
        name, sep, text = pair.partition("=")
        name = name.strip()
        if not sep or not name or any(not part for part in name.split(".")):
            raise ClusterError(f"storage option {number}: expected KEY=VALUE")
        value: Any = text
        if text.lower() in ("true", "false"):
            value = text.lower() == "true"
        elif re.fullmatch(r"-?\d+", text):
            value = int(text)
        *parents, leaf = name.split(".")
        target = options
        for part in parents:
            nested = target.setdefault(part, {})
            if not isinstance(nested, dict):
                raise ClusterError(f"storage option {name}: {part} is already a plain value")
            target = nested
        target[leaf] = value
    return options


def _fsspec() -> Any:
    try:
        import fsspec
    except ImportError:
        raise ClusterError(f"URL inputs and outputs need fsspec: {_INSTALL_HINT}") from None
    return fsspec


def _filesystem(url: str, options: Mapping[str, Any]) -> tuple[AbstractFileSystem, str]:
    """The file system and the path within it (fsspec caches file system instances)."""
    try:
        fs, path = _fsspec().core.url_to_fs(url, **options)
    except ImportError as exc:  # the protocol's package (s3fs, gcsfs, ...) is missing
        raise ClusterError(f"{url}: {exc}") from None
    except (ValueError, TypeError) as exc:
        raise ClusterError(f"{url}: cannot open ({type(exc).__name__})") from None
    return fs, str(path)


def _protocols(fs: AbstractFileSystem) -> set[str]:
    protocol = fs.protocol
    return {protocol} if isinstance(protocol, str) else set(protocol)


@dataclass(frozen=True)
class RemoteTask(Task):
    """An input object at an fsspec URL (``member``: a file inside it, when it is a zip).

    ``path`` is the URL as a path, for code that wants one; the object is read through
    fsspec only, by its ``url``.
    """

    url: str = ""

    @property
    def display(self) -> str:
        return f"{self.url}!{self.member}" if self.member else self.url


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

    def __repr__(self) -> str:  # Dask logs the arguments of failed tasks
        return f"<dicomveil run {self.token[:8]}>"


class _Site:
    """A worker thread's state for one run: the per-file pipeline (built once), the output
    file system, and during a task a private scratch folder (fetched inputs, staged
    outputs) that is removed when the task ends, whatever happens."""

    def __init__(self, job: _Job) -> None:
        self.config = job.config
        self.worker = _Worker(job.config)
        self.output = job.config.output.resolve()  # where the worker writes
        self.scratch: Path | None = None
        self.fs: AbstractFileSystem | None = None
        self.root = ""
        self.atomic = False
        if job.output_url is not None:
            self.fs, self.root = _filesystem(job.output_url, job.storage_options)
            self.atomic = bool(_protocols(self.fs) & _ATOMIC_PUT)

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


def _process_remote(job: _Job, site: _Site, item: RemoteTask) -> list[FileResult]:
    assert site.scratch is not None
    try:
        fetched = _fetch(item.url, job.storage_options, site.scratch)
    except FileNotFoundError:
        return [FileResult(item, Outcome.FAILED, "cannot read: no such object")]
    try:
        results = []
        for task in discover([fetched]):  # a zip archive gives one task per member
            result = site.worker.process(task)
            result.task = RemoteTask(item.path, task.member, url=item.url)
            results.append(_deliver(site, result))
        return results
    finally:
        fetched.unlink(missing_ok=True)


def _fetch(url: str, options: Mapping[str, Any], folder: Path) -> Path:
    """Stream an object into an owner-only temporary file in ``folder``."""
    fs, path = _filesystem(url, options)
    fd, name = tempfile.mkstemp(prefix=".fetch-", dir=folder)
    try:
        with (
            os.fdopen(fd, "wb") as out,
            fs.open(path, "rb", block_size=_BLOCK, cache_type="readahead") as src,
        ):
            shutil.copyfileobj(src, out, _CHUNK)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


def _deliver(site: _Site, result: FileResult) -> FileResult:
    """Move a written output to the output location; its result names it relative to the
    output URL (or by its local path, when the output is a local folder)."""
    if result.outcome is not Outcome.WRITTEN or result.output is None or site.fs is None:
        return result
    staged = result.output
    relative = staged.relative_to(site.output).as_posix()
    try:
        _upload(staged, site.fs, posixpath.join(site.root, relative), atomic=site.atomic)
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


def _upload(local: Path, fs: AbstractFileSystem, path: str, *, atomic: bool) -> None:
    """Stream a local file to ``path``: straight to the key on an object store (published
    when complete), else through a temporary sibling that is then moved into place."""
    parent, name = posixpath.split(path)
    target = path if atomic else posixpath.join(parent, f".{name}.{uuid.uuid4().hex}{TEMP_SUFFIX}")
    if not atomic:
        fs.makedirs(parent, exist_ok=True)
    out = fs.open(target, "wb", block_size=_BLOCK)
    try:
        with local.open("rb") as src:
            shutil.copyfileobj(src, out, _CHUNK)
        out.close()
        if not atomic:
            fs.mv(target, path)
    except BaseException:
        _abandon(out)
        if not atomic:
            with contextlib.suppress(Exception):
                fs.rm(target)
        raise


def _abandon(out: Any) -> None:
    """Drop a half-written fsspec file without publishing it."""
    from fsspec.spec import AbstractBufferedFile

    if not isinstance(out, AbstractBufferedFile):
        with contextlib.suppress(Exception):
            out.close()  # a plain file (local): its temporary name is removed next
        return
    if out.closed:
        return
    with contextlib.suppress(Exception):
        out.discard()  # aborts a multipart upload (s3fs)
    out.closed = True  # closing, even by the garbage collector, would publish it


# --------------------------------------------------------------------------------------------
# On the client: discovering inputs, batching, running


@dataclass(frozen=True)
class _Input:
    task: Task
    size: int


def _discover(inputs: Sequence[str | Path], options: Mapping[str, Any]) -> Iterator[_Input]:
    for location in inputs:
        if not is_url(location):
            for task in discover([Path(location)]):
                try:
                    size = task.path.stat().st_size if task.member is None else 0
                except OSError:
                    size = 0
                yield _Input(task, size)
            continue
        url = str(location)
        fs, root = _filesystem(url, options)
        try:
            if fs.isfile(root):
                entries = [(root, int(fs.size(root) or 0))]
            else:
                found = fs.find(root, detail=True)
                entries = sorted(
                    (name, int(info.get("size") or 0))
                    for name, info in found.items()
                    if info.get("type") != "directory"
                )
        except FileNotFoundError:
            entries = []
        except Exception as exc:  # credentials, network, permissions: whatever fsspec raises
            raise InputError(f"cannot list ({type(exc).__name__})", path=url) from None
        if not entries:
            raise InputError("no such file or folder", path=url)
        for name, size in entries:
            object_url = fs.unstrip_protocol(name)
            yield _Input(RemoteTask(Path(object_url), url=object_url), size)


def _batches(found: Sequence[_Input], batch_size: int, slots: int) -> list[list[Task]]:
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


def _as_local(location: str | Path, options: Mapping[str, Any]) -> Path | None:
    """The local path of a plain path or a ``file://`` URL; None for other URLs."""
    if not is_url(location):
        return Path(location)
    fs, root = _filesystem(str(location), options)
    return Path(root) if _protocols(fs) & {"file", "local"} else None


def _check_locations(
    inputs: Sequence[str | Path], output: str | Path, options: Mapping[str, Any], config: RunConfig
) -> None:
    """Refuse an output inside an input or the reverse (as a local run does), and maps
    inside a local output."""
    local_output = _as_local(output, options)
    if local_output is not None:
        local_inputs = [_as_local(p, options) for p in inputs]
        check_locations([p for p in local_inputs if p is not None], local_output, config.map_dir)
        return
    out_fs, out_root = _filesystem(str(output), options)
    out_root = out_root.rstrip("/")
    for location in inputs:
        if not is_url(location):
            continue
        in_fs, in_root = _filesystem(str(location), options)
        if not (_protocols(in_fs) & _protocols(out_fs)):
            continue
        in_root = in_root.rstrip("/")
        if out_root == in_root or out_root.startswith(in_root + "/"):
            raise ClusterError(f"the output {output} is inside the input {location}")
        if in_root.startswith(out_root + "/"):
            raise ClusterError(f"the input {location} is inside the output {output}")


def _prepare_output(output: str | Path, options: Mapping[str, Any]) -> None:
    """Create a local output folder; remove temporaries an interrupted run left behind."""
    if not is_url(output):
        Path(output).mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(Path(output))
        return
    fs, root = _filesystem(str(output), options)
    if _protocols(fs) & _ATOMIC_PUT:
        return  # nothing half-written is ever visible there
    try:
        names = fs.find(root)
    except FileNotFoundError:
        return
    for name in names:
        base = posixpath.basename(name)
        if base.startswith(".") and base.endswith(TEMP_SUFFIX):
            with contextlib.suppress(Exception):
                fs.rm(name)


Outcomes = Iterator[tuple[list[Task], list[FileResult] | BaseException]]


class _Executor(Protocol):
    slots: int

    def map(self, job: _Job, batches: Sequence[list[Task]], retries: int) -> Outcomes: ...


class _Inline:
    """Batches one after the other in this process (one worker)."""

    slots = 1

    def map(self, job: _Job, batches: Sequence[list[Task]], retries: int) -> Outcomes:
        try:
            for batch in batches:
                for attempt in range(retries + 1):
                    try:
                        yield batch, _run_batch(job, batch)
                        break
                    except Exception as exc:
                        if attempt == retries:
                            yield batch, exc
        finally:
            sites: OrderedDict[str, _Site] | None = getattr(_THREAD, "sites", None)
            if sites is not None:
                sites.pop(job.token, None)


_pool_job: _Job | None = None


def _init_pool(job: _Job) -> None:
    global _pool_job
    _pool_job = job


def _run_pool_batch(items: list[Task]) -> list[FileResult]:
    assert _pool_job is not None
    return _run_batch(_pool_job, items)


class _Pool:
    """Batches in worker processes of this machine (``workers`` of them)."""

    def __init__(self, workers: int) -> None:
        self.slots = workers

    def map(self, job: _Job, batches: Sequence[list[Task]], retries: int) -> Outcomes:
        with ProcessPoolExecutor(self.slots, initializer=_init_pool, initargs=(job,)) as pool:
            queue = iter(batches)
            pending: dict[Future[list[FileResult]], tuple[list[Task], int]] = {}

            def submit(batch: list[Task], attempt: int) -> None:
                pending[pool.submit(_run_pool_batch, batch)] = (batch, attempt)

            for batch in queue:
                submit(batch, 0)
                if len(pending) >= self.slots * 2:
                    break
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    batch, attempt = pending.pop(future)
                    exc = future.exception()
                    if exc is not None and attempt < retries:
                        submit(batch, attempt + 1)
                        continue
                    yield batch, exc if exc is not None else future.result()
                    nxt = next(queue, None)
                    if nxt is not None:
                        submit(nxt, 0)


class _Dask:
    """Batches as Dask tasks on a scheduler (``address``) or a new local cluster."""

    def __init__(self, address: str, workers: int) -> None:
        try:
            # Untyped in parts: used as Any.
            distributed: Any = importlib.import_module("distributed")
        except ImportError:
            raise ClusterError(f"--dask needs dask.distributed: {_INSTALL_HINT}") from None
        self._stack = contextlib.ExitStack()
        try:
            if address == "local":
                cluster = distributed.LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address="127.0.0.1:0",  # HTTP (health, dashboard): a free port
                )
                self._stack.enter_context(cluster)
                self.client = distributed.Client(cluster, set_as_default=False)
            else:
                self.client = distributed.Client(address, set_as_default=False)
            self._stack.enter_context(self.client)
        except (OSError, ValueError) as exc:
            self._stack.close()
            where = "a local Dask cluster" if address == "local" else f"the scheduler {address}"
            raise ClusterError(f"cannot start on {where} ({type(exc).__name__})") from None
        self.slots = max(1, sum(self.client.nthreads().values()))

    def close(self) -> None:
        self._stack.close()

    def map(self, job: _Job, batches: Sequence[list[Task]], retries: int) -> Outcomes:
        as_completed: Any = importlib.import_module("distributed").as_completed
        shared = self.client.scatter(job, broadcast=True, hash=False)
        futures = {
            self.client.submit(
                _run_batch,
                shared,
                batch,
                key=f"dicomveil-batch-{index}-{job.token}",
                retries=retries,
                pure=False,
            ): batch
            for index, batch in enumerate(batches)
        }
        for future in as_completed(futures, loop=self.client.loop):
            batch = futures.pop(future)
            try:
                outcome: list[FileResult] | BaseException = future.result()
            except Exception as exc:
                outcome = exc
            future.release()
            yield batch, outcome


@contextlib.contextmanager
def _executor(address: str | None, workers: int, n_inputs: int) -> Iterator[_Executor]:
    workers = workers or os.cpu_count() or 1
    if address is not None:
        dask = _Dask(address, workers)
        try:
            yield dask
        finally:
            dask.close()
    elif min(workers, n_inputs) <= 1:
        yield _Inline()
    else:
        yield _Pool(min(workers, n_inputs))


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

    ``inputs`` and ``output`` are local paths or fsspec URLs (``config.output`` is ignored;
    ``config.map_dir``, if set, is a local folder). ``address``: a scheduler address
    (``tcp://host:8786``), ``"local"`` for a new local cluster of ``config.workers``
    processes (0: one per core), or None for worker processes of this machine without Dask.
    ``batch_size``: files per task (0: automatic). A task that raises is run again up to
    ``retries`` times; when it still fails, its files are reported failed. Each result's
    ``output`` is the file's local path, or its path relative to an output URL.
    """
    options = dict(storage_options or {})
    if config.map_dir is not None and is_url(str(config.map_dir)):
        raise ClusterError("the map folder must be a local folder")
    _check_locations(inputs, output, options, config)
    found = list(_discover(inputs, options))
    local_output = None if is_url(output) else Path(output).resolve()
    job = _Job(
        token=uuid.uuid4().hex,
        config=config if local_output is None else replace(config, output=local_output),
        output_url=None if local_output is not None else str(output),
        storage_options=options,
        cwd=str(Path.cwd()),
    )
    _prepare_output(output, options)
    summary = RunSummary()
    collect = Collector(summary, progress)

    if found:
        with _executor(address, config.workers, len(found)) as executor:
            batches = _batches(found, batch_size, executor.slots)
            for batch, outcome in executor.map(job, batches, retries):
                if isinstance(outcome, BaseException):
                    # Our own errors name no values read from files; others may: type only.
                    why = str(outcome) if isinstance(outcome, DicomveilError) else ""
                    reason = (
                        f"the task failed {retries + 1} time(s) ({type(outcome).__name__}"
                        f"{': ' + why if why else ''}); run again to complete the output"
                    )
                    outcome = [FileResult(task, Outcome.FAILED, reason) for task in batch]
                for result in outcome:
                    collect(result)
    if config.map_dir is not None:
        write_maps(config.map_dir, summary)
    return summary


def runner_for(
    inputs: Sequence[str],
    output: str,
    *,
    address: str | None,
    storage_options: Sequence[str] = (),
    batch_size: int = 0,
) -> Runner | None:
    """For the command line: a runner through :func:`run_on_dask` when Dask is asked for or
    a location is a URL (``storage_options``: ``KEY=VALUE`` pairs); None for a plain run."""
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
