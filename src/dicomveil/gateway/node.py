"""The gateway's DICOM node: a pynetdicom AE that de-identifies on receive and forwards.

What it answers (PS3.4):

* **C-ECHO** (Verification).
* **C-STORE** for every storage SOP class pynetdicom knows, in every transfer syntax that
  both pydicom and pynetdicom know (native, deflated and encapsulated): see
  :mod:`~dicomveil.gateway.store` (the pipeline and the statuses). Explicit VR Little
  Endian is preferred when a context offers a choice, then the encapsulated syntaxes, then
  the rest.
* **C-FIND** (Patient and Study Root, and Modality Worklist where the route allows it):
  proxied to the route's upstream node, confined to the project's cohort; see
  :mod:`~dicomveil.gateway.query`.
* **C-GET / C-MOVE** (Patient and Study Root): the cohort's originals retrieved upstream
  and delivered de-identified; see :mod:`~dicomveil.gateway.retrieve`.
* **N-CREATE / N-SET** for Modality Performed Procedure Step where the route names an MPPS
  node: see :mod:`~dicomveil.gateway.mpps`.

Associations: the calling AE title, called AE title and source address choose the route
(first match). An unknown calling AE title gets A-ASSOCIATE-RJ *rejected-permanent,
service-user, calling-AE-title-not-recognized*; a known one on a called AE title no route
takes gets *called-AE-title-not-recognized*; a known one from an address its routes do not
allow gets *calling-AE-title-not-recognized*. A PDU longer than ``max_pdu_size`` (or 1 MiB
for association requests, whichever is larger) is answered with an A-ABORT and the
connection closed before it is read (:mod:`~dicomveil.gateway.transport`); unknown PDU
types get an A-ABORT (pynetdicom's state machine). Nothing a peer sends stops the service.

Logs and errors name routes, AE titles, addresses, statuses and reasons, never values from
a data set.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import threading
import warnings
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any

from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.association import Association
from pynetdicom.events import Event
from pynetdicom.transport import ThreadedAssociationServer

from dicomveil.errors import DicomveilError
from dicomveil.gateway.cohort import COHORT_FILE, Cohort
from dicomveil.gateway.config import GatewayConfig
from dicomveil.gateway.events import EventKind, GatewayEvent, GatewayEvents, NullEvents, emit
from dicomveil.gateway.mpps import ModalityPerformedProcedureStep, MppsHandler
from dicomveil.gateway.pool import WorkerPool, config_workers
from dicomveil.gateway.query import FIND_MODELS, FindHandler, ModalityWorklistInformationFind
from dicomveil.gateway.queue import atomic_write_json
from dicomveil.gateway.retrieve import GET_MODELS, MOVE_MODELS, RetrieveHandler, RetrievingAE
from dicomveil.gateway.route import Peer, Route
from dicomveil.gateway.status import STATUS_FILE, StatusBoard
from dicomveil.gateway.store import StoreHandler, close_spool
from dicomveil.gateway.transport import MIN_PDU_LIMIT, AcceptorHandler
from dicomveil.io import remove_stale_temporaries
from dicomveil.runs.batch import FileResult, Outcome, Task

__all__ = ["TRANSFER_SYNTAXES", "Gateway"]

LOGGER = logging.getLogger("dicomveil.gateway")

# The SOP class (PS3.4; pynetdicom.sop_class makes it at run time, invisible to mypy).
Verification = UID("1.2.840.10008.1.1")


_NEGOTIATING = 64  # connections pynetdicom lets negotiate beyond the gateway's own limit
LOCK_FILE = "gateway.lock"


def _lock_state(state_dir: Path) -> IO[str]:
    """Hold the state folder for this gateway alone: a second one on it would empty the
    first's spool (the instances it is receiving) and write over its status. The lock is an
    exclusive ``flock`` on ``gateway.lock``, let go when the process ends, however it ends.

    Raises
    ------
    DicomveilError
        Another process holds it.
    """
    handle = (state_dir / LOCK_FILE).open("a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        who = f" (process {holder})" if holder.isdigit() else ""
        raise DicomveilError(
            f"another gateway uses the state folder {state_dir}{who}: one folder, one gateway"
        ) from None
    handle.truncate(0)
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


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

    Parameters
    ----------
    config : GatewayConfig
        The configuration (see :func:`~dicomveil.gateway.config.load_config`).
    events : GatewayEvents, optional
        Callbacks for an audit trail; :class:`~dicomveil.gateway.events.NullEvents` when
        not given.
    """

    def __init__(self, config: GatewayConfig, *, events: GatewayEvents | None = None) -> None:
        self.config = config
        self.events: GatewayEvents = events or NullEvents()
        self.state_dir = config.state_dir
        self.spool = config.state_dir / "spool"
        self.routes = {r.name: Route(r, config, self) for r in config.routes}
        self.board = StatusBoard(config.state_dir / STATUS_FILE, list(self.routes))
        self._peers: weakref.WeakKeyDictionary[Association, Peer] = weakref.WeakKeyDictionary()
        # The associations admitted (max_associations, counted here: see _admit)
        self._admitted: set[int] = set()
        self._admitting = threading.Lock()
        self._serials = _Counter()
        self._store = StoreHandler(config, self.spool, self.board, self._emit)
        self._find = FindHandler(config, self.board)
        self._retrieve = RetrieveHandler(config, self.board, self.spool)
        self._mpps = MppsHandler(config, self.board)
        self.cohort: Cohort | None = None  # opened by start()
        self._ae = self._make_ae()
        self._server: ThreadedAssociationServer | None = None
        self._server_thread: threading.Thread | None = None
        self._status_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._running = False
        self._web: Any = None  # the DICOMweb server (a WebServer) with [gateway.web]
        self._lock: IO[str] | None = None  # the state folder's, while it runs

    # ---------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The port it listens on (useful with ``port = 0``)."""
        if self._server is None:
            return self.config.port
        return int(self._server.server_address[1])

    @property
    def web_url(self) -> str | None:
        """The DICOMweb side's base URL (``http(s)://host:port``; a client adds
        ``/<route>``), or None without ``[gateway.web]`` or before :meth:`start`."""
        return str(self._web.url) if self._web is not None else None

    def __enter__(self) -> Gateway:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Prepare the state and output folders, listen, start the forwarders.

        Raises
        ------
        OSError
            When a folder cannot be made or the address cannot be bound.
        """
        for folder in (self.state_dir, self.spool):
            folder.mkdir(parents=True, exist_ok=True)
        self._lock = _lock_state(self.state_dir)  # before anything of the state is touched
        # pydicom reports a value it finds invalid with a warning that quotes it (an
        # original name or UID, in a query, an answer or a received instance): a gateway
        # prints none of them (set once, for the process).
        warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom(\..*)?$")
        self._open_cohort()
        workers = config_workers(self.config)
        if workers:
            pool = WorkerPool(self.config, workers)
            pool.start()
            self._store.pool = self._retrieve.pool = pool
        for stale in self.spool.iterdir():  # received files, and the release gate's stages
            with contextlib.suppress(OSError):
                if stale.is_dir() and not stale.is_symlink():
                    shutil.rmtree(stale)
                else:
                    stale.unlink()
        for route in self.routes.values():
            if route.config.output is not None:
                route.config.output.mkdir(parents=True, exist_ok=True)
                remove_stale_temporaries(route.config.output)
        tls = self.config.tls.server_context() if self.config.tls is not None else None
        limit = max(self.config.max_pdu_size + 6, MIN_PDU_LIMIT)
        handler = partial(
            AcceptorHandler, tls=tls, limit=limit, timeout=self.config.timeout, spill=self.spool
        )
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
        if self.config.web is not None:
            self._start_web()
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

    def _start_web(self) -> None:
        """Serve the DICOMweb side (:mod:`dicomveil.gateway.web`, loaded only here)."""
        from dicomveil.gateway.web import WebContext, WebServer, create_app

        web = self.config.web
        assert web is not None
        context = WebContext(
            config=self.config,
            routes={name: r for name, r in self.routes.items() if r.config.web_tokens},
            store=self._store,
            spool=self.spool,
            syntaxes=frozenset(TRANSFER_SYNTAXES),
            cohort=lambda: self.cohort,
            base_url=lambda: web.base_url or server.url,
        )
        server = WebServer(create_app(context), web)
        try:
            server.start()
        except BaseException:
            self._running = True  # what started (the DIMSE side) stops
            self.stop()
            raise
        self._web = server
        LOGGER.info("DICOMweb on %s", server.url)

    def _open_cohort(self) -> None:
        """Open the cohorts and import the query routes' map folders (an unreadable one
        stops the start: a query route must not answer for a cohort it does not know)."""
        cohort = Cohort(self.config.cohort or self.state_dir / COHORT_FILE)
        try:
            for route in self.config.routes:
                for folder in route.query.cohort_maps if route.query is not None else ():
                    if not (folder / "patients.csv").is_file():
                        raise OSError(
                            f"route {route.name}: no patients.csv in the cohort map folder"
                        )
                    patients, uids = cohort.import_maps(route.key.fingerprint, folder)
                    LOGGER.info(
                        "route %s: %d patient(s), %d UID(s) imported into the cohort",
                        route.name, patients, uids,
                    )  # fmt: skip
        except BaseException:
            cohort.close()
            raise
        self.cohort = self._store.cohort = self._find.cohort = self._retrieve.cohort = cohort

    def stop(self) -> None:
        """Stop accepting, abort open associations, stop the forwarders, write the status."""
        if not self._running:
            return
        self._running = False
        self._stopping.set()
        web, self._web = self._web, None
        if web is not None:
            web.stop()
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
        if self._store.pool is not None:
            self._store.pool.stop()
            self._store.pool = self._retrieve.pool = None
        if self.cohort is not None:
            self.cohort.close()
            self.cohort = self._store.cohort = self._find.cohort = self._retrieve.cohort = None
        self._unlock()
        LOGGER.info("gateway %s stopped", self.config.ae_title)

    def _unlock(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.close()  # the lock goes with the descriptor

    def notify_all(self) -> None:
        """Wake every forwarder (entries were queued or moved back from ``failed/``)."""
        for route in self.routes.values():
            if route.forwarder is not None:
                route.forwarder.notify()

    # ---------------------------------------------------------------------------------------
    def _make_ae(self) -> AE:
        config = self.config
        ae = RetrievingAE(ae_title=config.ae_title)
        # pynetdicom's own limit counts every connection being negotiated, those about to be
        # refused too: four at once over a limit of two were all refused. The gateway admits
        # them itself (_admit); pynetdicom's limit stays far above, a guard against floods.
        ae.maximum_associations = config.max_associations + _NEGOTIATING
        ae.maximum_pdu_size = config.max_pdu_size
        ae.acse_timeout = config.timeout
        ae.dimse_timeout = config.timeout
        ae.network_timeout = config.timeout
        syntaxes = list(TRANSFER_SYNTAXES)
        for context in AllStoragePresentationContexts:
            if context.abstract_syntax is not None:
                # Both roles: a C-GET requester is the storage SCP on its association.
                ae.add_supported_context(
                    context.abstract_syntax, syntaxes, scu_role=True, scp_role=True
                )
        query = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
        ae.add_supported_context(Verification, query)
        for model in (*FIND_MODELS, ModalityWorklistInformationFind, *GET_MODELS, *MOVE_MODELS):
            ae.add_supported_context(model, query)
        ae.add_supported_context(ModalityPerformedProcedureStep, query)
        return ae

    def _handlers(self) -> list[Any]:
        return [
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_CONN_CLOSE, self._on_closed),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_FIND, self._on_find),
            (evt.EVT_C_GET, self._on_get),
            (evt.EVT_C_MOVE, self._on_move),
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
        emit(self.events, kind, event)

    # ForwardListener (the arguments: see :class:`~dicomveil.gateway.forward.ForwardListener`)
    def forwarded(self, route: str, entry: Path, size: int) -> None:
        """Count and report the queue ``entry`` (``size`` bytes) that ``route``'s destination
        confirmed (see :class:`ForwardListener`)."""
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
        """Count and report the queue ``entry`` that ``route``'s destination refused for good,
        and why (``reason``; see :class:`ForwardListener`)."""
        self.board.count(route, EventKind.FAILED)
        self.board.error(route, f"forwarding: {reason}")
        result = FileResult(Task(entry), Outcome.FAILED, reason)
        self._emit(EventKind.FAILED, GatewayEvent(EventKind.FAILED, route, result=result))

    def error(self, route: str, message: str) -> None:
        """Keep ``message``, a transient forwarding error of ``route``, in the status (the
        instance is retried)."""
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
        if not self._admit(assoc):
            LOGGER.warning("rejected an association from %s: local limit exceeded", address)
            self.board.rejected(f"rejected an association from {address}: local limit")
            assoc.acse.send_reject(0x02, 0x03, 0x02)  # transient, presentation, local limit
            assoc.kill()
            return
        route = self.routes[route_config.name]
        self._peers[assoc] = Peer(route, calling, called, address, self._serials.next())

    def _admit(self, assoc: Association) -> bool:
        """Count an association in, unless ``max_associations`` are in already."""
        with self._admitting:
            if len(self._admitted) >= self.config.max_associations:
                return False
            self._admitted.add(id(assoc))
            return True

    def _on_closed(self, event: Event) -> None:
        with self._admitting:
            self._admitted.discard(id(event.assoc))
        peer = self._peers.pop(event.assoc, None)
        if peer is not None:
            close_spool(peer)  # what it held of its last instance

    def _on_echo(self, event: Event) -> int:
        return 0x0000

    def _peer(self, event: Event) -> Peer | None:
        return self._peers.get(event.assoc)

    def _on_store(self, event: Event) -> Dataset:
        return self._store(event, self._peer(event))

    def _on_find(self, event: Event) -> Iterator[tuple[int | Dataset, Dataset | None]]:
        yield from self._find(event, self._peer(event))

    def _on_get(self, event: Event) -> Iterator[Any]:
        yield from self._retrieve.get(event, self._peer(event))

    def _on_move(self, event: Event) -> Iterator[Any]:
        yield from self._retrieve.move(event, self._peer(event))

    def _on_n_create(self, event: Event) -> tuple[int, Dataset | None]:
        return self._mpps(event, self._peer(event), create=True)

    def _on_n_set(self, event: Event) -> tuple[int, Dataset | None]:
        return self._mpps(event, self._peer(event), create=False)
