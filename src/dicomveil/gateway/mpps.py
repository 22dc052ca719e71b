"""MPPS: Modality Performed Procedure Step N-CREATE and N-SET, forwarded de-identified.

Where a route names an ``[route.mpps]`` node, the attribute list (N-CREATE) or the
modification list (N-SET) goes through the engine with the route's profile and key
(nothing withheld, no pixels) and is sent to that node, the SOP Instance UID mapped as the
de-identified data maps it. A list the engine cannot clean is never forwarded. The sender
gets its own attributes back, as if the step was created as it asked.
"""

from __future__ import annotations

import contextlib
import copy
from typing import cast

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom.dimse_primitives import N_CREATE, N_SET
from pynetdicom.events import Event

from dicomveil.gateway.route import PIPELINE_LOCK, Handler, Peer
from dicomveil.gateway.transport import open_association

__all__ = ["ModalityPerformedProcedureStep", "MppsHandler"]

# The SOP class (PS3.4; pynetdicom.sop_class makes it at run time, invisible to mypy).
ModalityPerformedProcedureStep = UID("1.2.840.10008.3.1.2.3.3")


class MppsHandler(Handler):
    """The MPPS service: de-identifies N-CREATE and N-SET requests and forwards them."""

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
            with PIPELINE_LOCK:
                clean = route.clean(copy.deepcopy(data))
                mapped = route.map_uid(str(uid)) if uid else ""
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
