"""C-STORE: de-identify on receive, write to the folder and/or the queue, then answer.

The received data set is written with the negotiated transfer syntax as a Part 10 file to a
spool file and goes through the pipeline of ``dicomveil run``
(:func:`~dicomveil.io.read_source`, :meth:`~dicomveil.engine.Engine.deidentify`,
:func:`~dicomveil.io.write_output`), so the output has the bytes ``dicomveil run`` writes
for the same input file, profile and key. Nothing is ever transcoded. A queued instance
wakes the route's forwarder.

With the release gate on (the route's ``verify = true``, the default), the instance is
first written to a staging folder beside the spool, checked there by the verifier against
the received data set (as ``run --verify`` checks a file against its input), and only then
copied to the route's folder and queue: nothing the gate stops is ever visible to a reader
of the output or to the forwarder. A stopped instance is moved to the state folder's
``gated/<route>/`` (owner-only files) for review, and answered as withheld with the gate's
reason (check, category, element: never a value).

C-STORE statuses (the ErrorComment says why, without values from the data set):

========  =================================================================================
0x0000    de-identified and on disk (folder and/or queue), fsynced
0xB006    withheld (``withheld_status = "warning"``, the default): the profile will not
          release this object (burned-in text, an encapsulated document...), or the release
          gate stopped it (the verifier flagged the de-identified instance). It is neither
          written nor forwarded; retrying cannot change that, so the sender is told it may
          stop trying ("Elements Discarded": here the whole object)
0xC001    withheld, with ``withheld_status = "failure"``
0xC000    the data set cannot be parsed (truncated, malformed, unknown transfer syntax)
0xC002    the data set cannot be de-identified safely (a value the engine refuses)
0xA900    the data set does not match the request (SOP Class or Instance UID differ)
0xA700    out of resources: the disk is full, or the association sent more instances than
          ``max_instances_per_association``
0x0110    processing failure: any other error while writing
========  =================================================================================
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import re
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, cast

from pydicom.dataset import Dataset
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event

from dicomveil.errors import DicomveilError, InputError, safe_reason
from dicomveil.gateway.cohort import Cohort
from dicomveil.gateway.config import GatewayConfig, WithheldStatus
from dicomveil.gateway.dimse import spilled_file, write_data_set
from dicomveil.gateway.events import EventKind, GatewayEvent
from dicomveil.gateway.route import PIPELINE_LOCK, Handler, Peer, Route, status_dataset
from dicomveil.gateway.status import StatusBoard
from dicomveil.io import IMPLEMENTATION_CLASS_UID, SourceFile, copy_file, fsync_dir, read_source
from dicomveil.runs.batch import FileResult, Outcome, Task, deidentify_source
from dicomveil.runs.maps import gated

if TYPE_CHECKING:
    from dicomveil.gateway.pool import WorkerPool

__all__ = [
    "StoreHandler",
    "StoreStatus",
    "Stored",
    "close_spool",
    "release_spool",
    "store_instance",
]

LOGGER = logging.getLogger("dicomveil.gateway")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class StoreStatus(IntEnum):
    """C-STORE response statuses of the gateway (PS3.4 Table B.2-1)."""

    SUCCESS = 0x0000
    WITHHELD_WARNING = 0xB006
    WITHHELD_FAILURE = 0xC001
    MALFORMED = 0xC000
    CANNOT_DEIDENTIFY = 0xC002
    MISMATCH = 0xA900
    OUT_OF_RESOURCES = 0xA700
    PROCESSING_FAILURE = 0x0110


@dataclass
class Stored:
    """What became of one instance: its file result, the status, whether it was queued."""

    result: FileResult
    status: StoreStatus
    queued: bool = False


def _write_failure(task: Task, exc: OSError, what: str) -> Stored:
    """A file that cannot be written: out of resources when the disk is full or over quota,
    else a processing failure; the reason is ``what`` and the error's text."""
    status = (
        StoreStatus.OUT_OF_RESOURCES
        if exc.errno in (errno.ENOSPC, errno.EDQUOT)
        else StoreStatus.PROCESSING_FAILURE
    )
    reason = f"{what} ({exc.strerror or type(exc).__name__})"
    return Stored(FileResult(task, Outcome.FAILED, reason), status)


def _failure(task: Task, exc: Exception) -> Stored:
    """The result of an instance whose pipeline raised: the status says why."""
    if isinstance(exc, DicomveilError):  # the engine refuses a value, or the crosswalk
        return Stored(FileResult(task, Outcome.FAILED, str(exc)), StoreStatus.CANNOT_DEIDENTIFY)
    if isinstance(exc, OSError):
        return _write_failure(task, exc, "cannot write the output")
    reason = f"malformed element: cannot de-identify ({type(exc).__name__})"  # pydicom's
    return Stored(FileResult(task, Outcome.FAILED, reason), StoreStatus.MALFORMED)


