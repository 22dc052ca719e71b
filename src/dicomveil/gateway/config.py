"""The gateway's configuration: one TOML file turned into frozen, validated dataclasses.

The file is validated by the pydantic models of :mod:`dicomveil.gateway.schema` (unknown
keys, types, ranges, AE titles...), then turned into the dataclasses below. Every problem is
an error when the file loads, one line each naming the file and the entry (the key path,
tables of an array counted from 1, and the route's name)::

    gateway.toml: route[1].forward.prot (route 'research'): unknown key
    gateway.toml: gateway.port: must be between 0 and 65535

so a gateway never starts with a setting it does not understand. Relative paths are
relative to the folder of the configuration file. Profiles, keys, layouts and certificates
load here too: a route with a profile or key that cannot be used is a configuration error,
not a failure at the first C-STORE. Messages never hold key material.

The format (every table and key; defaults in parentheses)::

    [gateway]
    ae_title = "DICOMVEIL"              # our AE title ("DICOMVEIL")
    host = "0.0.0.0"                    # ("127.0.0.1")
    port = 11112                        # (11112; 0 picks a free port)
    state_dir = "state"                 # queue, spool and status.json (required)
    cohort = "postgresql://user@db/dv"  # the cohort database (a SQLite file, or PostgreSQL
                                        # like the audit trail; state_dir/cohort.sqlite)
    max_associations = 16               # concurrent associations (16)
    workers = 4                         # de-identifying processes (the cores; 0: none,
                                        # one instance at a time in the receiving threads)
    max_pdu_size = 262144               # largest PDU we accept, bytes (262144)
    max_instances_per_association = 10000
    timeout = 30                        # ACSE, DIMSE and network timeouts, seconds (30)
    withheld_status = "warning"         # or "failure": C-STORE status of withheld objects
    retry_initial = 1.0                 # forwarding backoff: first delay, seconds (1)
    retry_max = 300.0                   # ... bounded by this (300)

    [gateway.tls]                       # optional: DICOM over TLS on the port above
    certificate = "gateway.crt"
    private_key = "gateway.key"
    ca = "ca.crt"                       # optional: require client certificates signed by it

    [[route]]
    name = "research"                   # [A-Za-z0-9_-]+, unique
    calling_ae = ["SCANNER1"]           # required: the allow-list
    called_ae = ["DICOMVEIL"]           # optional: any when absent
    sources = ["10.1.2.0/24"]           # optional: addresses or networks; any when absent
    profile = "ps3.15-basic"            # a preset name or a .toml profile
    options = []
    key = "project.key"                 # optional: the user's default key (never created)
    layout = "{patient}/{study}/{series}/{sop}.dcm"
    output = "/data/research"           # optional: folder destination
    verify = true                       # the release gate (true): the verifier checks each
                                        # instance before it is stored or forwarded

    [route.forward]                     # optional: C-STORE destination (queued)
    host = "pacs.example.org"
    port = 104
    ae_title = "RESEARCHPACS"
    calling_ae_title = "DICOMVEIL"      # optional: [gateway] ae_title
    tls = { ca = "pacs-ca.crt", certificate = "...", private_key = "..." }   # optional
    # or a STOW-RS destination: url = "https://archive/dicom-web", token_env = "ARCHIVE_TOKEN"

    [route.query]                       # optional: C-FIND upstream (and worklist)
    host = "pacs.example.org"
    port = 104
    ae_title = "CLINICALPACS"
    # or a DICOMweb upstream (QIDO-RS and WADO-RS only): url = "...", token_env = "..."
    pass_query_keys = ["StudyDate"]     # identifying keys let through anyway
    worklist = false                    # proxy Modality Worklist C-FIND too
    default_issuer_of_patient_id = ""   # when the upstream does not return one
    cohort_maps = ["maps"]              # `dicomveil run --map-dir` folders: their patients
                                        # and UIDs join the project's cohort at start (the
                                        # storing routes of the same key add theirs); queries
                                        # are answered for the cohort only
    move_destinations = [               # C-MOVE: the only AE titles delivered to
      { ae_title = "VIEWER", host = "10.1.2.3", port = 104 },
    ]                                   # (C-GET delivers on the requester's association)

    [route.mpps]                        # optional: forward de-identified MPPS
    host = "ris.example.org"
    port = 104
    ae_title = "RIS"

    [route.web]                         # optional: the route over DICOMweb, at /<name>/
    tokens = ["sha256:..."]             # hashes of its bearer tokens ('dicomveil gateway
                                        # token'); calling_ae may then be left out

    [gateway.web]                       # the DICOMweb side (see dicomveil.gateway.web)
    host = "127.0.0.1"                  # ("127.0.0.1")
    port = 8080                         # (8080; 0 picks a free port)
    max_body = 1073741824               # the largest request body, bytes (1 GiB)
    base_url = "https://pacs.example.org/dicomweb"  # optional: how clients reach it (the
                                        # Retrieve URLs); its own address when absent
    tls = { certificate = "web.crt", private_key = "web.key" }   # optional: HTTPS
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from dicomveil.errors import DicomveilError, GatewayConfigError
from dicomveil.gateway.schema import (
    DestinationTable,
    GatewayFile,
    NodeTable,
    QueryTable,
    RouteTable,
    TlsTable,
    WebTable,
    entry,
    problems,
)
from dicomveil.identity.keys import Key, default_key_path, read_key
from dicomveil.io.layout import Layout
from dicomveil.profiles import Profile

__all__ = [
    "GatewayConfig",
    "GatewayConfigError",
    "Node",
    "QueryUpstream",
    "RouteConfig",
    "TlsConfig",
    "WebConfig",
    "WebService",
    "WithheldStatus",
    "load_config",
]


class WithheldStatus(StrEnum):
    """The C-STORE status a withheld object gets (see :mod:`dicomveil.gateway.store`)."""

    WARNING = "warning"
    FAILURE = "failure"


@dataclass(frozen=True)
class TlsConfig:
    """Certificates for DICOM over TLS (PS3.15 B.1). Paths are absolute.

    Its contexts (:meth:`server_context`, :meth:`client_context`) take TLS 1.2 or later;
    making one raises :exc:`OSError` or :exc:`ssl.SSLError` when a certificate or key
    cannot be loaded.
    """

    certificate: Path | None = None
    private_key: Path | None = None
    ca: Path | None = None

    def server_context(self) -> ssl.SSLContext:
        """A server context: our certificate; client certificates required when ``ca``."""
        context = _tls_context(ssl.Purpose.CLIENT_AUTH)
        assert self.certificate is not None and self.private_key is not None
        context.load_cert_chain(self.certificate, self.private_key)
        if self.ca is not None:
            context.load_verify_locations(self.ca)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client context: the peer verified against ``ca`` (else the system's CAs), with
        our certificate when one is configured."""
        context = _tls_context(ssl.Purpose.SERVER_AUTH)
        if self.ca is not None:
            context.load_verify_locations(self.ca)
        if self.certificate is not None and self.private_key is not None:
            context.load_cert_chain(self.certificate, self.private_key)
        return context


