"""The gateway's DICOMweb side (PS3.18): STOW-RS in, QIDO-RS and WADO-RS out, de-identified.

A gateway with a ``[gateway.web]`` table serves, beside its DIMSE port and in the same
process, an HTTP(S) port where every route with a ``[route.web]`` table answers at
``/<route>``: STOW-RS stores through the route's C-STORE pipeline
(:mod:`~dicomveil.gateway.web.stow`), QIDO-RS and WADO-RS search and retrieve the project's
cohort through the route's upstream, a DIMSE node or a DICOMweb service
(:mod:`~dicomveil.gateway.web.proxy`, :mod:`~dicomveil.gateway.web.upstream`); a route
whose ``[route.forward]`` is a URL forwards with STOW-RS
(:mod:`~dicomveil.gateway.web.forward`). Requests carry a bearer token of the route
(:mod:`~dicomveil.gateway.web.auth`). See :mod:`~dicomveil.gateway.web.app` for the
resources and statuses.

It needs the ``dicomweb`` extra (``pip install 'dicomveil[dicomweb]'``: FastAPI, uvicorn,
python-multipart, dicomweb-client).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dicomveil.gateway.web.auth import hash_token, new_token, token_matches

if TYPE_CHECKING:
    from dicomveil.gateway.web.app import WebContext, create_app
    from dicomveil.gateway.web.server import WebServer

__all__ = ["WebContext", "WebServer", "create_app", "hash_token", "new_token", "token_matches"]


def __getattr__(name: str) -> Any:
    """The application and its server load FastAPI and uvicorn only when they are used
    (``dicomveil gateway token`` needs neither)."""
    if name in ("WebContext", "create_app"):
        from dicomveil.gateway.web import app

        return getattr(app, name)
    if name == "WebServer":
        from dicomveil.gateway.web.server import WebServer

        return WebServer
    raise AttributeError(name)