def store_instance(route: Route, path: Path, task: Task, expect: tuple[str, str]) -> Stored:
    """De-identify one spooled Part 10 file exactly as ``dicomveil run`` would, and write
    it, fsynced, to the route's folder and/or queue.

    Parameters
    ----------
    route : Route
        The route the instance came in on.
    path : Path
        The spooled file.
    task : Task
        Names the instance in the file result (never a value from the data set).
    expect : tuple of str
        The SOP Class and SOP Instance UIDs of the C-STORE request.

    Returns
    -------
    Stored
        WRITTEN with SUCCESS, WITHHELD, or FAILED with the status that says why; every
        error is turned into a result, none is raised.
    """
    try:
        source = read_source(path)
    except InputError as exc:
        return Stored(FileResult(task, Outcome.FAILED, exc.reason), StoreStatus.MALFORMED)
    ds = source.dataset
    if source.is_dicomdir:
        return Stored(
            FileResult(task, Outcome.FAILED, "a DICOMDIR is not an instance to store"),
            StoreStatus.MISMATCH,
        )
    found = (str(ds.get("SOPClassUID", "") or ""), str(ds.get("SOPInstanceUID", "") or ""))
    if found != expect:
        return Stored(
            FileResult(
                task,
                Outcome.FAILED,
                "the data set's SOP Class or Instance UID differs from the C-STORE request",
            ),
            StoreStatus.MISMATCH,
        )
    if route.gate is not None and not route.compiled.copy:
        # One stage per process and thread, kept (its layout folders are reused by the
        # next instance of the series; the spool is emptied when the gateway starts).
        stage = path.parent / f"stage-{os.getpid()}-{threading.get_ident()}"
        return _store_gated(route, source, task, path, stage)
    engine = route.engine()
    targets: list[Path] = []

    def destination(ds: Dataset, pseudonym: str) -> Path:
        targets.extend(route.targets(ds, pseudonym))
        return targets[0]

    try:
        # The pipeline of ``dicomveil run`` itself: same bytes, clean-pixel-data included.
        done = deidentify_source(engine, source, destination, durable=True)
        if isinstance(done, str):
            return Stored(FileResult(task, Outcome.WITHHELD, done), StoreStatus.WITHHELD_WARNING)
        for extra in targets[1:]:
            copy_file(done.output, extra, durable=True)
    except Exception as exc:
        return _failure(task, exc)
    result = done.file_result(task)
    return Stored(result, StoreStatus.SUCCESS, route.queue is not None)


def _store_gated(
    route: Route, source: SourceFile, task: Task, received: Path, stage: Path
) -> Stored:
    """:func:`store_instance` with the release gate: written to ``stage``, checked, then
    copied to the route's destinations (see the module docstring)."""
    gate = route.gate
    assert gate is not None
    staged: Path | None = None
    places: list[Path] = []  # the staged file, then the route's destinations

    def destination(ds: Dataset, pseudonym: str) -> Path:
        places.extend(route.targets(ds, pseudonym, stage))
        return places[0]

    try:
        done = deidentify_source(route.engine(), source, destination)
        if isinstance(done, str):
            return Stored(FileResult(task, Outcome.WITHHELD, done), StoreStatus.WITHHELD_WARNING)
        assert done.result is not None and done.result.dataset is not None
        staged = done.output
        reason = gated(gate, done.output, stage, received, done.result.uid_map, route.gated.parent)
        if reason is not None:
            withheld = FileResult(task, Outcome.WITHHELD, reason)
            return Stored(withheld, StoreStatus.WITHHELD_WARNING)
        first, *others = places[1:]
        _place(done.output, first)
        for target in others:
            copy_file(first, target, durable=True)
    except Exception as exc:
        return _failure(task, exc)
    finally:
        if staged is not None:
            with contextlib.suppress(OSError):
                staged.unlink()  # stopped, failed, or already moved
    result = done.file_result(task)
    return Stored(replace(result, output=places[1]), StoreStatus.SUCCESS, route.queue is not None)


def spool_header(sop_class: str, sop_instance: str, transfer_syntax: str) -> bytes:
    """The preamble and File Meta Information of a received data set, as Part 10 wants them
    (PS3.10 7.1): what pynetdicom's ``Event.encoded_dataset`` writes, without building and
    validating a pydicom dataset per instance (a tenth of the receiving thread's time).

    Parameters
    ----------
    sop_class, sop_instance : str
        The C-STORE request's Affected SOP Class and Instance UIDs.
    transfer_syntax : str
        The presentation context's transfer syntax.

    Returns
    -------
    bytes
        128 zero bytes, ``DICM``, and group 0002 in explicit VR little endian.
    """
    body = b"".join(
        (
            _meta_element(0x0001, b"OB", b"\x00\x01"),
            _meta_element(0x0002, b"UI", _even(sop_class)),
            _meta_element(0x0003, b"UI", _even(sop_instance)),
            _meta_element(0x0010, b"UI", _even(transfer_syntax)),
            _meta_element(0x0012, b"UI", _even(IMPLEMENTATION_CLASS_UID)),
        )
    )
    length = _meta_element(0x0000, b"UL", struct.pack("<I", len(body)))
    return b"\x00" * 128 + b"DICM" + length + body


