"""The gateway's DICOM node: a pynetdicom AE that de-identifies on receive and forwards.

What it answers (PS3.4):

* **C-ECHO** (Verification).
* **C-STORE** for every storage SOP class pynetdicom knows, in every transfer syntax that
  both pydicom and pynetdicom know (native, deflated and encapsulated): the received data
  set is written with the negotiated transfer syntax as a Part 10 file to a spool file and
  goes through the pipeline of ``dicomveil run`` (:func:`~dicomveil.io.read_source`,
  :meth:`~dicomveil.engine.Engine.deidentify`, :func:`~dicomveil.io.write_output`), so the
  output has the bytes ``dicomveil run`` writes for the same input file, profile and key.
  Nothing is ever transcoded. Explicit VR Little Endian is preferred when a context offers
  a choice, then the encapsulated syntaxes, then the rest.
* **C-FIND** (Patient and Study Root, and Modality Worklist where the route allows it):
  proxied to the route's upstream node; see :func:`sanitize_query`.
* **N-CREATE / N-SET** for Modality Performed Procedure Step where the route names an MPPS
  node: the attribute list is de-identified and forwarded.

C-STORE statuses (the ErrorComment says why, without values from the data set):

========  =================================================================================
0x0000    de-identified and on disk (folder and/or queue), fsynced
0xB006    withheld (``withheld_status = "warning"``, the default): the profile will not
          release this object (burned-in text, an encapsulated document...). It is neither
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

Associations: the calling AE title, called AE title and source address choose the route
(first match). An unknown calling AE title gets A-ASSOCIATE-RJ *rejected-permanent,
service-user, calling-AE-title-not-recognized*; a known one on a called AE title no route
takes gets *called-AE-title-not-recognized*; a known one from an address its routes do not
allow gets *calling-AE-title-not-recognized*. A PDU longer than ``max_pdu_size`` (or 1 MiB
for association requests, whichever is larger) is answered with an A-ABORT and the
connection closed before it is read; unknown PDU types get an A-ABORT (pynetdicom's state
machine). Nothing a peer sends stops the service.

Logs and errors name routes, AE titles, addresses, statuses and reasons, never values from
a data set. The de-identification runs one instance at a time (a process-wide lock):
pydicom's reading relies on ``warnings.catch_warnings``, which is not thread-safe, and the
work is CPU-bound under the GIL anyway; receiving stays concurrent.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import errno
import json
import logging
import os
import re
import socket
import ssl
import struct
import tempfile
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from enum import IntEnum, StrEnum
from functools import partial
from pathlib import Path
from typing import Any, Protocol, cast

from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import (
    AE,
    ALL_TRANSFER_SYNTAXES,
    AllStoragePresentationContexts,
    build_context,
    evt,
)
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE, N_CREATE, N_SET
from pynetdicom.events import Event
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

from dicomveil.engine import Engine
from dicomveil.errors import CrosswalkError, DeidentificationError, DicomveilError, InputError
from dicomveil.gateway.config import GatewayConfig, Node, RouteConfig, WithheldStatus
from dicomveil.gateway.queue import (
    ClientAE,
    ClosingSocket,
    Forwarder,
    RouteQueue,
    atomic_write_json,
    durable_copy,
    no_delay,
)
from dicomveil.identity.pseudonyms import Pseudonymizer
from dicomveil.io import read_source, remove_stale_temporaries
from dicomveil.profiles import CompiledProfile
from dicomveil.runs.batch import FileResult, Outcome, Task, deidentify_source
from dicomveil.standard.actions import Action
from dicomveil.standard.risks import Risk

__all__ = [
    "EventKind",
    "Gateway",
    "GatewayEvent",
    "GatewayEvents",
    "StoreStatus",
    "read_status",
    "sanitize_query",
]

LOGGER = logging.getLogger("dicomveil.gateway")

# SOP classes (PS3.4; pynetdicom.sop_class makes these at run time, invisible to mypy).
Verification = UID("1.2.840.10008.1.1")
PatientRootQueryRetrieveInformationModelFind = UID("1.2.840.10008.5.1.4.1.2.1.1")
StudyRootQueryRetrieveInformationModelFind = UID("1.2.840.10008.5.1.4.1.2.2.1")
ModalityWorklistInformationFind = UID("1.2.840.10008.5.1.4.31")
ModalityPerformedProcedureStep = UID("1.2.840.10008.3.1.2.3.3")

STATUS_FILE = "status.json"
_PIPELINE_LOCK = threading.Lock()
_MIN_PDU_LIMIT = 1 << 20  # association requests may be long (many contexts, identities)
# A-ABORT PDU (PS3.8 9.3.8): source 2 (service provider), reason 6 (invalid PDU parameter).
_ABORT_INVALID_PDU = struct.pack(">BBLBBBB", 0x07, 0, 4, 0, 0, 0x02, 0x06)
_FIND_MODELS = (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
)
_PENDING = (0xFF00, 0xFF01)
# Keys a query always carries, keys the identity of a patient derives from.
_ALWAYS = frozenset({0x00080005, 0x00080052})  # SpecificCharacterSet, QueryRetrieveLevel
_IDENTITY_KEYS = (0x00100020, 0x00100021)  # PatientID, IssuerOfPatientID
_DATE_VRS = frozenset({"DA", "DT", "TM"})
_UNIVERSAL = re.compile(r"^\**$")


def _transfer_syntaxes() -> list[str]:
    """Every syntax pynetdicom negotiates and pydicom can read: Explicit VR Little Endian
    first, then the encapsulated ones, then the rest (pynetdicom accepts, of the syntaxes a
    context proposes, the first one in this list)."""
    known = [ts for ts in ALL_TRANSFER_SYNTAXES if UID(ts).is_transfer_syntax]
    tail = [ts for ts in known if not UID(ts).is_compressed and ts != ExplicitVRLittleEndian]
    tail.sort(key=lambda ts: ts == ImplicitVRLittleEndian)
    compressed = [ts for ts in known if UID(ts).is_compressed]
    return [ExplicitVRLittleEndian, *compressed, *tail]


TRANSFER_SYNTAXES: tuple[str, ...] = tuple(_transfer_syntaxes())


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


# --------------------------------------------------------------------------------------------
# Events for an audit trail


class EventKind(StrEnum):
    RECEIVED = "received"
    WRITTEN = "written"
    FORWARDED = "forwarded"
    WITHHELD = "withheld"
    FAILED = "failed"


@dataclass(frozen=True)
class GatewayEvent:
    """One thing that happened to one instance.

    ``result`` is the file result of the pipeline (as ``dicomveil run`` reports it; its
    ``patient_id`` holds the original PatientID, for an audit trail's maps, and is never
    logged). For RECEIVED it is None; for FORWARDED it names the queued file that was sent.
    """

    kind: EventKind
    route: str
    calling_ae: str = ""
    address: str = ""
    result: FileResult | None = None
    destination: str = ""
    status: int | None = None


class GatewayEvents(Protocol):
    """Callbacks for every received, written, forwarded, withheld and failed instance.

    An audit integration implements these; they run in the gateway's threads (keep them
    short) and an exception they raise is logged and otherwise ignored.
    """

    def received(self, event: GatewayEvent) -> None: ...

    def written(self, event: GatewayEvent) -> None: ...

    def forwarded(self, event: GatewayEvent) -> None: ...

    def withheld(self, event: GatewayEvent) -> None: ...

    def failed(self, event: GatewayEvent) -> None: ...


class NullEvents:
    """The default: nothing is recorded beyond the gateway's status file."""

    def received(self, event: GatewayEvent) -> None:
        pass

    def written(self, event: GatewayEvent) -> None:
        pass

    def forwarded(self, event: GatewayEvent) -> None:
        pass

    def withheld(self, event: GatewayEvent) -> None:
        pass

    def failed(self, event: GatewayEvent) -> None:
        pass


