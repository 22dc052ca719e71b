"""C-GET and C-MOVE: the cohort's originals retrieved upstream, delivered de-identified.

A researcher retrieves by the keys the de-identified data carries (issue 16). The gateway

1. translates the pseudonymous keys to the originals of the project's cohort
   (:func:`~dicomveil.gateway.query.confine`; a key that stands for nothing in the cohort
   retrieves nothing, and a request without any unique key is refused);
2. retrieves the originals from the route's ``[route.query]`` node with C-GET (the gateway
   is the storage SCP on that association), spooled to disk in the state folder, never held
   in memory;
3. drops every retrieved instance that is not in the cohort, before it is de-identified;
4. de-identifies each one as ``dicomveil run`` and the storing routes do (the same engine
   path, the release gate included), into a stage folder, in the gateway's worker
   processes (several at a time, as received instances are); and
5. delivers them: on the same association for C-GET, to the requested Move Destination for
   C-MOVE, which must be one of the route's ``move_destinations`` (any other: *Move
   Destination unknown*, 0xA801).

Sub-operations: one per cohort instance retrieved; an instance withheld (by the profile,
the release gate, or because it cannot be read) is a failed sub-operation, and the final
status is then a warning (0xB000) with the counts. So is each instance the archive reports
failed, and an archive that cannot be reached or refuses counts as one failed
sub-operation; when nothing was delivered the final status is 0xC000 (unable to process).
The Failed SOP Instance UID List never holds an original UID. Logs name routes and counts,
never values.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from pydicom import dcmread
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filereader import read_file_meta_info
from pydicom.uid import UID
from pynetdicom import AE, StoragePresentationContexts, _config, build_context, build_role, evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from dicomveil.gateway.cohort import Cohort
from dicomveil.gateway.cohorting import Cohorting
from dicomveil.gateway.config import GatewayConfig, Node
from dicomveil.gateway.dimse import WaitingDimse, spilled_file, write_data_set
from dicomveil.gateway.query import Confinement, confine, find_upstream
from dicomveil.gateway.route import Handler, Peer
from dicomveil.gateway.status import StatusBoard
from dicomveil.gateway.store import spool_header
from dicomveil.gateway.transport import IDLE_WAIT, ClientAE, bound_sending, quiet

if TYPE_CHECKING:
    from dicomveil.gateway.pool import WorkerPool

__all__ = [
    "GET_MODELS",
    "MOVE_MODELS",
    "PatientRootQueryRetrieveInformationModelGet",
    "PatientRootQueryRetrieveInformationModelMove",
    "RetrieveHandler",
    "RetrievingAE",
    "StagedInstance",
    "StudyRootQueryRetrieveInformationModelGet",
    "StudyRootQueryRetrieveInformationModelMove",
    "fetch",
    "send_files",
]


# SOP classes (PS3.4 C.6; pynetdicom.sop_class makes these at run time, invisible to mypy).
PatientRootQueryRetrieveInformationModelMove = UID("1.2.840.10008.5.1.4.1.2.1.2")
PatientRootQueryRetrieveInformationModelGet = UID("1.2.840.10008.5.1.4.1.2.1.3")
StudyRootQueryRetrieveInformationModelMove = UID("1.2.840.10008.5.1.4.1.2.2.2")
StudyRootQueryRetrieveInformationModelGet = UID("1.2.840.10008.5.1.4.1.2.2.3")
GET_MODELS = (
    PatientRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelGet,
)
MOVE_MODELS = (
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelMove,
)
# The upstream C-GET of the same root as the request.
_UPSTREAM_GET = {
    PatientRootQueryRetrieveInformationModelGet: PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove: PatientRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelGet: StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove: StudyRootQueryRetrieveInformationModelGet,
}
_LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
_PENDING = 0xFF00
LOGGER = logging.getLogger("dicomveil.gateway")

_WITHHELD = "withheld"  # not a Dataset: pynetdicom counts the sub-operation as failed
_SOME_FAILED = 0xB000  # Warning: sub-operations complete, one or more failures
_UNABLE = 0xC000  # Failed: unable to process (the archive delivered nothing)
# The syntaxes proposed upstream for every storage SOP class: the archive's own encoding is
# kept where it is one of these (what `dicomveil run` reads from a file).
_UPSTREAM_SYNTAXES = (
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.5",  # RLE Lossless
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51",  # JPEG Extended
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
)


@dataclass
class Retrieved:
    """What one request retrieved and de-identified: the files to deliver, in order (None
    for a withheld instance), in a stage folder removed by :meth:`close`."""

    stage: Path
    files: list[Path | None]
    failed: int = 0  # sub-operations the archive failed, or 1 for an archive that did not answer

    def sub_operations(self) -> Iterator[Any]:
        """What pynetdicom's C-GET and C-MOVE services want after the destination: the
        number of sub-operations, then (status, data set) for each; then, where the archive
        failed some, a final warning (some delivered) or failure (none), which counts them
        failed (PS3.4 C.4.2.1.4, C.4.3.1.4)."""
        yield len(self.files) + self.failed
        yield from _deliveries(self)
        if self.failed:
            delivered = any(path is not None for path in self.files)
            yield (_SOME_FAILED if delivered else _UNABLE), None

    def close(self) -> None:
        """Remove the stage folder and everything in it."""
        shutil.rmtree(self.stage, ignore_errors=True)


class RetrieveHandler(Handler):
    """The C-GET and C-MOVE services (see the module's docstring).

    Parameters
    ----------
    config : GatewayConfig
        The gateway's configuration.
    board : StatusBoard
        Counts and errors for the status file.
    spool : Path
        Where retrieved originals and de-identified copies are staged.
    """

    cohort: Cohort | None = None  # set by the gateway when it starts
    pool: WorkerPool | None = None  # the de-identification workers, set when it starts

    def __init__(self, config: GatewayConfig, board: StatusBoard, spool: Path) -> None:
        super().__init__(config, board)
        self.spool = spool

    def get(self, event: Event, peer: Peer | None) -> Iterator[Any]:
        """Answer one C-GET request (pynetdicom's ``EVT_C_GET``).

        Yields
        ------
        Any
            The number of sub-operations, then (status, dataset) pairs, as pynetdicom
            expects them.
        """
        retrieved = self._retrieve(event, peer)
        if isinstance(retrieved, int):
            yield 0
            return
        send_files(event.assoc)
        try:
            yield from retrieved.sub_operations()
        finally:
            retrieved.close()

    def move(self, event: Event, peer: Peer | None) -> Iterator[Any]:
        """Answer one C-MOVE request (pynetdicom's ``EVT_C_MOVE``).

        Yields
        ------
        Any
            The destination, the number of sub-operations, then (status, dataset) pairs,
            as pynetdicom expects them.
        """
        destination = _destination(peer, str(event.move_destination or "").strip())
        if destination is None:
            yield None, None  # Move Destination unknown
            return
        retrieved = self._retrieve(event, peer)
        if isinstance(retrieved, int):
            yield destination.host, destination.port
            yield 0
            return
        try:
            contexts = _contexts(retrieved.files)
            tls = (destination.tls.client_context(), destination.host) if destination.tls else None
            options: dict[str, Any] = {"contexts": contexts, "tls_args": tls}
            yield destination.host, destination.port, options
            yield from retrieved.sub_operations()
        finally:
            retrieved.close()

    # ---------------------------------------------------------------------------------------
    def _retrieve(self, event: Event, peer: Peer | None) -> Retrieved | int:
        """Translate, retrieve upstream, keep the cohort's, de-identify; an int (0) when there
        is nothing to deliver."""
        query = peer.route.config.query if peer is not None else None
        if peer is None or query is None or self.cohort is None:
            return 0
        if not isinstance(query.node, Node):
            return 0  # a DICOMweb upstream: retrieved with WADO-RS
        route = peer.route
        self.board.count(route.name, "queries")
        project = route.project
        try:
            identifier = event.identifier
            level = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
        except Exception:
            return 0
        confinement = confine(identifier, self.cohort, project)
        if level not in _LEVELS or confinement is None:
            return 0
        if confinement.patients is None and not confinement.uids:
            return 0  # a retrieve names what it retrieves: never the whole archive
        model = _UPSTREAM_GET[UID(str(event.request.AffectedSOPClassUID))]
        stage = Path(tempfile.mkdtemp(prefix="retrieve-", dir=self.spool))
        retrieved = Retrieved(stage, [])
        try:
            originals = stage / "originals"
            originals.mkdir()
            cohorting = Cohorting(route, confinement, self.cohort, stage / "out", self.pool)
            try:
                for upstream in _upstream_identifiers(level, confinement):
                    timeout = self.config.timeout
                    failed = fetch(query.node, model, upstream, originals, timeout, cohorting)
                    if failed is None:
                        self.board.error(route.name, f"C-GET: {query.node.label} did not deliver")
                        LOGGER.warning("route %s: the archive did not deliver", route.name)
                    elif failed:
                        self.board.error(route.name, f"C-GET: {query.node.label} failed {failed}")
                        LOGGER.warning(
                            "route %s: the archive failed %d instance(s)", route.name, failed
                        )
                    retrieved.failed += 1 if failed is None else failed
                retrieved.files = cohorting.files()
            finally:
                cohorting.close()
        except BaseException:
            retrieved.close()
            raise
        withheld = sum(1 for f in retrieved.files if f is None)
        if withheld:
            self.board.error(route.name, f"retrieve: {withheld} instance(s) withheld")
        return retrieved


def _destination(peer: Peer | None, ae_title: str) -> Node | None:
    query = peer.route.config.query if peer is not None else None
    if query is None:
        return None
    return next((n for n in query.move_destinations if n.ae_title == ae_title), None)


def _upstream_identifiers(level: str, confinement: Confinement) -> Iterator[Dataset]:
    """The upstream C-GET identifiers: the originals of the request's keys (one request per
    original patient when a pseudonym stands for several)."""
    patients: list[str | None] = [*sorted(confinement.patients or [])] or [None]
    for patient in patients:
        ds = Dataset()
        ds.QueryRetrieveLevel = level
        if patient is not None:
            ds.PatientID = patient
        for tag, originals in sorted(confinement.uids.items()):
            ds[tag] = DataElement(tag, "UI", sorted(originals))
        yield ds


def _sop_classes(node: Node, identifier: Dataset, timeout: float) -> set[str] | None:
    """The SOP classes of the instances a C-GET will retrieve, asked of the archive with a
    Study Root C-FIND at IMAGE level; None when it cannot say (then every storage class is
    proposed)."""
    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE"
    for tag in (0x00100020, 0x0020000D, 0x0020000E, 0x00080018):
        if tag in identifier:
            query[tag] = identifier[tag]
    query.SOPClassUID = ""
    try:
        classes = {
            str(answer.SOPClassUID)
            for answer in find_upstream(node, query, timeout)
            if answer.get("SOPClassUID")
        }
    except Exception:  # UpstreamError, or an answer that cannot be read
        return None
    return classes or None


def _storage_contexts(classes: set[str] | None) -> tuple[list[Any], list[Any]]:
    """The storage contexts (and SCP roles) a C-GET proposes.

    An archive accepts one transfer syntax per context and sends each instance on a context
    of its SOP class and syntax; an archive that does not transcode (Orthanc's C-GET) cannot
    send a compressed instance on the uncompressed syntax it chose. So when the classes are
    known and few, each gets a context of the uncompressed syntaxes and one context per
    compressed syntax; otherwise the first 127 storage classes get one context of every
    syntax each (PS3.8: at most 128 contexts).
    """
    uncompressed = [ts for ts in _UPSTREAM_SYNTAXES if not UID(ts).is_compressed]
    compressed = [ts for ts in _UPSTREAM_SYNTAXES if UID(ts).is_compressed]
    contexts: list[Any] = []
    roles: list[Any] = []
    if classes and len(classes) * (1 + len(compressed)) <= 127:
        for sop_class in sorted(classes):
            contexts.append(build_context(sop_class, uncompressed))
            contexts.extend(build_context(sop_class, [ts]) for ts in compressed)
            roles.append(build_role(sop_class, scp_role=True))
        return contexts, roles
    for context in StoragePresentationContexts[:127]:
        sop_class = str(context.abstract_syntax)
        contexts.append(build_context(sop_class, list(_UPSTREAM_SYNTAXES)))
        roles.append(build_role(sop_class, scp_role=True))
    return contexts, roles


def fetch(
    node: Node,
    model: str,
    identifier: Dataset,
    folder: Path,
    timeout: float,
    cohorting: Cohorting | None = None,
) -> int | None:
    """C-GET ``identifier`` from ``node`` into ``folder`` (one Part 10 file per instance),
    each in the transfer syntax the archive keeps it in where the archive allows (see
    :func:`_storage_contexts`); each file, once written, is handed to ``cohorting``.

    Parameters
    ----------
    node : Node
        The archive.
    model : str
        The C-GET SOP class (Patient or Study Root).
    identifier : Dataset
        What to retrieve (original UIDs).
    folder : Path
        Where the instances are written.
    timeout : float
        ACSE, DIMSE, network and connection timeouts, in seconds.
    cohorting : Cohorting or None, optional
        Told of each file as it is written (:meth:`Cohorting.arrived`).

    Returns
    -------
    int or None
        How many sub-operations the node reports failed (0: it delivered everything), at
        least 1 when it ends with a warning; None when it cannot be reached or ends
        otherwise (refused, failed).
    """
    # Names go on from an earlier fetch's into the folder (a cohorting deletes what it is
    # done with: it counts the names it was given).
    counter = (
        cohorting.names if cohorting is not None else itertools.count(len(list(folder.iterdir())))
    )
    lock = threading.Lock()

    def on_store(event: Event) -> int:
        with lock:
            path = folder / f"{next(counter):06d}.dcm"
        try:
            _write_received(event, path)
        except OSError:
            path.unlink(missing_ok=True)
            return 0xA700  # out of resources
        if cohorting is not None:
            cohorting.arrived(path)
        return 0x0000

    ae = _FetchingAE(folder, node.calling_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.connection_timeout = timeout
    storage, roles = _storage_contexts(_sop_classes(node, identifier, timeout))
    contexts = [build_context(model), *storage]
    tls = (node.tls.client_context(), node.host) if node.tls is not None else None
    try:
        assoc = ae.associate(
            node.host,
            node.port,
            contexts=contexts,
            ae_title=node.ae_title,
            ext_neg=roles,
            evt_handlers=[(evt.EVT_C_STORE, on_store)],
            tls_args=tls,
        )
    except (OSError, ValueError, RuntimeError):
        return None
    quiet(assoc)
    if not assoc.is_established:
        return None
    final, failed = None, 0
    try:
        for status, _ in assoc.send_c_get(identifier, model):
            code = status.get("Status") if status is not None else None
            if code is None:
                return None
            final = int(code)
            failed = int(status.get("NumberOfFailedSuboperations", 0) or 0)
    finally:
        with contextlib.suppress(Exception):
            if assoc.is_established:
                assoc.release()
    if final == 0x0000:
        return failed
    return max(failed, 1) if final is not None and final >> 12 == 0xB else None


def _write_received(event: Event, path: Path) -> None:
    """A data set received from the archive, written as a Part 10 file from what holds it:
    pynetdicom's buffer (not a joined copy, as ``Event.encoded_dataset`` makes: a 300 MB
    instance took 300 MB more of the gateway's memory), or the unnamed file a large one
    was received into (:class:`_FetchingAE`), which goes once written."""
    request = cast(C_STORE, event.request)
    received = cast(BytesIO, request.DataSet)
    spilled = spilled_file(received)
    header = spool_header(
        str(request.AffectedSOPClassUID),
        str(request.AffectedSOPInstanceUID),
        str(event.context.transfer_syntax),
    )
    try:
        with path.open("wb") as fh:
            fh.write(header)
            with received.getbuffer() as data:
                write_data_set(fh, data, received)
    finally:
        if spilled is not None:
            spilled.close()


class _FetchingAE(ClientAE):
    """The AE that retrieves originals from the archive with C-GET: a data set the archive
    sends on its association past :data:`~.dimse.IN_MEMORY` is received into an unnamed file
    of ``spill`` as it arrives (the gateway's own :class:`~.dimse.WaitingDimse`, as its
    accepted associations have it), never held in memory whole.

    Parameters
    ----------
    spill : Path
        The folder of the unnamed files.
    ae_title : str
        The calling AE title.
    """

    def __init__(self, spill: Path, ae_title: str) -> None:
        super().__init__(ae_title=ae_title)
        self.spill = spill

    def _create_socket(
        self,
        assoc: Association,
        address: Any,
        tls_args: Any,
    ) -> Any:
        sock = super()._create_socket(assoc, address, tls_args)
        assoc.dimse = WaitingDimse(assoc, IDLE_WAIT, self.spill)
        return sock


def _deliveries(retrieved: Retrieved) -> Iterator[tuple[int, Any]]:
    """(pending, data set) for each instance to deliver: a :class:`StagedInstance` standing
    for its file (:func:`send_files`); a withheld one gives a failed sub-operation."""
    for path in retrieved.files:
        if path is None:
            yield _PENDING, _WITHHELD
            continue
        yield _PENDING, StagedInstance(path)


class StagedInstance(Dataset):
    """A de-identified file to deliver, where pynetdicom's C-GET and C-MOVE services want a
    data set: its SOP Class and Instance UIDs (what pynetdicom reports of a sub-operation)
    and where it is. An association that :func:`send_files` sends it from the file.

    Parameters
    ----------
    path : Path
        The file (Part 10, as the gateway writes it).
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        meta = read_file_meta_info(path)
        self.SOPClassUID = meta.MediaStorageSOPClassUID
        self.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        self.staged = path


def send_files(assoc: Association) -> Association:
    """Have ``assoc`` send each :class:`StagedInstance` from its file.

    pynetdicom then reads the data set from the file in chunks (its documented setting for
    a path: global, so set before every send), never decoding nor encoding it again: an
    instance is not held in memory, nor its elements converted one by one (most of the
    gateway's work per retrieved instance). Where the peer did not accept the file's transfer
    syntax, the file is read and pynetdicom converts it as it does any data set.

    Parameters
    ----------
    assoc : Association
        The requester's association (C-GET), or the one to a move destination (C-MOVE).

    Returns
    -------
    Association
        ``assoc`` (once for each association, however often it is given).
    """
    if getattr(assoc, "_sends_files", False):
        return assoc
    send = assoc.send_c_store

    def send_c_store(dataset: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(dataset, StagedInstance):
            try:
                _config.STORE_SEND_CHUNKED_DATASET = True
                return send(dataset.staged, *args, **kwargs)
            except ValueError:  # no presentation context for the syntax as it is: convert
                dataset = dcmread(dataset.staged)
        return send(dataset, *args, **kwargs)

    assoc.send_c_store = send_c_store  # type: ignore[method-assign]
    assoc._sends_files = True  # type: ignore[attr-defined]
    return assoc


class RetrievingAE(AE):
    """The gateway's AE: a C-MOVE's association to its destination sends each de-identified
    instance from its file (:func:`send_files`), with its sending bounded
    (:func:`~.transport.bound_sending`)."""

    def associate(self, *args: Any, **kwargs: Any) -> Association:
        return send_files(super().associate(*args, **kwargs))

    def _create_socket(self, assoc: Association, address: Any, tls_args: Any) -> Any:
        sock = super()._create_socket(assoc, address, tls_args)
        bound_sending(assoc)
        return sock


def _contexts(files: list[Path | None]) -> list[Any]:
    """The presentation contexts to propose to a move destination: each SOP class with the
    transfer syntaxes its files are in (at most 128)."""
    syntaxes: dict[str, set[str]] = {}
    for path in files:
        if path is None:
            continue
        meta = read_file_meta_info(path)  # what a file is sent by (send_files)
        sop_class = str(meta.MediaStorageSOPClassUID)
        syntaxes.setdefault(sop_class, set()).add(str(meta.TransferSyntaxUID))
    contexts = [build_context(sop, sorted(ts)) for sop, ts in sorted(syntaxes.items())][:128]
    # nothing to send (the archive delivered nothing): pynetdicom still associates with the
    # destination before it takes the failure, and an association needs a context
    return contexts or [build_context(Verification)]
