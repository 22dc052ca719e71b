"""The gateway's DICOMweb client: ``dicomweb-client`` set up for one :class:`WebService`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dicomveil.gateway.config import WebService

if TYPE_CHECKING:
    import requests
    from dicomweb_client.api import DICOMwebClient

__all__ = ["web_client", "web_session"]


def web_client(service: WebService, timeout: float) -> DICOMwebClient:
    """A ``dicomweb-client`` client of a service: its token, its TLS settings, and never a
    proxy or CA bundle from the environment (originals pass through it).

    Parameters
    ----------
    service : WebService
        The service.
    timeout : float
        Connection and read timeouts, in seconds.

    Returns
    -------
    DICOMwebClient
        The client.
    """
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(
        service.url, session=web_session(service), headers=service.headers(), timeout=timeout
    )
    # One attempt per request: the forwarder backs off itself, and a proxied search or
    # retrieval answers 502 at once rather than after the client's own retries.
    client.set_http_retry_params(retry=False)
    return client


def web_session(service: WebService) -> requests.Session:
    """A ``requests`` session for a service: its TLS settings, and never a proxy or CA
    bundle from the environment (originals pass through it).

    Parameters
    ----------
    service : WebService
        The service.

    Returns
    -------
    requests.Session
        The session (the service's token goes in each request's headers).
    """
    import requests

    session = requests.Session()
    session.trust_env = False
    tls = service.tls
    if tls is not None:
        if tls.ca is not None:
            session.verify = str(tls.ca)
        if tls.certificate is not None and tls.private_key is not None:
            session.cert = (str(tls.certificate), str(tls.private_key))
    return session