# --------------------------------------------------------------------------------------------
# Status


class _Board:
    """Counts, throughput and recent errors, written to ``status.json`` atomically."""

    def __init__(self, path: Path, routes: list[str]) -> None:
        self.path = path
        self.started = time.time()
        self._lock = threading.Lock()
        self.counts: dict[str, Counter[str]] = {r: Counter() for r in routes}
        self.recent: dict[str, deque[float]] = {r: deque(maxlen=100000) for r in routes}
        self.errors: deque[dict[str, Any]] = deque(maxlen=20)
        self.rejected_associations = 0
        self.dirty = threading.Event()

    def rejected(self, message: str) -> None:
        with self._lock:
            self.rejected_associations += 1
        self.error("", message)

    def count(self, route: str, what: EventKind | str, n: int = 1) -> None:
        with self._lock:
            self.counts.setdefault(route, Counter())[str(what)] += n
            if what == EventKind.WRITTEN:
                self.recent.setdefault(route, deque(maxlen=100000)).append(time.monotonic())
        self.dirty.set()

    def error(self, route: str, message: str) -> None:
        with self._lock:
            self.errors.append({"time": time.time(), "route": route, "message": message})
        self.dirty.set()

    def snapshot(
        self, queues: dict[str, RouteQueue], forwarders: dict[str, Forwarder], running: bool
    ) -> dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            routes: dict[str, Any] = {}
            for name, counter in self.counts.items():
                recent = self.recent.get(name, deque())
                while recent and now - recent[0] > 60.0:
                    recent.popleft()
                queue = queues.get(name)
                forwarder = forwarders.get(name)
                routes[name] = {
                    **{k.value: counter.get(k.value, 0) for k in EventKind},
                    "queries": counter.get("queries", 0),
                    "queue_depth": queue.depth() if queue is not None else 0,
                    "queue_failed": queue.failed_count() if queue is not None else 0,
                    "written_per_second_last_minute": round(len(recent) / 60.0, 3),
                    "forwarding": forwarder.state() if forwarder is not None else None,
                }
            return {
                "pid": os.getpid(),
                "running": running,
                "started": self.started,
                "updated": time.time(),
                "uptime_seconds": round(time.time() - self.started, 3),
                "rejected_associations": self.rejected_associations,
                "routes": routes,
                "last_errors": list(self.errors),
            }