def _even(uid: str) -> bytes:
    data = uid.encode("ascii")
    return data + b"\x00" if len(data) % 2 else data


def _meta_element(element: int, vr: bytes, value: bytes) -> bytes:
    if vr == b"OB":  # a 4-byte length after two reserved bytes (PS3.5 7.1.2)
        return struct.pack("<HH2sHI", 0x0002, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


def _place(staged: Path, target: Path) -> None:
    """Move a checked file into place durably (its data fsynced, renamed, the folder
    fsynced), or copy it so where it cannot be renamed (another file system)."""
    fd = os.open(staged, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        try:
            staged.replace(target)
        except FileNotFoundError:
            if not staged.exists():
                raise
            target.parent.mkdir(parents=True, exist_ok=True)
            staged.replace(target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        copy_file(staged, target, durable=True)
        return
    fsync_dir(target.parent)


class StoreHandler(Handler):
    """The C-STORE service: counts, events and the status of each instance received.

    Parameters
    ----------
    config : GatewayConfig
        The gateway's configuration (instance limit, status of withheld objects).
    spool : Path
        The folder received data sets are spooled to.
    board : StatusBoard
        Counts and errors for the status file.
    emit : callable
        Called with the kind and the event of everything that happens to an instance.
    """

    def __init__(
        self,
        config: GatewayConfig,
        spool: Path,
        board: StatusBoard,
        emit: Callable[[EventKind, GatewayEvent], None],
    ) -> None:
        super().__init__(config, board)
        self.spool = spool
        self.emit = emit
        self.cohort: Cohort | None = None  # set by the gateway when it starts
        self.pool: WorkerPool | None = None  # set by the gateway when it starts

    def _joins_cohort(self, route: Route, result: FileResult) -> None:
        """A written instance joins its project's cohort (what query routes answer for)."""
        if self.cohort is not None and (result.patient_id or result.uid_map):
            self.cohort.record(
                route.project,
                result.patient_id or "",
                result.pseudonym,
                result.uid_map,
                own=[uid for uid in result.instance_uids if uid],
            )

    def __call__(self, event: Event, peer: Peer | None) -> Dataset:
        """Answer one C-STORE request (pynetdicom's ``EVT_C_STORE``).

        Returns
        -------
        Dataset
            The response status (see :class:`StoreStatus`), with an Error Comment.
        """
        if peer is None:
            return status_dataset(StoreStatus.PROCESSING_FAILURE, "no route for this association")
        route = peer.route
        if route.config.output is None and route.queue is None:
            return status_dataset(
                StoreStatus.PROCESSING_FAILURE, "this route does not store instances"
            )
        peer.count += 1
        index = peer.count
        task = Task(Path(f"c-store:{_safe(peer.calling_ae)}:{peer.serial}:{index}"))
        if index > self.config.max_instances_per_association:
            return status_dataset(
                StoreStatus.OUT_OF_RESOURCES, "too many instances in one association"
            )
        stored = self.settle(peer, task, lambda: self._store(event, peer, task))
        result = stored.result
        if result.outcome is Outcome.WRITTEN:
            return status_dataset(StoreStatus.SUCCESS)
        if result.outcome is Outcome.WITHHELD:
            code = (
                StoreStatus.WITHHELD_FAILURE
                if self.config.withheld_status is WithheldStatus.FAILURE
                else StoreStatus.WITHHELD_WARNING
            )
            return status_dataset(code, f"withheld: {result.reason}")
        return status_dataset(stored.status, result.reason)

    def settle(self, peer: Peer, task: Task, store: Callable[[], Stored]) -> Stored:
        """Receive one instance: count it, run ``store`` (the pipeline), and count, report
        and queue what became of it; the written instance joins the cohort.

        Parameters
        ----------
        peer : Peer
            Who sent it, on which route (an association, or a STOW-RS request).
        task : Task
            Names the instance in the results (never a value from the data set).
        store : callable
            Runs the pipeline (see :meth:`pipeline`) and returns what became of it.

        Returns
        -------
        Stored
            The result: an exception of ``store`` is a processing failure.
        """
        route = peer.route
        self.board.count(route.name, EventKind.RECEIVED)
        self.emit(EventKind.RECEIVED, self._event(EventKind.RECEIVED, peer, None))
        try:
            stored = store()
        except Exception as exc:  # never let a data set take the handler down
            LOGGER.error("route %s: storing failed (%s)", route.name, safe_reason(exc))
            stored = Stored(
                FileResult(task, Outcome.FAILED, f"internal error ({type(exc).__name__})"),
                StoreStatus.PROCESSING_FAILURE,
            )
        result = stored.result
        if result.outcome is Outcome.WRITTEN:
            self._joins_cohort(route, result)
            self.board.count(route.name, EventKind.WRITTEN)
            self.emit(EventKind.WRITTEN, self._event(EventKind.WRITTEN, peer, result))
            if stored.queued and route.forwarder is not None:
                route.forwarder.notify()
        elif result.outcome is Outcome.WITHHELD:
            self.board.count(route.name, EventKind.WITHHELD)
            self.emit(EventKind.WITHHELD, self._event(EventKind.WITHHELD, peer, result))
        else:
            self.board.count(route.name, EventKind.FAILED)
            self.board.error(
                route.name, f"{peer.service} from {peer.calling_ae} failed: {result.reason}"
            )
            self.emit(EventKind.FAILED, self._event(EventKind.FAILED, peer, result, stored.status))
            LOGGER.warning(
                "route %s: an instance from %s failed (0x%04X): %s",
                route.name,
                peer.calling_ae,
                stored.status,
                result.reason,
            )
        return stored

    def pipeline(self, route: Route, spool: Path, task: Task, expect: tuple[str, str]) -> Stored:
        """De-identify and write one spooled instance (:func:`store_instance`): in a worker
        process, or in this one (one at a time) when there are none. The arguments are
        :func:`store_instance`'s."""
        if self.pool is None:
            with PIPELINE_LOCK:
                return store_instance(route, spool, task, expect)
        return self.pool.store(route, spool, task, expect)

    def _store(self, event: Event, peer: Peer, task: Task) -> Stored:
        request = cast(C_STORE, event.request)
        expect = (
            str(request.AffectedSOPClassUID or ""),
            str(request.AffectedSOPInstanceUID or ""),
        )
        received = cast(io.BytesIO, request.DataSet)
        spilled = spilled_file(received)
        try:
            data = received.getbuffer()
            header = spool_header(expect[0], expect[1], str(event.context.transfer_syntax or ""))
        except Exception:
            return Stored(
                FileResult(task, Outcome.FAILED, "the data set cannot be read"),
                StoreStatus.MALFORMED,
            )
        # One spool file per association, overwritten by each instance: making a file and
        # removing it for every instance cost 0.4-0.8 ms of the kernel's time each on ext4
        # without a journal, whose every new file is placed after a scan past the files
        # removed in the last minutes (benchmarks/README.md, "Making files").
        if peer.spool is None:
            peer.spool = self.spool / f"rx-{peer.serial}.dcm"
        spool = peer.spool
        peer.storing = True
        try:
            try:
                fd = os.open(spool, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(header)
                    write_data_set(fh, data, received)  # a large one: from its file
                    fh.truncate()  # what a longer instance before left after this one's end
            except OSError as exc:
                release_spool(peer)
                return _write_failure(task, exc, "cannot spool the data set")
            finally:
                data.release()
                if spilled is not None:
                    spilled.close()  # the unnamed file goes
            return self.pipeline(peer.route, spool, task, expect)
        finally:
            peer.storing = False
            if peer.closed:  # the association ended meanwhile (see close_spool)
                release_spool(peer)

    def _event(
        self, kind: EventKind, peer: Peer, result: FileResult | None, status: int | None = None
    ) -> GatewayEvent:
        destinations = []
        if peer.route.config.output is not None:
            destinations.append("folder")
        if peer.route.config.forward is not None:
            destinations.append("queue")
        return GatewayEvent(
            kind,
            peer.route.name,
            calling_ae=peer.calling_ae,
            address=peer.address,
            result=result,
            destination="+".join(destinations),
            status=status,
        )


def close_spool(peer: Peer) -> None:
    """The association ended: remove its spool file, or have the instance it is storing
    remove it when done (its worker may not have read it yet).

    Parameters
    ----------
    peer : Peer
        The association's peer.
    """
    peer.closed = True
    if not peer.storing:
        release_spool(peer)


def release_spool(peer: Peer) -> None:
    """Remove the association's spool file (it ended, or its file could not be written).

    Parameters
    ----------
    peer : Peer
        The association's peer; its ``spool`` is None afterwards.
    """
    spool, peer.spool = peer.spool, None
    if spool is not None:
        with contextlib.suppress(OSError):
            spool.unlink()


def _safe(text: str) -> str:
    return _UNSAFE.sub("_", text)[:16] or "_"
