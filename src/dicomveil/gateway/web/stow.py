"""STOW-RS: instances stored through the gateway, de-identified like C-STORE.

``POST /<route>/studies`` (and ``/<route>/studies/<study>``) takes a ``multipart/related;
type="application/dicom"`` body of Part 10 instances. The body is read whole to the spool
first (see :mod:`~dicomveil.gateway.web.multipart`): a malformed one (400), one longer than
``max_body`` (413), or one with a part that is not ``application/dicom`` (415) stores
nothing. Each instance then goes through the C-STORE pipeline of the route
(:meth:`~dicomveil.gateway.store.StoreHandler.pipeline`: the worker processes, the release
gate, the folder and the forwarding queue), so it is written with the bytes ``dicomveil
run`` writes for the same file, profile and key, joins the project's cohort and is
forwarded to the route's destination (a DIMSE node or a STOW-RS service).

The answer is the PS3.18 Store Instances Response (``application/dicom+json``): the
Referenced SOP Sequence holds the **new** UIDs of what was stored, with its Retrieve URL
through the gateway; the Failed SOP Sequence holds the UIDs the client sent (only the
sender sees them) and a Failure Reason:

========  ================================================================================
0xC122    the instance's transfer syntax is not one the gateway reads (never stored)
0xC000    the part cannot be read as a Part 10 instance, or cannot be parsed
0xA900    it is not of the study of the request's path
0xC001    withheld: the profile will not release it, or the release gate stopped it
0xC002    it cannot be de-identified safely
0xA700    out of resources (the disk is full)
0x0110    any other processing failure
========  ================================================================================

HTTP status: 200 when every instance was stored, 202 when some were, 409 when none was.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filereader import read_file_meta_info
from pydicom.sequence import Sequence

from dicomveil.gateway.route import Peer, Route
from dicomveil.gateway.store import StoreHandler, StoreStatus
from dicomveil.gateway.web.multipart import Part
from dicomveil.runs.batch import Outcome, Task

__all__ = ["StowAnswer", "StowService"]

TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122
WITHHELD = 0xC001
_HEADER_TAGS = [0x00080016, 0x00080018, 0x0020000D, 0x0020000E]


@dataclass
class StowAnswer:
    """The HTTP status and the Store Instances Response (DICOM JSON)."""

    status: int
    body: dict[str, Any]


@dataclass
class _Instance:
    part: Part
    sop_class: str = ""
    sop_instance: str = ""
    study: str = ""
    series: str = ""
    failure: int | None = None


class StowService:
    """Stores the instances of STOW-RS requests through the route's C-STORE pipeline.

    Parameters
    ----------
    store : StoreHandler
        The gateway's C-STORE service (its pipeline, counts, events and cohort).
    syntaxes : collection of str
        The transfer syntaxes the gateway reads.
    """

    def __init__(self, store: StoreHandler, syntaxes: frozenset[str]) -> None:
        self.store = store
        self.syntaxes = syntaxes
        self._serials = itertools.count(1)

    def __call__(
        self, route: Route, parts: list[Part], study: str | None, address: str, base: str
    ) -> StowAnswer:
        """Store a request's instances and answer it.

        Parameters
        ----------
        route : Route
            The route of the request's path.
        parts : list of Part
            The body's parts (all ``application/dicom``), spooled.
        study : str or None
            The Study Instance UID of the request's path, if any.
        address : str
            The client's address (events and audit).
        base : str
            The route's base URL (Retrieve URLs).

        Returns
        -------
        StowAnswer
            The status and the response.
        """
        peer = Peer(route, "DICOMWEB", "", address, next(self._serials), service="STOW-RS")
        referenced: list[Dataset] = []
        failed: list[Dataset] = []
        studies: set[str] = set()
        for index, part in enumerate(parts, start=1):
            instance = self._read(part, study)
            if instance.failure is not None:
                failed.append(_failed(instance, instance.failure))
                continue
            task = Task(Path(f"stow-rs:{peer.serial}:{index}"))
            expect = (instance.sop_class, instance.sop_instance)
            pipeline = partial(self.store.pipeline, route, part.path, task, expect)
            stored = self.store.settle(peer, task, pipeline)
            result = stored.result
            if result.outcome is Outcome.WRITTEN:
                # The new UIDs (the same where the profile keeps UIDs); a UID the map
                # lacks (an odd value, such as a multi-valued one) is left out, never echoed.
                keeps = not route.compiled.replace_uids
                study_uid, series_uid, sop_uid = (
                    uid if keeps else result.uid_map.get(uid) for uid in _uids(instance)
                )
                item = Dataset()
                item.ReferencedSOPClassUID = instance.sop_class
                if sop_uid:
                    item.ReferencedSOPInstanceUID = sop_uid
                if study_uid and series_uid and sop_uid:
                    studies.add(study_uid)
                    item.RetrieveURL = (
                        f"{base}/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}"
                    )
                referenced.append(item)
            elif result.outcome is Outcome.WITHHELD:
                failed.append(_failed(instance, WITHHELD))
            else:
                failed.append(_failed(instance, int(stored.status)))
        response = Dataset()
        if len(studies) == 1 and all(i.get("RetrieveURL") for i in referenced):
            response.RetrieveURL = f"{base}/studies/{next(iter(studies))}"
        if failed:
            response.FailedSOPSequence = Sequence(failed)
        if referenced:
            response.ReferencedSOPSequence = Sequence(referenced)
        status = 200 if not failed else 202 if referenced else 409
        return StowAnswer(status, response.to_json_dict())

    def _read(self, part: Part, study: str | None) -> _Instance:
        """What a part holds, or why it fails before it is de-identified."""
        instance = _Instance(part)
        declared = part.params.get("transfer-syntax")
        if declared is not None and declared not in self.syntaxes:
            instance.failure = TRANSFER_SYNTAX_NOT_SUPPORTED
            return instance
        try:
            meta = read_file_meta_info(part.path)
            syntax = str(meta.TransferSyntaxUID)
        except Exception:
            instance.failure = int(StoreStatus.MALFORMED)
            return instance
        if syntax not in self.syntaxes:
            instance.failure = TRANSFER_SYNTAX_NOT_SUPPORTED
            return instance
        try:
            header = dcmread(part.path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
            # The data set's own UIDs, as `dicomveil run` reads them (real files' File Meta
            # Information sometimes disagrees with their data set).
            instance.sop_class = str(header.get("SOPClassUID", "") or "")
            instance.sop_instance = str(header.get("SOPInstanceUID", "") or "")
            instance.study = str(header.get("StudyInstanceUID", "") or "")
            instance.series = str(header.get("SeriesInstanceUID", "") or "")
        except Exception:
            instance.failure = int(StoreStatus.MALFORMED)
            return instance
        if study is not None and instance.study != study:
            instance.failure = int(StoreStatus.MISMATCH)
        return instance


def _uids(instance: _Instance) -> list[str]:
    return [instance.study, instance.series, instance.sop_instance]


def _failed(instance: _Instance, reason: int) -> Dataset:
    item = Dataset()
    if instance.sop_class:
        item.ReferencedSOPClassUID = instance.sop_class
    if instance.sop_instance:
        item.ReferencedSOPInstanceUID = instance.sop_instance
    item.FailureReason = reason
    return item