def read_status(config: GatewayConfig) -> dict[str, Any]:
    """The gateway's status file, with queue depths read from disk now and whether the
    process that wrote it is alive."""
    path = config.state_dir / STATUS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {"running": False, "routes": {}, "last_errors": []}
    if not isinstance(data, dict):
        data = {"running": False, "routes": {}, "last_errors": []}
    pid = data.get("pid")
    alive = False
    if isinstance(pid, int) and data.get("running"):
        try:
            os.kill(pid, 0)
            alive = True
        except (ProcessLookupError, PermissionError):
            alive = False
    data["running"] = alive
    routes = data.setdefault("routes", {})
    for route in config.routes:
        entry = routes.setdefault(route.name, {})
        if route.forward is not None:
            queue = RouteQueue(config.state_dir / "queue" / route.name)
            entry["queue_depth"] = queue.depth()
            entry["queue_failed"] = queue.failed_count()
            state = queue.read_state()
            if state:
                entry["forwarding"] = {**(entry.get("forwarding") or {}), **state}
    return data


# --------------------------------------------------------------------------------------------
# Queries: what passes upstream


def _decision_keeps(compiled: CompiledProfile, tag: int, vr: str) -> bool:
    """True when the profile keeps this attribute's value unchanged: a query value for it
    means the same upstream as in the de-identified data."""
    if tag >> 16 & 1:
        return False  # private
    code = compiled.public(tag).code
    if isinstance(code, Action):
        action: Action | None = code
    else:
        action = None if code.is_compound else code.resolve(None)
    if action is not Action.KEEP:
        return False
    if vr == "UI":
        return not compiled.replace_uids
    if vr in _DATE_VRS:
        return not compiled.shift_dates
    return vr not in ("AS",)


def sanitize_query(
    identifier: Dataset, compiled: CompiledProfile, pass_keys: frozenset[str] = frozenset()
) -> Dataset:
    """The query to send upstream: every key stays a return key, but a matching value
    passes only where it cannot identify and means the same upstream.

    A value passes when it is a universal match (empty or ``*``), when the profile keeps
    the attribute unchanged (``K``; UIDs only with ``retain-uids``, dates only when they
    are not shifted), or when the route lists the keyword in ``pass_query_keys``. Every other
    value (patient names and IDs, dates, accession numbers, descriptions, and the
    pseudonymous UIDs of the de-identified data, which cannot be mapped back) is sent empty.
    Sequences are sanitized item by item. Private keys are sent empty.
    """
    out = Dataset()
    for tag in identifier.keys():
        elem = identifier[tag]
        keyword = keyword_for_tag(tag)
        if tag in _ALWAYS or (keyword and keyword in pass_keys):
            out[tag] = elem
        elif elem.VR == "SQ":
            items = [sanitize_query(item, compiled, pass_keys) for item in elem.value or []]
            out[tag] = DataElement(tag, "SQ", Sequence(items))
        elif _is_universal(elem.value) or _decision_keeps(compiled, tag, elem.VR):
            out[tag] = elem
        else:
            out[tag] = DataElement(tag, elem.VR, None)
    return out


def _is_universal(value: object) -> bool:
    if value is None or value == "" or value == b"":
        return True
    return isinstance(value, str) and bool(_UNIVERSAL.match(value.strip()))


# --------------------------------------------------------------------------------------------
# One route at run time


@dataclass
class _Stored:
    result: FileResult
    status: StoreStatus
    queued: bool = False


