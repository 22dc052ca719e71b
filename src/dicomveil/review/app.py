"""The review application: FastAPI, server-rendered pages (Jinja2, autoescaped), plain forms,
no JavaScript; the stylesheet ships in the package.

Security (see :mod:`dicomveil.review` for the whole list):

* **Sessions**: a signed cookie (Starlette's ``SessionMiddleware``, itsdangerous), HttpOnly,
  SameSite=Strict, Secure under TLS, 8 hours; it holds the account's name and the CSRF
  token, nothing else. The signing secret is made at start (a restart logs everyone out)
  unless ``DICOMVEIL_REVIEW_SECRET`` gives one (several processes behind one proxy).
* **CSRF**: every form carries the session's token; a POST without it, or with another,
  is refused (403) before anything else happens.
* **Who sees what**: every page needs a login (pages redirect to it, everything else gets
  401); originals and images need a reviewing role (403 otherwise).
* **Headers**: a Content Security Policy allowing nothing but this origin's stylesheet and
  images (no scripts at all), no caching of pages, no referrer, no framing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from fastapi import FastAPI, Request, Response
from fastapi.responses import PlainTextResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.middleware.sessions import SessionMiddleware

from dicomveil.qc.audit import AuditTrail
from dicomveil.review import routes
from dicomveil.review.security import ForbiddenError, NotLoggedInError
from dicomveil.review.store import ReviewStore
from dicomveil.review.subjects import index_pending
from dicomveil.review.sweep import Sweeps

__all__ = ["ReviewSettings", "create_app"]

LOGGER = logging.getLogger(__name__)
SESSION_COOKIE: Final = "dicomveil_review"
SESSION_SECONDS: Final = 8 * 3600
_POLICY: Final = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


@dataclass(frozen=True)
class ReviewSettings:
    """How the application runs.

    Parameters
    ----------
    audit : str
        The audit database (a SQLite file or a ``postgresql://`` URL).
    crosswalk : pathlib.Path or None
        A crosswalk (``--crosswalk`` CSV or a map folder's ``patients.csv``): the original
        IDs of the separate export (admins only).
    secure_cookies : bool
        Mark the session cookie Secure (served over TLS).
    secret : str or None
        The session signing secret (None: ``DICOMVEIL_REVIEW_SECRET`` or a random one).
    """

    audit: str
    crosswalk: Path | None = None
    secure_cookies: bool = False
    secret: str | None = None


def _index_loop(trail: AuditTrail, store: ReviewStore, stopping: threading.Event) -> None:
    """Index new outputs in the background (the queue's study counts), batch by batch; look
    for new ones every minute. A database error is logged by its type and tried again."""
    while not stopping.is_set():
        try:
            done = index_pending(trail, store)
        except Exception as exc:  # the next round tries again
            LOGGER.warning("indexing the outputs failed: %s", type(exc).__name__)
            done = 0
        if not done:
            stopping.wait(_INDEX_PAUSE)


_INDEX_PAUSE: Final = 60.0


_HEADINGS = {400: "Not understood", 404: "Not found"}  # else: "Not allowed" (403)


def create_app(settings: ReviewSettings) -> FastAPI:
    """The application, its databases opened (closed when it shuts down).

    Parameters
    ----------
    settings : ReviewSettings
        How it runs.

    Returns
    -------
    FastAPI
        The ASGI application (``uvicorn.run(app)``).

    Raises
    ------
    AuditError
        The audit database cannot be opened (it must exist), or its review tables made.
    """

    trail = AuditTrail.open(settings.audit, create=False)
    try:
        store = ReviewStore(settings.audit)
    except BaseException:
        trail.close()
        raise

    stopping = threading.Event()
    indexer = threading.Thread(
        target=_index_loop, args=(trail, store, stopping), name="review-index", daemon=True
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        indexer.start()
        try:
            yield
        finally:
            stopping.set()
            indexer.join(10)
            store.close()
            trail.close()

    app = FastAPI(
        title="dicomveil review",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.trail = trail
    app.state.store = store
    app.state.settings = settings
    app.state.sweeps = Sweeps()
    app.state.templates = Environment(
        loader=PackageLoader("dicomveil.review", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    secret = settings.secret or os.environ.get("DICOMVEIL_REVIEW_SECRET") or secrets.token_hex(32)
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret,
        session_cookie=SESSION_COOKIE,
        max_age=SESSION_SECONDS,
        same_site="strict",
        https_only=settings.secure_cookies,
    )

    @app.middleware("http")
    async def _headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = _POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        if not request.url.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.exception_handler(NotLoggedInError)
    async def _login_first(request: Request, exc: NotLoggedInError) -> Response:
        if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            return RedirectResponse("/login", status_code=303)
        return PlainTextResponse("log in first", status_code=401)

    @app.exception_handler(ForbiddenError)
    async def _forbidden(request: Request, exc: ForbiddenError) -> Response:
        name = request.session.get("user")
        user = store.user(name) if isinstance(name, str) else None
        return routes.page(
            request,
            "error.html",
            {"message": exc.reason, "user": user, "heading": _HEADINGS.get(exc.status)},
            status_code=exc.status,
        )

    @app.exception_handler(Exception)
    async def _failed(request: Request, exc: Exception) -> Response:
        # Logged by its type only: a library's message may quote a value read from a file.
        LOGGER.error("%s %s failed: %s", request.method, request.url.path, type(exc).__name__)
        return PlainTextResponse("internal error (see the server's log)", status_code=500)

    app.mount(
        "/static",
        StaticFiles(packages=[("dicomveil.review", "static")]),
        name="static",
    )
    app.include_router(routes.router)
    return app
