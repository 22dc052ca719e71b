"""The DICOM gateway: de-identify on receive, keep a durable queue, forward; proxy queries.

``dicomveil gateway --config gateway.toml`` runs it (see the README's *Gateway* section).
From Python::

    from dicomveil.gateway import Gateway, load_config

    with Gateway(load_config("gateway.toml")) as gateway:
        ...                                  # serving until the block ends

Modules: :mod:`~dicomveil.gateway.config` (the TOML file), :mod:`~dicomveil.gateway.node`
(the pynetdicom AE and its handlers, statuses, events), :mod:`~dicomveil.gateway.queue`
(the durable queue and the forwarder). The gateway logs to the ``dicomveil.gateway`` logger
and never configures logging itself.
"""

import logging

from dicomveil.gateway.config import (
    GatewayConfig,
    GatewayConfigError,
    Node,
    QueryUpstream,
    RouteConfig,
    TlsConfig,
    WithheldStatus,
    load_config,
)
from dicomveil.gateway.node import (
    TRANSFER_SYNTAXES,
    EventKind,
    Gateway,
    GatewayEvent,
    GatewayEvents,
    NullEvents,
    StoreStatus,
    read_status,
    sanitize_query,
)
from dicomveil.gateway.queue import Forwarder, RouteQueue

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
    "WithheldStatus",
    "load_config",
    "read_status",
    "sanitize_query",
]