class _Route:
    """A route's engines, queue and forwarder."""

    def __init__(self, config: RouteConfig, state_dir: Path, gateway: Gateway) -> None:
        self.config = config
        self.name = config.name
        self.compiled = config.profile.compile()
        # Query answers and MPPS: nothing is withheld (no pixels), but a data set the engine
        # cannot clean is never passed on.
        self.answer_compiled = replace(config.profile, allow=frozenset(Risk)).compile()
        self.pseudonymizer = Pseudonymizer(config.key)
        self._engine: tuple[_dt.date, Engine] | None = None
        self._answer_engine: tuple[_dt.date, Engine] | None = None
        self.queue: RouteQueue | None = None
        self.forwarder: Forwarder | None = None
        if config.forward is not None:
            self.queue = RouteQueue(state_dir / "queue" / config.name)
            self.forwarder = Forwarder(
                config.name,
                self.queue,
                config.forward,
                gateway,
                retry_initial=gateway.config.retry_initial,
                retry_max=gateway.config.retry_max,
                timeout=gateway.config.timeout,
                max_pdu_size=gateway.config.max_pdu_size,
            )

    def engine(self) -> Engine:
        """The storage engine, with today's date (``dicomveil run`` uses the date it starts)."""
        today = _dt.date.today()
        if self._engine is None or self._engine[0] != today:
            self._engine = (today, Engine(self.compiled, self.pseudonymizer, today=today))
        return self._engine[1]

    def answer_engine(self) -> Engine:
        today = _dt.date.today()
        if self._answer_engine is None or self._answer_engine[0] != today:
            engine = Engine(self.answer_compiled, self.pseudonymizer, today=today)
            self._answer_engine = (today, engine)
        return self._answer_engine[1]

    def targets(self, ds: Dataset, pseudonym: str) -> list[Path]:
        paths: list[Path] = []
        if self.config.output is not None:
            paths.append(self.config.layout.path(self.config.output, ds, pseudonym))
        if self.queue is not None:
            paths.append(self.queue.entry_path(str(ds.get("SOPInstanceUID", "") or "")))
        return paths

    def store(self, path: Path, task: Task, expect: tuple[str, str]) -> _Stored:
        """De-identify one spooled Part 10 file exactly as ``dicomveil run`` would, and
        write it, fsynced, to the folder and/or the queue."""
        try:
            source = read_source(path)
        except InputError as exc:
            return _Stored(FileResult(task, Outcome.FAILED, exc.reason), StoreStatus.MALFORMED)
        ds = source.dataset
        if source.is_dicomdir:
            return _Stored(
                FileResult(task, Outcome.FAILED, "a DICOMDIR is not an instance to store"),
                StoreStatus.MISMATCH,
            )
        found = (str(ds.get("SOPClassUID", "") or ""), str(ds.get("SOPInstanceUID", "") or ""))
        if found != expect:
            return _Stored(
                FileResult(
                    task,
                    Outcome.FAILED,
                    "the data set's SOP Class or Instance UID differs from the C-STORE request",
                ),
                StoreStatus.MISMATCH,
            )
        engine = self.engine()
        try:
            # The pipeline of ``dicomveil run`` itself: same bytes, clean-pixel-data included.
            done = deidentify_source(
                engine,
                source,
                lambda ds, pseudonym: self.targets(ds, pseudonym)[0],
                durable=True,
            )
            if isinstance(done, str):
                return _Stored(
                    FileResult(task, Outcome.WITHHELD, done), StoreStatus.WITHHELD_WARNING
                )
            written = done.result.dataset if done.result is not None else None
            targets = self.targets(written or source.dataset, done.pseudonym)
            for extra in targets[1:]:
                durable_copy(done.output, extra)
        except (CrosswalkError, DeidentificationError) as exc:
            return _Stored(
                FileResult(task, Outcome.FAILED, str(exc)), StoreStatus.CANNOT_DEIDENTIFY
            )
        except DicomveilError as exc:
            return _Stored(
                FileResult(task, Outcome.FAILED, str(exc)), StoreStatus.CANNOT_DEIDENTIFY
            )
        except OSError as exc:
            status = (
                StoreStatus.OUT_OF_RESOURCES
                if exc.errno in (errno.ENOSPC, errno.EDQUOT)
                else StoreStatus.PROCESSING_FAILURE
            )
            reason = f"cannot write the output ({exc.strerror or type(exc).__name__})"
            return _Stored(FileResult(task, Outcome.FAILED, reason), status)
        except Exception as exc:  # a data set pydicom cannot encode back
            reason = f"malformed element: cannot de-identify ({type(exc).__name__})"
            return _Stored(FileResult(task, Outcome.FAILED, reason), StoreStatus.MALFORMED)
        result = done.file_result(task)
        return _Stored(result, StoreStatus.SUCCESS, self.queue is not None)

    def clean_answer(self, identifier: Dataset, requested: set[int]) -> Dataset | None:
        """A de-identified C-FIND answer holding the requested keys; None if it cannot be
        cleaned (then it is dropped, never passed)."""
        query = self.config.query
        issuer = query.default_issuer_of_patient_id if query is not None else ""
        if issuer and identifier.get("PatientID") and not identifier.get("IssuerOfPatientID"):
            identifier.IssuerOfPatientID = issuer
        clean = self.clean(identifier)
        if clean is None:
            return None
        out = Dataset()
        for tag in sorted(requested | _ALWAYS):
            if tag in clean:
                out[tag] = clean[tag]
            elif tag in requested:
                vr = _dictionary_vr(tag)
                if vr is not None:
                    out[tag] = DataElement(tag, vr, Sequence() if vr == "SQ" else None)
        return out

    def clean(self, ds: Dataset) -> Dataset | None:
        try:
            done = self.answer_engine().deidentify(ds, has_pixel_data=False)
        except Exception:
            return None
        return done.dataset

    def map_uid(self, uid: str) -> str:
        return self.pseudonymizer.uid(uid) if self.compiled.replace_uids else uid


def _dictionary_vr(tag: int) -> str | None:
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return None
    return vr.split(" or ")[0] if vr else None


# --------------------------------------------------------------------------------------------
# Transport: PDU size limit and TLS in the connection's own thread


class _LimitedSocket(ClosingSocket):
    """Refuses a PDU longer than ``limit`` before reading it: A-ABORT, then close."""

    limit = _MIN_PDU_LIMIT

    def recv(self, nr_bytes: int) -> bytearray:
        if nr_bytes > self.limit:
            LOGGER.warning("aborted an association: a PDU of %d bytes is too long", nr_bytes)
            with contextlib.suppress(OSError):
                if self.socket is not None:
                    self.socket.sendall(_ABORT_INVALID_PDU)
            raise OSError("PDU too long")
        return super().recv(nr_bytes)


