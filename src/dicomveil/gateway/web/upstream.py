"""The archive behind a query route: a DIMSE node or a DICOMweb service, one interface.

QIDO-RS and WADO-RS requests (:mod:`~dicomveil.gateway.web.proxy`) search and retrieve
the originals through an :class:`Upstream`: :class:`DimseUpstream` with C-FIND and C-GET
(the gateway's own associations, as its DIMSE proxy uses them), :class:`WebUpstream` with
QIDO-RS and WADO-RS through ``dicomweb-client``. Retrieved originals are written to a
folder as Part 10 files, never kept in memory; what they hold is never logged.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import Generator
from pathlib import Path
from typing import Any, Protocol

import requests
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from dicomveil.gateway.config import Node, QueryUpstream, WebService
from dicomveil.gateway.query import UpstreamError, find_upstream
from dicomveil.gateway.retrieve import StudyRootQueryRetrieveInformationModelGet, fetch
from dicomveil.gateway.web.client import web_client, web_session
from dicomveil.gateway.web.multipart import media_type, spool_parts

__all__ = [
    "DimseUpstream",
    "Upstream",
    "UpstreamError",
    "WebUpstream",
    "upstream_for",
]

_ALL = (0x0020000D, 0x0020000E, 0x00080018)
_PAGE = 500  # answers asked of a DICOMweb upstream per request
_ANY_DICOM = 'multipart/related; type="application/dicom"; transfer-syntax=*'
_CHUNK = 1 << 20


class Upstream(Protocol):
    """What the DICOMweb proxy asks of the archive behind a route."""

    def find(self, level: str, query: Dataset) -> Generator[Dataset, None, None]:
        """The answers to a query at ``level`` (STUDY, SERIES or IMAGE): values given are
        matching keys, empty ones return keys; closing the generator stops the query
        upstream. Raises :exc:`UpstreamError` (HTTP 502 to the client)."""
        ...

    def fetch(self, uids: dict[int, str], folder: Path) -> None:
        """Retrieve the instances of one study, series or instance (``uids``: Study,
        Series and SOP Instance UIDs by tag, the first, first two or all three) into
        ``folder``, one Part 10 file each. Raises :exc:`UpstreamError`."""
        ...


def upstream_for(query: QueryUpstream, timeout: float) -> Upstream:
    """The upstream of a route's ``[route.query]``.

    Parameters
    ----------
    query : QueryUpstream
        The route's query settings.
    timeout : float
        Connection and answer timeouts, in seconds.

    Returns
    -------
    Upstream
        A :class:`WebUpstream` for a URL, else a :class:`DimseUpstream`.
    """
    if isinstance(query.node, Node):
        return DimseUpstream(query.node, timeout)
    return WebUpstream(query.node, timeout)


class DimseUpstream:
    """A DIMSE archive: Study Root C-FIND and C-GET.

    Parameters
    ----------
    node : Node
        The archive.
    timeout : float
        ACSE, DIMSE and network timeouts, in seconds.
    """

    def __init__(self, node: Node, timeout: float) -> None:
        self.node = node
        self.timeout = timeout

    def find(self, level: str, query: Dataset) -> Generator[Dataset, None, None]:
        """C-FIND ``query`` at ``level`` (see :meth:`Upstream.find`)."""
        query.QueryRetrieveLevel = level
        yield from find_upstream(self.node, query, self.timeout)

    def fetch(self, uids: dict[int, str], folder: Path) -> None:
        """C-GET the instances of ``uids`` into ``folder`` (see :meth:`Upstream.fetch`)."""
        identifier = Dataset()
        identifier.QueryRetrieveLevel = ("STUDY", "SERIES", "IMAGE")[len(uids) - 1]
        for tag in _ALL[: len(uids)]:
            identifier[tag] = DataElement(tag, "UI", uids[tag])
        model = StudyRootQueryRetrieveInformationModelGet
        failed = fetch(self.node, model, identifier, folder, self.timeout)
        if failed is None:
            raise UpstreamError(f"{self.node.label} did not deliver")
        if failed:  # a partial answer is no answer: the client would not know what is missing
            raise UpstreamError(f"{self.node.label} failed {failed} instance(s)")


def _universal(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip()) and not value.strip().strip("*")


class WebUpstream:
    """A DICOMweb archive: QIDO-RS and WADO-RS with ``dicomweb-client``.

    Parameters
    ----------
    service : WebService
        The archive's base URL, token and TLS settings.
    timeout : float
        Connection and read timeouts, in seconds.
    """

    def __init__(self, service: WebService, timeout: float) -> None:
        self.service = service
        self.timeout = timeout
        self.client = web_client(service, timeout)
        self.session = web_session(service)  # WADO-RS answers read as they arrive

    def find(self, level: str, query: Dataset) -> Generator[Dataset, None, None]:
        """QIDO-RS ``query`` at ``level`` (see :meth:`Upstream.find`)."""
        filters: dict[str, str] = {}
        fields: list[str] = []
        for element in query:
            if element.tag.group == 0x0008 and element.tag.element in (0x0005, 0x0052):
                continue
            keyword = element.keyword or f"{int(element.tag):08X}"
            if element.VR == "SQ" or element.value in (None, "", b"") or _universal(element.value):
                # "*" matches every value (PS3.4 C.2.2.2.4): asked as a return key, as
                # archives differ on it (Orthanc 1.10's QIDO-RS matched nothing)
                fields.append(keyword)
                continue
            value = element.value
            if isinstance(value, list | tuple | MultiValue):
                # PS3.18 8.3.4.1: a list of UIDs is comma-separated (Orthanc takes no "\\").
                filters[keyword] = ",".join(str(v) for v in value)
            else:
                filters[keyword] = str(value)
        offset = 0
        while True:  # page by page: a caller that stops reading stops the requests
            options: dict[str, Any] = {
                "search_filters": filters,
                "fields": fields,
                "limit": _PAGE,
                "offset": offset,
            }
            try:
                if level == "STUDY":
                    page = self.client.search_for_studies(**options)
                elif level == "SERIES":
                    page = self.client.search_for_series(**options)
                else:
                    page = self.client.search_for_instances(**options)
            except Exception as exc:  # requests' and the client's errors: never their text
                raise UpstreamError(f"{self.service.label}: {type(exc).__name__}") from None
            for answer in page:
                try:
                    ds = Dataset.from_json(answer)
                except Exception:  # an answer pydicom cannot read is not passed on
                    ds = None
                if ds is not None:
                    yield ds
            if len(page) < _PAGE:
                return
            offset += len(page)

    def fetch(self, uids: dict[int, str], folder: Path) -> None:
        """WADO-RS the instances of ``uids`` into ``folder`` (see :meth:`Upstream.fetch`);
        every transfer syntax accepted, so the archive sends them as it keeps them. The
        answer is read as it arrives, each instance into its own file as the archive sent
        it (:func:`~.multipart.spool_parts`): an instance is never held in memory (through
        ``dicomweb-client``, a 300 MB one took 1.2 GB of the gateway's)."""
        study, series, sop = (uids.get(tag) for tag in _ALL)
        assert study is not None
        url = f"{self.service.url.rstrip('/')}/studies/{study}"
        if series is not None:
            url += f"/series/{series}"
            if sop is not None:
                url += f"/instances/{sop}"
        headers = {**self.service.headers(), "Accept": _ANY_DICOM}
        stage = Path(tempfile.mkdtemp(prefix="wado-", dir=folder))
        try:
            try:
                with self.session.get(
                    url, headers=headers, stream=True, timeout=self.timeout
                ) as answer:
                    if answer.status_code in (204, 404):
                        return  # nothing of these UIDs upstream
                    answer.raise_for_status()
                    kind, params = media_type(answer.headers.get("content-type"))
                    if kind != "multipart/related":
                        raise UpstreamError(f"{self.service.label}: not a multipart answer")
                    chunks = answer.iter_content(_CHUNK)
                    parts = spool_parts(chunks, params.get("boundary", ""), stage, 1 << 30)
            except UpstreamError:
                raise
            except requests.RequestException as exc:  # an OSError too: the archive's failure
                raise UpstreamError(f"{self.service.label}: {type(exc).__name__}") from None
            except OSError:
                raise  # the stage folder's (the gateway's own)
            except Exception as exc:  # the parser's errors: never their text
                raise UpstreamError(f"{self.service.label}: {type(exc).__name__}") from None
            counter = itertools.count(sum(1 for path in folder.iterdir() if path.is_file()))
            for part in parts:
                if part.content_type == "application/dicom":
                    part.path.rename(folder / f"{next(counter):06d}.dcm")
        finally:
            shutil.rmtree(stage, ignore_errors=True)
