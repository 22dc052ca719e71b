"""What the gateway's DIMSE handlers share: a route at run time and the peer it serves.

A :class:`Route` holds a configured route's compiled profiles, pseudonymizer, engines, and
its queue and forwarder when it forwards; a :class:`Peer` is the route an association was
given and who asked for it. Received instances are de-identified by worker processes
(:mod:`~dicomveil.gateway.pool`); what runs in the gateway's own process (query answers,
MPPS, retrievals, and instances when there are no workers) runs one at a time
(:data:`PIPELINE_LOCK`, process-wide): pydicom's reading relies on
``warnings.catch_warnings``, which is not thread-safe, and the work is CPU-bound under the
GIL anyway; receiving stays concurrent.
"""

from __future__ import annotations

import datetime as _dt
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from pydicom.dataset import Dataset

from dicomveil.engine import Engine
from dicomveil.gateway.config import GatewayConfig, Node, RouteConfig
from dicomveil.gateway.forward import Forwarder, ForwardListener, QueueForwarder
from dicomveil.gateway.queue import RouteQueue
from dicomveil.gateway.status import StatusBoard
from dicomveil.identity.pseudonyms import Pseudonymizer
from dicomveil.runs.maps import Gate
from dicomveil.standard.risks import Risk

__all__ = ["PIPELINE_LOCK", "Handler", "Peer", "Route", "status_dataset"]

PIPELINE_LOCK = threading.Lock()


class Route:
    """A route's engines, queue and forwarder.

    Parameters
    ----------
    config : RouteConfig
        The route.
    gateway : GatewayConfig
        The gateway's configuration (state folder, forwarding retries and limits).
    listener : ForwardListener
        Told by the route's forwarder of what it forwarded or refused.
    forwarding : bool
        Whether it has a forwarder (a worker process's routes only write the queue).
    """

    def __init__(
        self,
        config: RouteConfig,
        gateway: GatewayConfig,
        listener: ForwardListener,
        *,
        forwarding: bool = True,
    ) -> None:
        self.config = config
        self.name = config.name
        self.compiled = config.profile.compile()
        # Query answers and MPPS: nothing is withheld (no pixels), but a data set the engine
        # cannot clean is never passed on.
        self.answer_compiled = replace(config.profile, allow=frozenset(Risk)).compile()
        self.pseudonymizer = Pseudonymizer(config.key)
        # The project whose cohort it shares (:mod:`~dicomveil.gateway.cohort`): its key.
        self.project = config.key.fingerprint
        # The release gate (``verify = true``, the default): each instance is checked by
        # the verifier, against what it was received as, before it is stored or queued;
        # what it stops goes to the state folder's ``gated/<route>/`` for review.
        self.gate: Gate | None = None
        if config.verify:
            from dicomveil.qc.verify.gate import ReleaseGate

            self.gate = ReleaseGate(config.profile)
        self.gated = gateway.state_dir / "gated"
        self._engine: tuple[_dt.date, Engine] | None = None
        self._answer_engine: tuple[_dt.date, Engine] | None = None
        self.queue: RouteQueue | None = None
        self.forwarder: QueueForwarder | None = None
        if config.forward is not None:
            self.queue = RouteQueue(gateway.state_dir / "queue" / config.name)
        if config.forward is not None and self.queue is not None and forwarding:
            retries = {"retry_initial": gateway.retry_initial, "retry_max": gateway.retry_max}
            if isinstance(config.forward, Node):
                self.forwarder = Forwarder(
                    config.name, self.queue, config.forward, listener, **retries,
                    timeout=gateway.timeout, max_pdu_size=gateway.max_pdu_size,
                )  # fmt: skip
            else:  # a DICOMweb (STOW-RS) destination
                from dicomveil.gateway.web.forward import StowForwarder

                self.forwarder = StowForwarder(
                    config.name, self.queue, config.forward, listener, **retries,
                    timeout=gateway.timeout,
                )  # fmt: skip

    def engine(self) -> Engine:
        """The storage engine, with today's date (``dicomveil run`` uses the date it starts).

        Returns
        -------
        Engine
            The engine of the route's profile and key, made anew when the date changes.
        """
        today = _dt.date.today()
        if self._engine is None or self._engine[0] != today:
            # It cannot read ahead: free texts are cleaned of what the patient's instances
            # received before this one hold (the latest patients, see Engine's remember).
            engine = Engine(self.compiled, self.pseudonymizer, today=today, remember=True)
            self._engine = (today, engine)
        return self._engine[1]

    def answer_engine(self) -> Engine:
        """The engine for query answers and MPPS: the route's profile withholding nothing.

        Returns
        -------
        Engine
            The engine, with today's date, made anew when the date changes.
        """
        today = _dt.date.today()
        if self._answer_engine is None or self._answer_engine[0] != today:
            engine = Engine(self.answer_compiled, self.pseudonymizer, today=today)
            self._answer_engine = (today, engine)
        return self._answer_engine[1]

    def targets(self, ds: Dataset, pseudonym: str, stage: Path | None = None) -> list[Path]:
        """Where a de-identified instance goes: the output folder's file, then the queue's;
        with ``stage``, first where it waits for the release gate (the route's layout under
        ``stage``, in a folder named after the route, so that a stopped file keeps its
        place when it is moved into :attr:`gated`). The layout is filled in once.

        Parameters
        ----------
        ds : Dataset
            The de-identified data set (its UIDs name the files).
        pseudonym : str
            The patient pseudonym (the layout's ``{patient}``).
        stage : Path, optional
            The release gate's staging folder.

        Returns
        -------
        list of Path
            The staged file (with ``stage``), then one path per destination of the route,
            the folder first.
        """
        roots = [] if stage is None else [stage / self.name]
        if self.config.output is not None:
            roots.append(self.config.output)
        paths = self.config.layout.paths(roots, ds, pseudonym) if roots else []
        if self.queue is not None:
            paths.append(self.queue.entry_path(str(ds.get("SOPInstanceUID", "") or "")))
        return paths

    def staged(self, stage: Path, ds: Dataset, pseudonym: str) -> Path:
        """Where an instance waits for the release gate (see :meth:`targets`)."""
        return self.config.layout.path(stage / self.name, ds, pseudonym)

    def clean(self, ds: Dataset) -> Dataset | None:
        """De-identify a data set without pixels (a query answer, an MPPS attribute list).

        Parameters
        ----------
        ds : Dataset
            The data set (it may be changed in place).

        Returns
        -------
        Dataset or None
            The de-identified data set, or None when the engine cannot clean it (then it is
            never passed on).
        """
        try:
            done = self.answer_engine().deidentify(ds, has_pixel_data=False)
        except Exception:
            return None
        return done.dataset

    def map_uid(self, uid: str) -> str:
        """The UID as the de-identified data has it (unchanged with ``retain-uids``).

        Parameters
        ----------
        uid : str
            An original UID.

        Returns
        -------
        str
            Its pseudonymous UID, or ``uid`` itself when the profile keeps UIDs.
        """
        return self.pseudonymizer.uid(uid) if self.compiled.replace_uids else uid