class _Handler(RequestHandler):
    """pynetdicom's request handler with a PDU size limit, a socket timeout, and the TLS
    handshake done here (in the connection's thread) rather than in the accept loop, so a
    peer that never completes it cannot block other connections."""

    def __init__(
        self,
        request: Any,
        client_address: Any,
        server: Any,
        *,
        tls: ssl.SSLContext | None,
        limit: int,
        timeout: float,
    ) -> None:
        self._tls = tls
        self._limit = limit
        self._timeout = timeout
        super().__init__(request, client_address, server)

    def handle(self) -> None:
        sock = self.request
        assert isinstance(sock, socket.socket)
        sock.settimeout(self._timeout)
        no_delay(sock)
        if self._tls is not None:
            try:
                self.request = self._tls.wrap_socket(sock, server_side=True)
            except (OSError, ValueError) as exc:
                LOGGER.warning(
                    "TLS handshake with %s failed (%s)", self.client_address[0], type(exc).__name__
                )
                with contextlib.suppress(OSError):
                    sock.close()
                return
        super().handle()

    def _create_association(self) -> Association:
        # As RequestHandler._create_association, with our socket class.
        assoc = Association(self.ae, "acceptor")
        assoc._server = self.server
        assoc.name = f"AcceptorThread@{time.strftime('%Y%m%d%H%M%S')}"
        sock = _LimitedSocket(assoc, client_socket=self.request)
        sock.limit = self._limit
        assoc.set_socket(sock)
        assoc.acceptor.maximum_length = self.ae.maximum_pdu_size
        assoc.acceptor.ae_title = self.server.ae_title
        assoc.acceptor.address_info = self.local
        assoc.acceptor.implementation_class_uid = self.ae.implementation_class_uid
        assoc.acceptor.implementation_version_name = self.ae.implementation_version_name
        assoc.acceptor.supported_contexts = list(self.server.contexts)
        assoc.requestor.address_info = self.remote
        for event, handlers in self.server._handlers.items():
            if event.is_intervention and handlers:
                assoc.bind(event, *handlers)
            elif isinstance(event, evt.NotificationEvent):
                for handler in handlers:
                    assoc.bind(event, handler[0], handler[1])  # type: ignore[index]
        return assoc


# --------------------------------------------------------------------------------------------
# The gateway


@dataclass
class _Peer:
    route: _Route
    calling_ae: str
    called_ae: str
    address: str
    serial: int
    count: int = 0


@dataclass
class _Counter:
    value: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next(self) -> int:
        with self.lock:
            self.value += 1
            return self.value


