"""The DICOMweb application: STOW-RS, QIDO-RS and WADO-RS for the routes with ``[route.web]``.

Every path starts with the route's name (a client's base URL is
``http(s)://<gateway>:<web port>/<route>``)::

    POST /<route>/studies[/<study>]                              STOW-RS (storing routes)
    GET  /<route>/studies | /series | /instances                 QIDO-RS (query routes)
    GET  /<route>/studies/<study>/series | /instances
    GET  /<route>/studies/<study>/series/<series>/instances
    GET  /<route>/studies/<study>[/series/<series>[/instances/<sop>]]            WADO-RS
    GET  /<route>/studies/<study>[/series/<series>[/instances/<sop>]]/metadata

Every request needs ``Authorization: Bearer <token>`` with one of the route's tokens; an
unknown route and a wrong or missing token get the same 401 (no way to learn which routes
exist). Statuses: 400 malformed request or body, 401, 404 nothing of the cohort (or a
route without that service), 406 an Accept the gateway cannot answer, 409/202 STOW
failures (see :mod:`~dicomveil.gateway.web.stow`), 413 a body over ``max_body`` or with
more than 10,000 parts, 415 a Content-Type other than ``multipart/related;
type="application/dicom"``, 501 the rendered, bulk-data and frame resources (not served),
502 the upstream failed, 500 anything else (its type logged, never its message).

The access log (logger ``dicomveil.gateway``) names the route, the method, the path's
**template** (never its UIDs, never the query string), the status and the duration: a
client that put an original UID or a name in a path or a search leaves no trace of it.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydicom.filereader import read_file_meta_info
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from dicomveil.gateway.cohort import Cohort
from dicomveil.gateway.config import GatewayConfig
from dicomveil.gateway.route import Route
from dicomveil.gateway.store import StoreHandler
from dicomveil.gateway.web.auth import token_matches
from dicomveil.gateway.web.multipart import (
    BodyTooLargeError,
    MalformedBodyError,
    media_type,
    new_boundary,
    read_parts,
    write_parts,
)
from dicomveil.gateway.web.proxy import (
    INSTANCE,
    SERIES,
    STUDY,
    Search,
    SearchError,
    metadata,
    retrieve,
    search,
)
from dicomveil.gateway.web.stow import StowService
from dicomveil.gateway.web.upstream import Upstream, UpstreamError, upstream_for

__all__ = ["WebContext", "create_app"]

LOGGER = logging.getLogger("dicomveil.gateway")

DICOM_JSON = "application/dicom+json"
_LEVELS = {"studies": "STUDY", "series": "SERIES", "instances": "IMAGE"}
# PS3.18 8.3.4.4: a search that stopped before the end (the gateway reads at most
# MAX_SCANNED upstream answers per search).
_TRUNCATED = (
    '299 dicomveil: "The number of results exceeded the maximum supported by the server. '
    'Additional results can be requested."'
)


@dataclass
class WebContext:
    """What the application needs of the running gateway.

    Attributes
    ----------
    config : GatewayConfig
        The configuration (``[gateway.web]``: size limit).
    routes : dict of str to Route
        The gateway's routes (those with tokens are served).
    store : StoreHandler
        The C-STORE service STOW-RS stores through.
    spool : Path
        Where bodies and retrievals are staged.
    syntaxes : frozenset of str
        The transfer syntaxes the gateway reads.
    cohort : callable
        Returns the gateway's cohorts (None before it starts).
    base_url : callable
        Returns the base URL clients reach the gateway at (Retrieve URLs).
    """

    config: GatewayConfig
    routes: dict[str, Route]
    store: StoreHandler
    spool: Path
    syntaxes: frozenset[str]
    cohort: Callable[[], Cohort | None]
    base_url: Callable[[], str]


class _RefusedError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


def create_app(context: WebContext) -> FastAPI:
    """The DICOMweb application of a gateway.

    Parameters
    ----------
    context : WebContext
        The running gateway's routes, store service, spool and cohort.

    Returns
    -------
    FastAPI
        The ASGI application.
    """
    web = context.config.web
    max_body = web.max_body if web is not None else 2**30
    stow = StowService(context.store, context.syntaxes)
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(_RefusedError)
    async def refused(request: Request, exc: _RefusedError) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=exc.headers)

    @app.middleware("http")
    async def access_log(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.monotonic()
        try:
            response = await call_next(request)
        except Exception as exc:  # never a traceback: a library's message may quote a value
            LOGGER.error("web: internal error (%s)", type(exc).__name__)
            response = JSONResponse({"error": "internal error"}, status_code=500)
        template = getattr(request.scope.get("route"), "path", "(no such path)")
        LOGGER.info(
            "web %s %s %s -> %d (%.0f ms)",
            request.client.host if request.client else "-",
            request.method,
            template,
            response.status_code,
            (time.monotonic() - start) * 1000,
        )
        return response

    def route_of(request: Request, name: str) -> Route:
        route = context.routes.get(name)
        hashes = route.config.web_tokens if route is not None else ()
        if route is None or not token_matches(request.headers.get("authorization"), hashes):
            raise _RefusedError(
                401, "a valid bearer token is needed", {"WWW-Authenticate": "Bearer"}
            )
        return route

    def query_side(route: Route) -> tuple[Cohort, Upstream]:
        cohort = context.cohort()
        if route.config.query is None or cohort is None:
            raise _RefusedError(404, "this route does not search or retrieve")
        context.store.board.count(route.name, "queries")  # as C-FIND and C-GET count
        # One per request: a requests session is not meant to be shared between threads.
        return cohort, upstream_for(route.config.query, context.config.timeout)

    def base_url(request: Request, name: str) -> str:
        return f"{context.base_url()}/{name}"  # never the request's Host: a client's say

    # STOW-RS ---------------------------------------------------------------------------
    async def store(request: Request, name: str, study: str | None) -> Response:
        route = route_of(request, name)
        if route.config.output is None and route.queue is None:
            raise _RefusedError(404, "this route does not store instances")
        kind, params = media_type(request.headers.get("content-type"))
        if kind != "multipart/related" or params.get("type", "").lower() != "application/dicom":
            raise _RefusedError(415, 'the body must be multipart/related; type="application/dicom"')
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body:
            raise _RefusedError(413, f"the body is longer than {max_body} bytes")
        folder = Path(tempfile.mkdtemp(prefix="stow-", dir=context.spool))
        try:
            try:
                parts = await read_parts(
                    request.stream(), params.get("boundary", ""), folder, max_body
                )
            except BodyTooLargeError as exc:
                raise _RefusedError(413, str(exc)) from None
            except MalformedBodyError as exc:
                raise _RefusedError(400, str(exc)) from None
            if any(part.content_type != "application/dicom" for part in parts):
                raise _RefusedError(415, "every part must be application/dicom")
            address = request.client.host if request.client else ""
            answer = await run_in_threadpool(
                stow, route, parts, study, address, base_url(request, name)
            )
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return JSONResponse(answer.body, status_code=answer.status, media_type=DICOM_JSON)

    @app.post("/{name}/studies")
    async def store_instances(request: Request, name: str) -> Response:
        return await store(request, name, None)

    @app.post("/{name}/studies/{study}")
    async def store_study(request: Request, name: str, study: str) -> Response:
        return await store(request, name, study)

    # QIDO-RS ---------------------------------------------------------------------------
    def find(request: Request, name: str, level: str, path: dict[int, str]) -> Response:
        route = route_of(request, name)
        cohort, upstream = query_side(route)
        try:
            wanted = Search.parse(level, list(request.query_params.multi_items()), path)
            found = search(route, cohort, upstream, wanted, base_url(request, name))
        except SearchError as exc:
            raise _RefusedError(400, str(exc)) from None
        except UpstreamError as exc:
            raise _RefusedError(502, f"the upstream failed: {exc}") from None
        headers = {"Warning": _TRUNCATED} if found.truncated else None
        if not found.answers:
            return Response(status_code=204, headers=headers)
        return JSONResponse(found.answers, media_type=DICOM_JSON, headers=headers)

    @app.get("/{name}/{resource}")
    def search_all(request: Request, name: str, resource: str) -> Response:
        if resource not in _LEVELS:
            route_of(request, name)
            raise _RefusedError(404, "no such resource")
        return find(request, name, _LEVELS[resource], {})

    @app.get("/{name}/studies/{study}/series")
    def search_series(request: Request, name: str, study: str) -> Response:
        return find(request, name, "SERIES", {STUDY: study})

    @app.get("/{name}/studies/{study}/instances")
    def search_study_instances(request: Request, name: str, study: str) -> Response:
        return find(request, name, "IMAGE", {STUDY: study})

    @app.get("/{name}/studies/{study}/series/{series}/instances")
    def search_series_instances(request: Request, name: str, study: str, series: str) -> Response:
        return find(request, name, "IMAGE", {STUDY: study, SERIES: series})

    # WADO-RS ---------------------------------------------------------------------------
    def deliver(request: Request, name: str, uids: dict[int, str], meta: bool) -> Response:
        route = route_of(request, name)
        cohort, upstream = query_side(route)
        accept = request.headers.get("accept", "*/*")
        syntaxes = _acceptable(accept, meta)
        if syntaxes is None:
            raise _RefusedError(
                406,
                "the gateway answers "
                + (DICOM_JSON if meta else 'multipart/related; type="application/dicom"'),
            )
        try:
            retrieval = retrieve(route, cohort, upstream, uids, context.spool, context.store.pool)
        except UpstreamError as exc:
            raise _RefusedError(502, f"the upstream failed: {exc}") from None
        if retrieval is None or not retrieval.files:
            if retrieval is not None:
                retrieval.close()
            raise _RefusedError(404, "nothing of the cohort has these UIDs")
        if meta:
            try:
                described = [metadata(path) for path in retrieval.files]
            finally:
                retrieval.close()
            return JSONResponse(described, media_type=DICOM_JSON)
        parts: list[tuple[Path, str]] = []
        for path in retrieval.files:
            syntax = _syntax(path)
            if syntaxes and syntax not in syntaxes:
                retrieval.close()
                raise _RefusedError(
                    406,
                    "an instance is kept in a transfer syntax not accepted "
                    "(the gateway never transcodes)",
                )
            parts.append((path, f"application/dicom; transfer-syntax={syntax}"))
        boundary = new_boundary()

        def body() -> Iterator[bytes]:
            try:
                yield from write_parts(parts, boundary)
            finally:
                retrieval.close()

        kind = f'multipart/related; type="application/dicom"; boundary={boundary}'
        # The stage is removed when the body is sent, and also when the client went away
        # before it started (then the generator never runs: the background task does it).
        return StreamingResponse(
            body(), media_type=kind, background=BackgroundTask(retrieval.close)
        )

    for meta in (False, True):
        suffix = "/metadata" if meta else ""
        _add_wado(app, deliver, meta, suffix)

    @app.api_route("/{name}/{rest:path}", methods=["GET", "POST", "PUT", "DELETE"])
    def unserved(request: Request, name: str, rest: str) -> Response:
        route_of(request, name)
        if any(word in rest.split("/") for word in ("rendered", "thumbnail", "frames", "bulk")):
            raise _RefusedError(501, "rendered, bulk-data and frame resources are not served")
        raise _RefusedError(404, "no such resource")

    return app


def _add_wado(
    app: FastAPI,
    deliver: Callable[[Request, str, dict[int, str], bool], Response],
    meta: bool,
    suffix: str,
) -> None:
    """The three WADO-RS resources (study, series, instance), or their metadata."""

    def study(request: Request, name: str, study: str) -> Response:
        return deliver(request, name, {STUDY: study}, meta)

    def series(request: Request, name: str, study: str, series: str) -> Response:
        return deliver(request, name, {STUDY: study, SERIES: series}, meta)

    def instance(request: Request, name: str, study: str, series: str, sop: str) -> Response:
        return deliver(request, name, {STUDY: study, SERIES: series, INSTANCE: sop}, meta)

    app.add_api_route("/{name}/studies/{study}" + suffix, study, methods=["GET"])
    app.add_api_route("/{name}/studies/{study}/series/{series}" + suffix, series, methods=["GET"])
    app.add_api_route(
        "/{name}/studies/{study}/series/{series}/instances/{sop}" + suffix,
        instance,
        methods=["GET"],
    )


def _acceptable(accept: str, meta: bool) -> set[str] | None:
    """The transfer syntaxes an Accept header takes (empty: any), or None when it takes
    nothing the gateway answers."""
    syntaxes: set[str] = set()
    for item in accept.split(","):
        kind, params = media_type(item)
        if kind in ("*/*", ""):
            return set()
        if meta:
            if kind in (DICOM_JSON, "application/json", "application/*"):
                return set()
            continue
        inner = params.get("type", "application/dicom").lower()
        if kind in ("multipart/related", "multipart/*") and inner in ("application/dicom", "*/*"):
            syntax = params.get("transfer-syntax", "*")
            if syntax == "*":
                return set()
            syntaxes.add(syntax)
        elif kind == "application/dicom":
            return set()
    return syntaxes or None


def _syntax(path: Path) -> str:
    with contextlib.suppress(Exception):
        return str(read_file_meta_info(path).TransferSyntaxUID)
    return "1.2.840.10008.1.2.1"