@dataclass
class Peer:
    """The route an association (or a DICOMweb request) was given, who asked for it, and
    its instance count."""

    route: Route
    calling_ae: str
    called_ae: str
    address: str
    serial: int
    count: int = 0
    service: str = "C-STORE"  # how it sends instances (STOW-RS over DICOMweb)
    # The association's spool file: made for its first instance, overwritten by each next
    # one, removed when the association ends (see :class:`~dicomveil.gateway.store.StoreHandler`),
    # or after the instance in hand when it ends during one (``storing``, ``closed``).
    spool: Path | None = None
    storing: bool = False
    closed: bool = False


class Handler:
    """A DIMSE service of the gateway (C-STORE, C-FIND, MPPS).

    The node calls it with the pynetdicom event of one request (``event``) and the
    association's :class:`Peer` (``peer``: its route and sender; None when it has no route),
    and returns what pynetdicom expects of that event's handler.

    Parameters
    ----------
    config : GatewayConfig
        The gateway's configuration (limits, timeouts of the upstream associations).
    board : StatusBoard
        Counts and errors for the status file.
    """

    def __init__(self, config: GatewayConfig, board: StatusBoard) -> None:
        self.config = config
        self.board = board


def status_dataset(code: int, comment: str = "") -> Dataset:
    """A DIMSE response status, with an Error Comment unless it is a success.

    Parameters
    ----------
    code : int
        The status code.
    comment : str
        Why (never values from a data set); cut to the 64 characters of an LO.

    Returns
    -------
    Dataset
        The status data set a pynetdicom handler returns.
    """
    status = Dataset()
    status.Status = int(code)
    if comment and code != 0:
        status.ErrorComment = comment[:64]
    return status
