"""MPPS: Modality Performed Procedure Step N-CREATE and N-SET, forwarded de-identified.

Where a route names an ``[route.mpps]`` node, the attribute list (N-CREATE) or the
modification list (N-SET) goes through the engine with the route's profile and key
(nothing withheld, no pixels) and is sent to that node, the SOP Instance UID mapped as the
de-identified data maps it. A list the engine cannot clean is never forwarded. The sender
gets its own attributes back, as if the step was created as it asked.

A step's N-SET (its end date and time, its series) rarely names the patient, whose key
decides the offset every date of theirs moves by: the gateway remembers the patient's
elements of each step it created (the latest :data:`_STEPS`, in memory only) and cleans the
step's N-SETs with them, so that its dates move by the same offset as its N-CREATE's (they
moved by another patient's before). An N-SET with a date or time for a step the gateway
does not know (created before it restarted) is not forwarded (0x0110): its dates cannot be
moved consistently.
"""

from __future__ import annotations

import contextlib
import copy
import threading
from collections import OrderedDict
from typing import Any, cast

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom.dimse_primitives import N_CREATE, N_SET
from pynetdicom.events import Event

from dicomveil.gateway.route import PIPELINE_LOCK, Handler, Peer
from dicomveil.gateway.transport import open_association

__all__ = ["ModalityPerformedProcedureStep", "MppsHandler"]

# The SOP class (PS3.4; pynetdicom.sop_class makes it at run time, invisible to mypy).
ModalityPerformedProcedureStep = UID("1.2.840.10008.3.1.2.3.3")


# The patient's elements (the engine's patient key: PatientID, its issuer, name, birth date).
_PATIENT_TAGS = (0x00100010, 0x00100020, 0x00100021, 0x00100030)
_STEPS = 4096  # steps whose patient the handler remembers (the latest)
_TEMPORAL_VRS = frozenset({"DA", "DT", "TM"})


class MppsHandler(Handler):
    """The MPPS service: de-identifies N-CREATE and N-SET requests and forwards them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._steps: OrderedDict[tuple[str, str], Dataset] = OrderedDict()
        self._steps_lock = threading.Lock()

    def __call__(
        self, event: Event, peer: Peer | None, *, create: bool
    ) -> tuple[int, Dataset | None]:
        """Answer one N-CREATE (``create``) or N-SET request (``EVT_N_CREATE``,
        ``EVT_N_SET``).

        Returns
        -------
        tuple
            The status and, on success, the sender's own attribute list: 0x0110 when the
            route does not forward MPPS or the list cannot be cleaned or sent, 0x0122 for
            another SOP class, 0x0213 when the node cannot be reached; else the node's.
        """
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
            step = (route.name, str(uid or ""))
            work = copy.deepcopy(data)
            added = [] if create else self._as_created(step, work)
            if added is None:
                self.board.error(route.name, "MPPS: an N-SET of a step not created here")
                return 0x0110, None
            with PIPELINE_LOCK:
                clean = route.clean(work)
                mapped = route.map_uid(str(uid)) if uid else ""
            if create and uid:
                self._remember(step, data)
            for tag in added:  # what the sender did not send is not sent on
                if clean is not None and tag in clean:
                    del clean[tag]
        except Exception:
            return 0x0110, None
        if clean is None:
            self.board.error(route.name, "MPPS: a data set could not be cleaned: not forwarded")
            return 0x0110, None
        assoc = open_association(node, ModalityPerformedProcedureStep, self.config.timeout)
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

    def _remember(self, step: tuple[str, str], data: Dataset) -> None:
        """Keep the patient's elements of a step just created."""
        patient = Dataset()
        for tag in _PATIENT_TAGS:
            if tag in data:
                patient[tag] = copy.deepcopy(data[tag])
        if "SpecificCharacterSet" in data:
            patient.SpecificCharacterSet = data.SpecificCharacterSet
        with self._steps_lock:
            self._steps[step] = patient
            self._steps.move_to_end(step)
            while len(self._steps) > _STEPS:
                self._steps.popitem(last=False)

    def _as_created(self, step: tuple[str, str], work: Dataset) -> list[int] | None:
        """Add to an N-SET's ``work`` copy the patient's elements of its step's N-CREATE that
        it lacks; the tags added, or None for an N-SET with dates or times of a step the
        handler does not know."""
        with self._steps_lock:
            patient = self._steps.get(step)
        if patient is None:
            return None if _has_temporal(work) else []
        added = [int(e.tag) for e in patient if e.tag not in work]
        for tag in added:
            work[tag] = copy.deepcopy(patient[tag])
        return added


def _has_temporal(ds: Dataset) -> bool:
    """Whether a data set (its sequences' items too) holds a date or time."""
    for element in ds:
        if element.VR in _TEMPORAL_VRS and element.value not in (None, ""):
            return True
        if element.VR == "SQ" and any(_has_temporal(item) for item in element.value or []):
            return True
    return False
