"""Locations of a cluster run: plain paths and fsspec URLs (:mod:`dicomveil.runs.cluster`).

A plain path is used in place: on a real cluster it must name the same folder on every worker
(a shared file system). An fsspec URL (``s3://bucket/prefix``, ``gs://``, ``file:///...``;
options such as ``endpoint_url`` in ``storage_options`` or the usual environment) is reached
through fsspec: each input object is streamed in 1 MiB chunks into a temporary file on the
worker (:func:`fetch`), and each output is written locally, then streamed to ``<output
URL>/<the path the layout made>`` (:func:`upload`).

Atomicity. Object stores (S3, GCS, Azure) publish an object only when its PUT or multipart
upload completes, so outputs go straight to their key and an aborted upload is discarded.
Other fsspec file systems get a temporary sibling (``.<name>.<random>.dvtmp``) that is moved
onto the final key.

Messages name locations and option keys, never option values (they may be secrets) nor values
read from files.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dicomveil.errors import ClusterError, InputError
from dicomveil.io import TEMP_SUFFIX, remove_stale_temporaries
from dicomveil.runs.batch import Task, discover
from dicomveil.runs.locations import check_locations

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

_CHUNK = 1 << 20  # bytes per read and write when streaming to and from a file system
_BLOCK = 8 << 20  # fsspec block size: read-ahead, and the multipart upload part size
# Object stores publish an object only once its upload completes.
_ATOMIC_PUT = frozenset({"s3", "s3a", "gs", "gcs", "abfs", "abfss", "az"})
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
INSTALL_HINT = "pip install 'dicomveil[cluster]'"


# --------------------------------------------------------------------------------------------
# Locations and options


def is_url(location: str | os.PathLike[str]) -> bool:
    """Tell an fsspec URL from a local path.

    Parameters
    ----------
    location : str or os.PathLike
        An input or output location.

    Returns
    -------
    bool
        True for an fsspec URL (``s3://…``, ``file://…``, ``simplecache::s3://…``); a
        :class:`~pathlib.Path` is always a local path.
    """
    if not isinstance(location, str):
        return False
    return bool(_URL.match(location)) or "::" in location


def parse_storage_options(pairs: Iterable[str]) -> dict[str, Any]:
    """Read ``KEY=VALUE`` pairs (the CLI's ``--storage-option``) as fsspec storage options.

    ``true``/``false`` become booleans and integers become ints; a dotted key
    (``client_kwargs.region_name=eu-west-1``) makes a nested dict.

    Parameters
    ----------
    pairs : Iterable[str]
        The ``KEY=VALUE`` pairs, in order.

    Returns
    -------
    dict[str, Any]
        The storage options.

    Raises
    ------
    ClusterError
        A pair is not ``KEY=VALUE``, or a key is both a value and a table. Errors name the
        key, never the value (it may be a secret).
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
        raise ClusterError(f"URL inputs and outputs need fsspec: {INSTALL_HINT}") from None
    return fsspec


def filesystem(url: str, options: Mapping[str, Any]) -> tuple[AbstractFileSystem, str]:
    """Open the file system of a URL (fsspec caches file system instances).

    Parameters
    ----------
    url : str
        An fsspec URL.
    options : Mapping[str, Any]
        fsspec storage options.

    Returns
    -------
    tuple[AbstractFileSystem, str]
        The file system and the path within it.

    Raises
    ------
    ClusterError
        fsspec, or the protocol's package (s3fs, gcsfs, ...), is missing, or the URL cannot
        be opened with these options.
    """
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


def publishes_atomically(fs: AbstractFileSystem) -> bool:
    """Tell whether a file system publishes an object only once its upload completes.

    Parameters
    ----------
    fs : AbstractFileSystem
        An fsspec file system.

    Returns
    -------
    bool
        True for object stores (S3, GCS, Azure): nothing half-written is ever visible there.
    """
    return bool(_protocols(fs) & _ATOMIC_PUT)


@dataclass(frozen=True)
class RemoteTask(Task):
    """An input object at an fsspec URL (``member``: a file inside it, when it is a zip).

    ``path`` is the URL as a path, for code that wants one; the object is read through
    fsspec only, by its ``url``.

    Attributes
    ----------
    url : str
        The object's URL, with its protocol.
    """

    url: str = ""

    @property
    def source(self) -> str:
        """The input by its URL (and the zip member)."""
        return f"{self.url}!{self.member}" if self.member else self.url


# --------------------------------------------------------------------------------------------
# On the worker: fetching inputs, uploading outputs


def fetch(url: str, options: Mapping[str, Any], folder: Path) -> Path:
    """Stream an object into an owner-only temporary file.

    Parameters
    ----------
    url : str
        The object's fsspec URL.
    options : Mapping[str, Any]
        fsspec storage options.
    folder : Path
        Where the temporary file is made; the caller deletes it after use.

    Returns
    -------
    Path
        The temporary file.

    Raises
    ------
    FileNotFoundError
        There is no such object.
    Exception
        Whatever fsspec raises on other I/O errors (the temporary file is removed).
    """
    fs, path = filesystem(url, options)
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


def upload(local: Path, fs: AbstractFileSystem, path: str, *, atomic: bool) -> None:
    """Stream a local file to ``path`` on a file system.

    Parameters
    ----------
    local : Path
        The file to upload.
    fs : AbstractFileSystem
        The destination file system.
    path : str
        The destination path in ``fs``.
    atomic : bool
        ``fs`` publishes an object only when complete (:func:`publishes_atomically`): write
        straight to the key; else through a temporary sibling that is then moved into place.

    Raises
    ------
    Exception
        Whatever fsspec raises; nothing is published and the temporary sibling is removed.
    """
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
# On the client: discovering inputs, checking and preparing locations


@dataclass(frozen=True)
class FoundInput:
    """An input found by :func:`find_inputs`.

    Attributes
    ----------
    task : Task
        The input: a local file, a zip member, or a :class:`RemoteTask`.
    size : int
        Its size in bytes (0 when unknown, and for zip members).
    """

    task: Task
    size: int


def find_inputs(inputs: Sequence[str | Path], options: Mapping[str, Any]) -> Iterator[FoundInput]:
    """Every input under local paths and fsspec URLs, in a stable order.

    Parameters
    ----------
    inputs : Sequence[str or Path]
        Local files and folders, and fsspec URLs of objects and prefixes.
    options : Mapping[str, Any]
        fsspec storage options.

    Yields
    ------
    FoundInput
        Each input with its size.

    Raises
    ------
    InputError
        A URL that cannot be listed, or names nothing.
    ClusterError
        A URL that cannot be opened.
    """
    for location in inputs:
        if not is_url(location):
            for task in discover([Path(location)]):
                try:
                    size = task.path.stat().st_size if task.member is None else 0
                except OSError:
                    size = 0
                yield FoundInput(task, size)
            continue
        url = str(location)
        fs, root = filesystem(url, options)
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
            yield FoundInput(RemoteTask(Path(object_url), url=object_url), size)


def _as_local(location: str | Path, options: Mapping[str, Any]) -> Path | None:
    """The local path of a plain path or a ``file://`` URL; None for other URLs."""
    if not is_url(location):
        return Path(location)
    fs, root = filesystem(str(location), options)
    return Path(root) if _protocols(fs) & {"file", "local"} else None


def check_remote_locations(
    inputs: Sequence[str | Path],
    output: str | Path,
    options: Mapping[str, Any],
    map_dir: Path | None,
) -> None:
    """Refuse an output inside an input or the reverse (as a local run does).

    ``inputs`` and ``output`` are those of :func:`dicomveil.runs.cluster.run` (local paths
    or fsspec URLs), ``options`` its fsspec storage options, ``map_dir`` its maps' folder
    (refused inside a local output).

    Raises
    ------
    DicomveilError
        For local locations, as :func:`dicomveil.runs.batch.check_locations` raises.
    ClusterError
        An output URL inside an input URL of the same protocol, or the reverse.
    """
    local_output = _as_local(output, options)
    if local_output is not None:
        local_inputs = [_as_local(p, options) for p in inputs]
        check_locations([p for p in local_inputs if p is not None], local_output, map_dir)
        return
    out_fs, out_root = filesystem(str(output), options)
    out_root = out_root.rstrip("/")
    for location in inputs:
        if not is_url(location):
            continue
        in_fs, in_root = filesystem(str(location), options)
        if not (_protocols(in_fs) & _protocols(out_fs)):
            continue
        in_root = in_root.rstrip("/")
        if out_root == in_root or out_root.startswith(in_root + "/"):
            raise ClusterError(f"the output {output} is inside the input {location}")
        if in_root.startswith(out_root + "/"):
            raise ClusterError(f"the input {location} is inside the output {output}")


def prepare_output(output: str | Path, options: Mapping[str, Any]) -> None:
    """Create a local output folder; remove temporaries an interrupted run left behind.

    Parameters
    ----------
    output : str or Path
        A local path or an fsspec URL.
    options : Mapping[str, Any]
        fsspec storage options.
    """
    if not is_url(output):
        Path(output).mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(Path(output))
        return
    fs, root = filesystem(str(output), options)
    if publishes_atomically(fs):
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