class Gateway:
    """The running node: server, route queues and forwarders, status file.

    ``start()`` returns once it listens; ``stop()`` stops accepting, aborts open
    associations (unacknowledged instances are the sender's to resend), stops the
    forwarders and writes the status file. The queues persist: a new gateway on the same
    state folder resumes forwarding.
    """

    def __init__(self, config: GatewayConfig, *, events: GatewayEvents | None = None) -> None:
        self.config = config
        self.events: GatewayEvents = events or NullEvents()
        self.state_dir = config.state_dir
        self.spool = config.state_dir / "spool"
        self.routes = {r.name: _Route(r, config.state_dir, self) for r in config.routes}
        self.board = _Board(config.state_dir / STATUS_FILE, list(self.routes))
        self._peers: weakref.WeakKeyDictionary[Association, _Peer] = weakref.WeakKeyDictionary()
        self._serials = _Counter()
        self._ae = self._make_ae()
        self._server: ThreadedAssociationServer | None = None
        self._server_thread: threading.Thread | None = None
        self._status_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._running = False

    # ---------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The port it listens on (useful with ``port = 0``)."""
        if self._server is None:
            return self.config.port
        return int(self._server.server_address[1])

    def __enter__(self) -> Gateway:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        for folder in (self.state_dir, self.spool):
            folder.mkdir(parents=True, exist_ok=True)
        for stale in self.spool.iterdir():
            with contextlib.suppress(OSError):
                stale.unlink()
        for route in self.routes.values():
            if route.config.output is not None:
                route.config.output.mkdir(parents=True, exist_ok=True)
                remove_stale_temporaries(route.config.output)
        tls = self.config.tls.server_context() if self.config.tls is not None else None
        limit = max(self.config.max_pdu_size + 6, _MIN_PDU_LIMIT)
        handler = partial(_Handler, tls=tls, limit=limit, timeout=self.config.timeout)
        server = self._ae.make_server(
            (self.config.host, self.config.port),
            ae_title=self.config.ae_title,
            evt_handlers=self._handlers(),
            server_class=ThreadedAssociationServer,
            request_handler=handler,
        )
        assert isinstance(server, ThreadedAssociationServer)
        self._ae._servers.append(server)
        self._server = server
        self._server_thread = threading.Thread(
            target=server.serve_forever, name="dicomveil-gateway-server", daemon=True
        )
        self._server_thread.start()
        for route in self.routes.values():
            if route.forwarder is not None:
                route.forwarder.start()
        self._running = True
        self._write_status()
        self._status_thread = threading.Thread(
            target=self._status_loop, name="dicomveil-gateway-status", daemon=True
        )
        self._status_thread.start()
        LOGGER.info(
            "gateway %s listening on %s:%d%s with %d route(s)",
            self.config.ae_title,
            self.config.host,
            self.port,
            " (TLS)" if tls is not None else "",
            len(self.routes),
        )

    def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        self._stopping.set()
        server, self._server_thread = self._server, None
        if server is not None:
            with contextlib.suppress(Exception):
                server.shutdown()
            for assoc in self._ae.active_associations:
                with contextlib.suppress(Exception):
                    assoc.abort()
        for route in self.routes.values():
            if route.forwarder is not None:
                route.forwarder.stop()
        if self._status_thread is not None:
            self._status_thread.join(5.0)
        self._write_status()
        LOGGER.info("gateway %s stopped", self.config.ae_title)

    def notify_all(self) -> None:
        for route in self.routes.values():
            if route.forwarder is not None:
                route.forwarder.notify()

    # ---------------------------------------------------------------------------------------
    def _make_ae(self) -> AE:
        config = self.config
        ae = AE(ae_title=config.ae_title)
        ae.maximum_associations = config.max_associations
        ae.maximum_pdu_size = config.max_pdu_size
        ae.acse_timeout = config.timeout
        ae.dimse_timeout = config.timeout
        ae.network_timeout = config.timeout
        syntaxes = list(TRANSFER_SYNTAXES)
        for context in AllStoragePresentationContexts:
            if context.abstract_syntax is not None:
                ae.add_supported_context(context.abstract_syntax, syntaxes)
        query = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
        ae.add_supported_context(Verification, query)
        for model in (*_FIND_MODELS, ModalityWorklistInformationFind):
            ae.add_supported_context(model, query)
        ae.add_supported_context(ModalityPerformedProcedureStep, query)
        return ae

    def _handlers(self) -> list[Any]:
        return [
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_FIND, self._on_find),
            (evt.EVT_N_CREATE, self._on_n_create),
            (evt.EVT_N_SET, self._on_n_set),
        ]

    def _status_loop(self) -> None:
        while not self._stopping.is_set():
            self.board.dirty.wait(1.0)
            if self._stopping.is_set():
                break
            self.board.dirty.clear()
            self._write_status()
            self._stopping.wait(0.5)

    def _write_status(self) -> None:
        queues = {n: r.queue for n, r in self.routes.items() if r.queue is not None}
        forwarders = {n: r.forwarder for n, r in self.routes.items() if r.forwarder is not None}
        try:
            snapshot = self.board.snapshot(queues, forwarders, self._running)
            atomic_write_json(self.board.path, snapshot, durable=False)
        except OSError:
            LOGGER.warning("cannot write the status file")

    def _emit(self, kind: EventKind, event: GatewayEvent) -> None:
        callback: Callable[[GatewayEvent], None] = getattr(self.events, kind.value)
        try:
            callback(event)
        except Exception:
            LOGGER.exception("a gateway event callback failed (%s)", kind.value)

    # ForwardListener ---------------------------------------------------------------------
    def forwarded(self, route: str, entry: Path, size: int) -> None:
        self.board.count(route, EventKind.FORWARDED)
        destination = self.routes[route].config.forward
        result = FileResult(Task(entry), Outcome.WRITTEN, output=entry, size=size)
        self._emit(
            EventKind.FORWARDED,
            GatewayEvent(
                EventKind.FORWARDED,
                route,
                result=result,
                destination=destination.label if destination is not None else "",
            ),
        )

    def refused(self, route: str, entry: Path, reason: str) -> None:
        self.board.count(route, EventKind.FAILED)
        self.board.error(route, f"forwarding: {reason}")
        result = FileResult(Task(entry), Outcome.FAILED, reason)
        self._emit(EventKind.FAILED, GatewayEvent(EventKind.FAILED, route, result=result))

    def error(self, route: str, message: str) -> None:
        self.board.error(route, f"forwarding: {message}")

    # Association ---------------------------------------------------------------------------
    def _on_requested(self, event: Event) -> None:
        assoc = event.assoc
        primitive = assoc.requestor.primitive
        calling = str(getattr(primitive, "calling_ae_title", "") or "").strip()
        called = str(getattr(primitive, "called_ae_title", "") or "").strip()
        address = str(assoc.requestor.address)
        route_config = self.config.route_for(calling, called, address)
        if route_config is None:
            known = calling in self.config.calling_ae_titles
            called_ok = any(
                calling in r.calling_ae and (not r.called_ae or called in r.called_ae)
                for r in self.config.routes
            )
            diagnostic = 0x07 if known and not called_ok else 0x03
            LOGGER.warning(
                "rejected an association from %s (%s -> %s): %s",
                address,
                calling,
                called,
                "called AE title not recognised"
                if diagnostic == 0x07
                else "calling AE title not recognised",
            )
            self.board.rejected(f"rejected an association from {address} ({calling})")
            assoc.acse.send_reject(0x01, 0x01, diagnostic)
            assoc.kill()
            return
        route = self.routes[route_config.name]
        self._peers[assoc] = _Peer(route, calling, called, address, self._serials.next())

    def _on_echo(self, event: Event) -> int:
        return 0x0000

    def _peer(self, event: Event) -> _Peer | None:
        return self._peers.get(event.assoc)

    # C-STORE -------------------------------------------------------------------------------
    def _on_store(self, event: Event) -> Dataset:
        peer = self._peer(event)
        if peer is None:
            return _status(StoreStatus.PROCESSING_FAILURE, "no route for this association")
        route = peer.route
        if route.config.output is None and route.queue is None:
            return _status(StoreStatus.PROCESSING_FAILURE, "this route does not store instances")
        peer.count += 1
        index = peer.count
        task = Task(Path(f"c-store:{_safe(peer.calling_ae)}:{peer.serial}:{index}"))
        if index > self.config.max_instances_per_association:
            return _status(StoreStatus.OUT_OF_RESOURCES, "too many instances in one association")
        self.board.count(route.name, EventKind.RECEIVED)
        self._emit(EventKind.RECEIVED, self._event(EventKind.RECEIVED, peer, None))
        try:
            stored = self._store(event, route, task)
        except Exception as exc:  # never let a data set take the handler down
            LOGGER.exception("route %s: storing failed", route.name)
            stored = _Stored(
                FileResult(task, Outcome.FAILED, f"internal error ({type(exc).__name__})"),
                StoreStatus.PROCESSING_FAILURE,
            )
        result = stored.result
        if result.outcome is Outcome.WRITTEN:
            self.board.count(route.name, EventKind.WRITTEN)
            self._emit(EventKind.WRITTEN, self._event(EventKind.WRITTEN, peer, result))
            if stored.queued and route.forwarder is not None:
                route.forwarder.notify()
            return _status(StoreStatus.SUCCESS)
        if result.outcome is Outcome.WITHHELD:
            self.board.count(route.name, EventKind.WITHHELD)
            self._emit(EventKind.WITHHELD, self._event(EventKind.WITHHELD, peer, result))
            code = (
                StoreStatus.WITHHELD_FAILURE
                if self.config.withheld_status is WithheldStatus.FAILURE
                else StoreStatus.WITHHELD_WARNING
            )
            return _status(code, f"withheld: {result.reason}")
        self.board.count(route.name, EventKind.FAILED)
        self.board.error(route.name, f"C-STORE from {peer.calling_ae} failed: {result.reason}")
        self._emit(EventKind.FAILED, self._event(EventKind.FAILED, peer, result, stored.status))
        LOGGER.warning(
            "route %s: an instance from %s failed (0x%04X): %s",
            route.name,
            peer.calling_ae,
            stored.status,
            result.reason,
        )
        return _status(stored.status, result.reason)

    def _store(self, event: Event, route: _Route, task: Task) -> _Stored:
        request = cast(C_STORE, event.request)
        expect = (
            str(request.AffectedSOPClassUID or ""),
            str(request.AffectedSOPInstanceUID or ""),
        )
        try:
            data = event.encoded_dataset(include_meta=True)
        except Exception:
            return _Stored(
                FileResult(task, Outcome.FAILED, "the data set cannot be read"),
                StoreStatus.MALFORMED,
            )
        fd, name = tempfile.mkstemp(prefix="rx-", suffix=".dcm", dir=self.spool)
        spool = Path(name)
        try:
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
            except OSError as exc:
                status = (
                    StoreStatus.OUT_OF_RESOURCES
                    if exc.errno in (errno.ENOSPC, errno.EDQUOT)
                    else StoreStatus.PROCESSING_FAILURE
                )
                reason = f"cannot spool the data set ({exc.strerror or type(exc).__name__})"
                return _Stored(FileResult(task, Outcome.FAILED, reason), status)
            del data
            with _PIPELINE_LOCK:
                return route.store(spool, task, expect)
        finally:
            with contextlib.suppress(OSError):
                spool.unlink()

    def _event(
        self, kind: EventKind, peer: _Peer, result: FileResult | None, status: int | None = None
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

    # C-FIND --------------------------------------------------------------------------------
    def _on_find(self, event: Event) -> Iterator[tuple[int | Dataset, Dataset | None]]:
        peer = self._peer(event)
        model = str(event.request.AffectedSOPClassUID or "")
        query = peer.route.config.query if peer is not None else None
        if peer is None or query is None:
            yield _find_failure("no query upstream for this route")
            return
        if model == ModalityWorklistInformationFind and not query.worklist:
            yield _find_failure("worklist queries are not proxied on this route")
            return
        route = peer.route
        self.board.count(route.name, "queries")
        try:
            identifier = event.identifier
            requested = {int(tag) for tag in identifier.keys()}
            with _PIPELINE_LOCK:
                upstream_query = sanitize_query(identifier, route.compiled, query.pass_query_keys)
        except Exception:
            yield _find_failure("the query identifier cannot be decoded", 0xA900)
            return
        level = str(upstream_query.get("QueryRetrieveLevel", "") or "").upper()
        if model == ModalityWorklistInformationFind or level in ("PATIENT", "STUDY"):
            # The pseudonym derives from these: ask for them, so answers match stored data.
            for tag in _IDENTITY_KEYS:
                if tag not in upstream_query:
                    upstream_query[tag] = DataElement(tag, "LO", None)
        assoc = self._client(query.node, model)
        if assoc is None:
            self.board.error(route.name, f"C-FIND: cannot reach {query.node.label}")
            yield _find_failure("the upstream node cannot be reached")
            return
        dropped = 0
        cancelled = False
        try:
            for status, answer in assoc.send_c_find(upstream_query, model):
                if event.is_cancelled:
                    cancelled = True
                    yield 0xFE00, None
                    return
                code = status.get("Status") if status is not None else None
                if code is None:
                    yield _find_failure("the upstream node stopped answering")
                    return
                code = int(code)
                if code in _PENDING:
                    if answer is None:
                        continue
                    with _PIPELINE_LOCK:
                        clean = route.clean_answer(answer, requested)
                    if clean is None:
                        dropped += 1
                        continue
                    yield code, clean
                    continue
                yield code, None
                return
            yield _find_failure("the upstream node stopped answering")
        finally:
            if dropped:
                self.board.error(route.name, f"C-FIND: {dropped} answer(s) could not be cleaned")
            with contextlib.suppress(Exception):
                if assoc.is_established and not cancelled:
                    assoc.release()
                else:
                    assoc.abort()

    def _client(self, node: Node, sop_class: str) -> Association | None:
        ae = ClientAE(ae_title=node.calling_ae_title)
        ae.acse_timeout = self.config.timeout
        ae.dimse_timeout = self.config.timeout
        ae.network_timeout = self.config.timeout
        ae.connection_timeout = self.config.timeout
        tls = (node.tls.client_context(), node.host) if node.tls is not None else None
        try:
            assoc = ae.associate(
                node.host,
                node.port,
                contexts=[build_context(sop_class)],
                ae_title=node.ae_title,
                tls_args=tls,
            )
        except (OSError, ValueError, RuntimeError):
            return None
        return assoc if assoc.is_established else None

    # MPPS ----------------------------------------------------------------------------------
    def _on_n_create(self, event: Event) -> tuple[int, Dataset | None]:
        return self._mpps(event, create=True)

    def _on_n_set(self, event: Event) -> tuple[int, Dataset | None]:
        return self._mpps(event, create=False)

    def _mpps(self, event: Event, *, create: bool) -> tuple[int, Dataset | None]:
        peer = self._peer(event)
        node = peer.route.config.mpps if peer is not None else None
        if peer is None or node is None:
            return 0x0110, None  # processing failure: this route does not forward MPPS
        if create:
            created = cast(N_CREATE, event.request)
            sop_class, uid = created.AffectedSOPClassUID, created.AffectedSOPInstanceUID
        else:
            changed = cast(N_SET, event.request)
            sop_class, uid = changed.RequestedSOPClassUID, changed.RequestedSOPInstanceUID
        if str(sop_class or "") != ModalityPerformedProcedureStep:
            return 0x0122, None  # SOP class not supported
        route = peer.route
        try:
            data = event.attribute_list if create else event.modification_list
            with _PIPELINE_LOCK:
                clean = route.clean(copy.deepcopy(data))
                mapped = route.map_uid(str(uid)) if uid else ""
        except Exception:
            return 0x0110, None
        if clean is None:
            self.board.error(route.name, "MPPS: a data set could not be cleaned: not forwarded")
            return 0x0110, None
        assoc = self._client(node, ModalityPerformedProcedureStep)
        if assoc is None:
            self.board.error(route.name, f"MPPS: cannot reach {node.label}")
            return 0x0213, None  # resource limitation: try later
        try:
            if create:
                status, _ = assoc.send_n_create(
                    clean, ModalityPerformedProcedureStep, mapped or None
                )
            else:
                status, _ = assoc.send_n_set(clean, ModalityPerformedProcedureStep, mapped)
        except Exception:
            return 0x0110, None
        finally:
            with contextlib.suppress(Exception):
                assoc.release()
        code = status.get("Status") if status is not None else None
        if code is None:
            return 0x0213, None
        # The sender gets its own attributes back, as if the step was created as asked.
        return int(code), data if int(code) == 0 else None


def _status(code: int, comment: str = "") -> Dataset:
    status = Dataset()
    status.Status = int(code)
    if comment and code != 0:
        status.ErrorComment = comment[:64]
    return status


def _find_failure(comment: str, code: int = 0xC000) -> tuple[Dataset, None]:
    return _status(code, comment), None


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _safe(text: str) -> str:
    return _UNSAFE.sub("_", text)[:16] or "_"
