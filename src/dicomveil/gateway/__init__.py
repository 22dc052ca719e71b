"""The DICOM gateway: de-identify on receive, keep a durable queue, forward; proxy queries.

``dicomveil gateway --config gateway.toml`` runs it (see the README's *Gateway* section).
From Python::

    from dicomveil.gateway import Gateway, load_config

    with Gateway(load_config("gateway.toml")) as gateway:
        ...                                  # serving until the block ends

Modules: :mod:`~dicomveil.gateway.config` (the TOML file, validated by the pydantic models
of :mod:`~dicomveil.gateway.schema`), :mod:`~dicomveil.gateway.node` (the pynetdicom AE,
associations and the registration of the handlers), :mod:`~dicomveil.gateway.store`
(C-STORE: de-identify, write, queue), :mod:`~dicomveil.gateway.query` (C-FIND),
:mod:`~dicomveil.gateway.mpps` (MPPS), :mod:`~dicomveil.gateway.route` (a route at run
time), :mod:`~dicomveil.gateway.events` (the audit hook), :mod:`~dicomveil.gateway.status`
(the status file), :mod:`~dicomveil.gateway.transport` (sockets and associations, TLS, PDU
limit), :mod:`~dicomveil.gateway.queue` (the durable queue) and
:mod:`~dicomveil.gateway.forward` (the forwarder that empties it), and
:mod:`~dicomveil.gateway.web` (the DICOMweb side: STOW-RS, QIDO-RS, WADO-RS, with
``[gateway.web]``). The gateway logs to the ``dicomveil.gateway`` logger and never
configures logging itself.
"""

import logging

from dicomveil.errors import GatewayConfigError
from dicomveil.gateway.config import (
    GatewayConfig,
    Node,
    QueryUpstream,
    RouteConfig,
    TlsConfig,
    WebConfig,
    WebService,
    WithheldStatus,
    load_config,
)
from dicomveil.gateway.events import EventKind, GatewayEvent, GatewayEvents, NullEvents
from dicomveil.gateway.forward import Forwarder
from dicomveil.gateway.node import TRANSFER_SYNTAXES, Gateway
from dicomveil.gateway.query import sanitize_query
from dicomveil.gateway.queue import RouteQueue
from dicomveil.gateway.status import read_status
from dicomveil.gateway.store import StoreStatus

logging.getLogger("dicomveil.gateway").addHandler(logging.NullHandler())

__all__ = [
    "TRANSFER_SYNTAXES",
    "EventKind",
    "Forwarder",
    "Gateway",
    "GatewayConfig",
    "GatewayConfigError",
    "GatewayEvent",
    "GatewayEvents",
    "Node",
    "NullEvents",
    "QueryUpstream",
    "RouteConfig",
    "RouteQueue",
    "StoreStatus",
    "TlsConfig",
    "WebConfig",
    "WebService",
    "WithheldStatus",
    "load_config",
    "read_status",
    "sanitize_query",
]