def _tls_context(purpose: ssl.Purpose) -> ssl.SSLContext:
    """The default context for ``purpose``, TLS 1.2 or later."""
    context = ssl.create_default_context(purpose)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


@dataclass(frozen=True)
class Node:
    """Another DICOM node: where we send (C-STORE, C-FIND, N-CREATE) as an SCU."""

    host: str
    port: int
    ae_title: str
    calling_ae_title: str
    tls: TlsConfig | None = None

    @property
    def label(self) -> str:
        """How logs and the status name it (no PHI: configuration values only)."""
        return f"{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True)
class WebService:
    """A DICOMweb service the gateway calls: a STOW-RS destination, a QIDO-RS and WADO-RS
    upstream. Its bearer token is read from the environment variable ``token_env`` when
    it is used (never kept in the configuration)."""

    url: str
    token_env: str | None = None
    tls: TlsConfig | None = None

    @property
    def label(self) -> str:
        """How logs and the status name it: the URL without user, password or path."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")

    def headers(self) -> dict[str, str]:
        """The request headers it needs: the bearer token, when ``token_env`` names one."""
        token = os.environ.get(self.token_env, "") if self.token_env else ""
        return {"Authorization": f"Bearer {token}"} if token else {}


@dataclass(frozen=True)
class QueryUpstream:
    """The node C-FIND queries (and worklist queries) are proxied to, or the DICOMweb
    service QIDO-RS and WADO-RS requests are (a :class:`WebService`)."""

    node: Node | WebService
    pass_query_keys: frozenset[str] = frozenset()
    worklist: bool = False
    default_issuer_of_patient_id: str = ""
    cohort_maps: tuple[Path, ...] = ()
    move_destinations: tuple[Node, ...] = ()


@dataclass(frozen=True)
class RouteConfig:
    """Who may send (calling AE, called AE, source address), how it is de-identified and
    where the result goes."""

    name: str
    calling_ae: frozenset[str]
    profile: Profile
    key: Key
    called_ae: frozenset[str] = frozenset()
    sources: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    layout: Layout = field(default_factory=Layout)
    output: Path | None = None
    forward: Node | WebService | None = None
    query: QueryUpstream | None = None
    mpps: Node | None = None
    verify: bool = True  # the release gate: each instance checked before it is kept
    web_tokens: frozenset[str] = frozenset()  # [route.web]: hashes of its bearer tokens

    def matches(self, calling: str, called: str, address: str) -> bool:
        """Whether this route takes an association.

        Parameters
        ----------
        calling, called : str
            The calling and called AE titles of the association request.
        address : str
            The peer's IP address.

        Returns
        -------
        bool
            True when the calling AE title is allowed, the called one is served (or any
            is) and the address is in a source network (or any is allowed).
        """
        if calling not in self.calling_ae:
            return False
        if self.called_ae and called not in self.called_ae:
            return False
        if not self.sources:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.sources)


@dataclass(frozen=True)
class WebConfig:
    """``[gateway.web]``: where the DICOMweb side listens and its request size limit."""

    host: str = "127.0.0.1"
    port: int = 8080
    max_body: int = 2**30
    base_url: str | None = None
    tls: TlsConfig | None = None


@dataclass(frozen=True)
class GatewayConfig:
    """The whole gateway: the listening node, limits, and its routes (first match wins)."""

    source: Path
    state_dir: Path
    routes: tuple[RouteConfig, ...]
    cohort: str | Path | None = None  # None: state_dir/cohort.sqlite
    ae_title: str = "DICOMVEIL"
    host: str = "127.0.0.1"
    port: int = 11112
    max_associations: int = 16
    workers: int | None = None  # de-identifying processes: None, the cores; 0, none
    max_pdu_size: int = 262144
    max_instances_per_association: int = 10000
    timeout: float = 30.0
    withheld_status: WithheldStatus = WithheldStatus.WARNING
    retry_initial: float = 1.0
    retry_max: float = 300.0
    tls: TlsConfig | None = None
    web: WebConfig | None = None

    def __post_init__(self) -> None:
        if not self.routes:
            raise GatewayConfigError("at least one [[route]] is needed", source=str(self.source))

    @property
    def calling_ae_titles(self) -> frozenset[str]:
        """The allow-list: every calling AE title some route names."""
        return frozenset(t for r in self.routes for t in r.calling_ae)

    def route_for(self, calling: str, called: str, address: str) -> RouteConfig | None:
        """The first route that takes an association, or None when none does (the
        association is rejected). The arguments are those of :meth:`RouteConfig.matches`."""
        for route in self.routes:
            if route.matches(calling, called, address):
                return route
        return None

    def with_port(self, port: int, web_port: int | None = None) -> GatewayConfig:
        """A copy of this configuration listening on ``port`` (0 picks a free one), and its
        DICOMweb side on ``web_port`` when given: tests, benchmarks."""
        web = self.web
        if web is not None and web_port is not None:
            web = replace(web, port=web_port)
        return replace(self, port=port, web=web)


# --------------------------------------------------------------------------------------------
# Loading


def load_config(path: str | Path) -> GatewayConfig:
    """Read and validate a gateway configuration file.

    Parameters
    ----------
    path : str or Path
        The TOML file.

    Returns
    -------
    GatewayConfig
        The configuration, profiles compiled and keys read.

    Raises
    ------
    GatewayConfigError
        When the file cannot be read or used: every problem of its keys and values, one
        line each, or else the first profile, key, layout or certificate that cannot be
        loaded.
    """
    path = Path(path)
    source = str(path)
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise GatewayConfigError(f"cannot read ({exc.strerror})", source=source) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise GatewayConfigError(f"not valid TOML: {exc}", source=source) from None
    try:
        model = GatewayFile.model_validate(data)
    except ValidationError as exc:
        (where, message), *more = problems(exc, data)
        raise GatewayConfigError(message, source=source, entry=where, more=more) from None
    return _Builder(path, data).config(model)


class _Builder:
    """Turns a validated file into the configuration, loading what the file names."""

    def __init__(self, path: Path, data: Mapping[str, Any]) -> None:
        self.path = path
        self.data = data
        self.folder = path.resolve().parent

    def error(self, loc: tuple[str | int, ...], message: str) -> GatewayConfigError:
        return GatewayConfigError(message, source=str(self.path), entry=entry(loc, self.data))

    def config(self, model: GatewayFile) -> GatewayConfig:
        gateway = model.gateway
        tls = None
        if gateway.tls is not None:
            tls = self.tls(gateway.tls, ("gateway", "tls"), server=True)
        routes = tuple(
            self.route(table, index, gateway.ae_title) for index, table in enumerate(model.route)
        )
        web = self.web(gateway.web) if gateway.web is not None else None
        # The node, its limits and timeouts are taken as the file has them.
        exclude = {"state_dir", "cohort", "withheld_status", "tls", "web"}
        settings = gateway.model_dump(exclude=exclude)
        cohort: str | Path | None = gateway.cohort
        if gateway.cohort is not None and "://" not in gateway.cohort:
            cohort = self.resolve(gateway.cohort)
        return GatewayConfig(
            source=self.path,
            state_dir=self.resolve(gateway.state_dir),
            cohort=cohort,
            routes=routes,
            withheld_status=WithheldStatus(gateway.withheld_status),
            tls=tls,
            web=web,
            **settings,
        )

    def web(self, table: WebTable) -> WebConfig:
        tls = None
        if table.tls is not None:
            tls = self.tls(table.tls, ("gateway", "web", "tls"), server=True)
        return WebConfig(
            host=table.host,
            port=table.port,
            max_body=table.max_body,
            base_url=table.base_url,
            tls=tls,
        )

    def route(self, table: RouteTable, index: int, ae_title: str) -> RouteConfig:
        at: tuple[str | int, ...] = ("route", index)
        profile_name = table.profile
        if profile_name.endswith(".toml"):
            profile_name = str(self.resolve(profile_name))
        try:
            profile = Profile.named(profile_name).with_options(table.options)
            profile.compile()
        except DicomveilError as exc:
            raise self.error((*at, "profile"), str(exc)) from None
        key_path = self.resolve(table.key) if table.key else default_key_path()
        try:
            key = read_key(key_path)
        except DicomveilError as exc:
            raise self.error((*at, "key"), str(exc)) from None
        try:
            layout = Layout(table.layout)
        except DicomveilError as exc:
            raise self.error((*at, "layout"), str(exc)) from None
        forward = mpps = query = None
        if table.forward is not None:
            forward = self.destination(table.forward, (*at, "forward"), ae_title)
        if table.query is not None:
            query = self.query(table.query, (*at, "query"), ae_title)
        if table.mpps is not None:
            mpps = self.dimse_node(table.mpps, (*at, "mpps"), ae_title)
        return RouteConfig(
            name=table.name,
            calling_ae=frozenset(table.calling_ae),
            called_ae=frozenset(table.called_ae),
            sources=tuple(ipaddress.ip_network(text, strict=False) for text in table.sources),
            profile=profile,
            key=key,
            layout=layout,
            output=self.resolve(table.output) if table.output else None,
            forward=forward,
            query=query,
            mpps=mpps,
            verify=table.verify,
            web_tokens=frozenset(table.web.tokens) if table.web is not None else frozenset(),
        )

    def destination(
        self, table: DestinationTable, at: tuple[str | int, ...], ae_title: str
    ) -> Node | WebService:
        if table.url is None:
            return self.dimse_node(table, at, ae_title)
        tls = self.tls(table.tls, (*at, "tls"), server=False) if table.tls is not None else None
        return WebService(url=table.url, token_env=table.token_env, tls=tls)

    def dimse_node(self, table: NodeTable, at: tuple[str | int, ...], ae_title: str) -> Node:
        tls = self.tls(table.tls, (*at, "tls"), server=False) if table.tls is not None else None
        # The schema requires the three of them for a DIMSE node.
        assert table.host is not None and table.port is not None and table.ae_title is not None
        return Node(
            host=table.host,
            port=table.port,
            ae_title=table.ae_title,
            calling_ae_title=table.calling_ae_title or ae_title,
            tls=tls,
        )

    def query(self, table: QueryTable, at: tuple[str | int, ...], ae_title: str) -> QueryUpstream:
        return QueryUpstream(
            node=self.destination(table, at, ae_title),
            pass_query_keys=frozenset(table.pass_query_keys),
            worklist=table.worklist,
            default_issuer_of_patient_id=table.default_issuer_of_patient_id,
            cohort_maps=tuple(self.resolve(text) for text in table.cohort_maps),
            move_destinations=tuple(
                self.dimse_node(node, (*at, "move_destinations", n), ae_title)
                for n, node in enumerate(table.move_destinations, start=1)
            ),
        )

    def tls(self, table: TlsTable, at: tuple[str | int, ...], *, server: bool) -> TlsConfig:
        config = TlsConfig(
            certificate=self.resolve(table.certificate) if table.certificate else None,
            private_key=self.resolve(table.private_key) if table.private_key else None,
            ca=self.resolve(table.ca) if table.ca else None,
        )
        try:
            config.server_context() if server else config.client_context()
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise self.error(at, f"cannot load the certificates ({reason})") from None
        return config

    def resolve(self, text: str) -> Path:
        path = Path(text).expanduser()
        return path if path.is_absolute() else self.folder / path
