"""The DICOMweb side's HTTP(S) server: uvicorn in a thread of the gateway's process."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from typing import TYPE_CHECKING

from fastapi import FastAPI

from dicomveil.gateway.config import WebConfig

if TYPE_CHECKING:
    import uvicorn

__all__ = ["WebServer"]


class WebServer:
    """Serves an application on ``[gateway.web]``'s address until :meth:`stop`.

    Parameters
    ----------
    app : FastAPI
        The application (:func:`~dicomveil.gateway.web.app.create_app`).
    config : WebConfig
        Address, port (0 picks a free one) and TLS.
    """

    def __init__(self, app: FastAPI, config: WebConfig) -> None:
        self.app = app
        self.config = config
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None

    @property
    def port(self) -> int:
        """The port it listens on."""
        if self._socket is None:
            return self.config.port
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        """Its base URL (a client adds ``/<route>``)."""
        scheme = "https" if self.config.tls is not None else "http"
        return f"{scheme}://{self.config.host}:{self.port}"

    def start(self) -> None:
        """Bind and serve; returns once it accepts connections.

        Raises
        ------
        OSError
            The address cannot be bound, the certificates cannot be loaded, or the server
            did not start within 30 seconds.
        """
        import uvicorn

        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        sock = socket.create_server((self.config.host, self.config.port), family=family)
        self._socket = sock
        tls = self.config.tls
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,  # ours names path templates, never UIDs or query strings
            server_header=False,
            proxy_headers=False,
            ssl_certfile=str(tls.certificate) if tls is not None and tls.certificate else None,
            ssl_keyfile=str(tls.private_key) if tls is not None and tls.private_key else None,
            ssl_ca_certs=str(tls.ca) if tls is not None and tls.ca else None,
            ssl_cert_reqs=ssl.CERT_REQUIRED if tls is not None and tls.ca else ssl.CERT_NONE,
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="dicomveil-web", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 30.0
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise OSError("the DICOMweb server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop serving (requests under way are given a few seconds) and close the socket."""
        server, thread = self._server, self._thread
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(10.0)
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.close()
        self._server = self._thread = None
