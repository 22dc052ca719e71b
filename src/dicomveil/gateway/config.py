"""The gateway's configuration: one TOML file turned into frozen, validated dataclasses.

An unknown key, a wrong type or an impossible value is an error when the file loads, naming
the file and the entry (``gateway.toml: route 'research': forward: unknown key 'prot'``), so
a gateway never starts with a setting it does not understand. Relative paths are relative
to the folder of the configuration file. Profiles and keys load here too: a route with a
profile or key that cannot be used is a configuration error, not a failure at the first
C-STORE.

The format (every table and key; defaults in parentheses)::

    [gateway]
    ae_title = "DICOMVEIL"              # our AE title ("DICOMVEIL")
    host = "0.0.0.0"                    # ("127.0.0.1")
    port = 11112                        # (11112; 0 picks a free port)
    state_dir = "state"                 # queue, spool and status.json (required)
    max_associations = 16               # concurrent associations (16)
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

    [route.forward]                     # optional: C-STORE destination (queued)
    host = "pacs.example.org"
    port = 104
    ae_title = "RESEARCHPACS"
    calling_ae_title = "DICOMVEIL"      # optional: [gateway] ae_title
    tls = { ca = "pacs-ca.crt", certificate = "...", private_key = "..." }   # optional

    [route.query]                       # optional: C-FIND upstream (and worklist)
    host = "pacs.example.org"
    port = 104
    ae_title = "CLINICALPACS"
    pass_query_keys = ["StudyDate"]     # identifying keys let through anyway
    worklist = false                    # proxy Modality Worklist C-FIND too
    default_issuer_of_patient_id = ""   # when the upstream does not return one

    [route.mpps]                        # optional: forward de-identified MPPS
    host = "ris.example.org"
    port = 104
    ae_title = "RIS"
"""

from __future__ import annotations

import ipaddress
import re
import ssl
import tomllib
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydicom.datadict import keyword_dict

from dicomveil.errors import DicomveilError
from dicomveil.identity.keys import Key, default_key_path, read_key
from dicomveil.io.layout import DEFAULT_LAYOUT, Layout
from dicomveil.profiles import Profile

__all__ = [
    "GatewayConfig",
    "GatewayConfigError",
    "Node",
    "QueryUpstream",
    "RouteConfig",
    "TlsConfig",
    "WithheldStatus",
    "load_config",
]

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # printable ASCII, no backslash


class GatewayConfigError(DicomveilError):
    """A gateway configuration that cannot be used; names the file and the entry."""

    def __init__(self, message: str, *, source: str, entry: str = "") -> None:
        self.source = source
        self.entry = entry
        super().__init__(f"{source}: {entry + ': ' if entry else ''}{message}")


class WithheldStatus(StrEnum):
    """The C-STORE status a withheld object gets (see :mod:`dicomveil.gateway.node`)."""

    WARNING = "warning"
    FAILURE = "failure"


@dataclass(frozen=True)
class TlsConfig:
    """Certificates for DICOM over TLS (PS3.15 B.1). Paths are absolute."""

    certificate: Path | None = None
    private_key: Path | None = None
    ca: Path | None = None

    def server_context(self) -> ssl.SSLContext:
        """A server context: our certificate; client certificates required when ``ca``."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        assert self.certificate is not None and self.private_key is not None
        context.load_cert_chain(self.certificate, self.private_key)
        if self.ca is not None:
            context.load_verify_locations(self.ca)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client context: the peer verified against ``ca`` (else the system's CAs)."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.ca is not None:
            context.load_verify_locations(self.ca)
        if self.certificate is not None and self.private_key is not None:
            context.load_cert_chain(self.certificate, self.private_key)
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
class QueryUpstream:
    """The node C-FIND queries (and worklist queries) are proxied to."""

    node: Node
    pass_query_keys: frozenset[str] = frozenset()
    worklist: bool = False
    default_issuer_of_patient_id: str = ""


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
    forward: Node | None = None
    query: QueryUpstream | None = None
    mpps: Node | None = None

    def matches(self, calling: str, called: str, address: str) -> bool:
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
class GatewayConfig:
    """The whole gateway: the listening node, limits, and its routes (first match wins)."""

    source: Path
    state_dir: Path
    routes: tuple[RouteConfig, ...]
    ae_title: str = "DICOMVEIL"
    host: str = "127.0.0.1"
    port: int = 11112
    max_associations: int = 16
    max_pdu_size: int = 262144
    max_instances_per_association: int = 10000
    timeout: float = 30.0
    withheld_status: WithheldStatus = WithheldStatus.WARNING
    retry_initial: float = 1.0
    retry_max: float = 300.0
    tls: TlsConfig | None = None

    def __post_init__(self) -> None:
        if not self.routes:
            raise GatewayConfigError("at least one [[route]] is needed", source=str(self.source))

    @property
    def calling_ae_titles(self) -> frozenset[str]:
        """The allow-list: every calling AE title some route names."""
        return frozenset(t for r in self.routes for t in r.calling_ae)

    def route_for(self, calling: str, called: str, address: str) -> RouteConfig | None:
        for route in self.routes:
            if route.matches(calling, called, address):
                return route
        return None

    def with_port(self, port: int) -> GatewayConfig:
        """The same configuration listening on another port (tests, benchmarks)."""
        return replace(self, port=port)


# --------------------------------------------------------------------------------------------
# Loading


class _Table:
    """One TOML table being read: typed getters, and unknown keys reported at the end."""

    def __init__(self, data: Any, source: str, entry: str) -> None:
        if not isinstance(data, dict):
            raise GatewayConfigError("must be a table", source=source, entry=entry)
        self.data: dict[str, Any] = data
        self.source = source
        self.entry = entry
        self.seen: set[str] = set()

    def error(self, message: str, key: str | None = None) -> GatewayConfigError:
        where = f"{self.entry}: {key}" if self.entry and key else (key or self.entry)
        return GatewayConfigError(message, source=self.source, entry=where)

    def get(self, key: str) -> Any:
        self.seen.add(key)
        return self.data.get(key)

    def has(self, key: str) -> bool:
        return key in self.data

    def text(self, key: str, default: str | None = None) -> str:
        value = self.get(key)
        if value is None:
            if default is None:
                raise self.error("missing (required)", key)
            return default
        if not isinstance(value, str):
            raise self.error("must be a string", key)
        return value

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error("must be an integer", key)
        if not low <= value <= high:
            raise self.error(f"must be between {low} and {high}", key)
        return value

    def number(self, key: str, default: float, low: float, high: float) -> float:
        value = self.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error("must be a number", key)
        if not low <= value <= high:
            raise self.error(f"must be between {low} and {high}", key)
        return float(value)

    def flag(self, key: str, default: bool) -> bool:
        value = self.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error("must be true or false", key)
        return value

    def strings(self, key: str) -> list[str]:
        value = self.get(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error("must be a list of strings", key)
        return list(value)

    def table(self, key: str) -> _Table | None:
        value = self.get(key)
        if value is None:
            return None
        return _Table(value, self.source, f"{self.entry}: {key}" if self.entry else key)

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            raise self.error(f"unknown key(s) {', '.join(unknown)}")


def load_config(path: str | Path) -> GatewayConfig:
    """Read and validate a gateway configuration file."""
    path = Path(path)
    source = str(path)
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise GatewayConfigError(f"cannot read ({exc.strerror})", source=source) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise GatewayConfigError(f"not valid TOML: {exc}", source=source) from None
    folder = path.resolve().parent
    top = _Table(data, source, "")
    gateway = top.table("gateway")
    if gateway is None:
        raise top.error("missing (required)", "[gateway]")
    raw_routes = top.get("route")
    top.done()
    ae_title = _ae(gateway, "ae_title", "DICOMVEIL")
    state = gateway.text("state_dir")
    tls_table = gateway.table("tls")
    tls = _tls(tls_table, folder, server=True) if tls_table is not None else None
    withheld = gateway.text("withheld_status", WithheldStatus.WARNING.value)
    if withheld not in {s.value for s in WithheldStatus}:
        raise gateway.error("must be 'warning' or 'failure'", "withheld_status")
    host = gateway.text("host", "127.0.0.1")
    port = gateway.integer("port", 11112, 0, 65535)
    max_associations = gateway.integer("max_associations", 16, 1, 1000)
    max_pdu_size = gateway.integer("max_pdu_size", 262144, 4096, 64 * 1024 * 1024)
    max_instances = gateway.integer("max_instances_per_association", 10000, 1, 10**9)
    timeout = gateway.number("timeout", 30.0, 0.1, 3600.0)
    retry_initial = gateway.number("retry_initial", 1.0, 0.01, 3600.0)
    retry_max = gateway.number("retry_max", 300.0, 0.01, 86400.0)
    gateway.done()
    if retry_max < retry_initial:
        raise gateway.error("must not be smaller than retry_initial", "retry_max")
    if raw_routes is None:
        raw_routes = []
    if not isinstance(raw_routes, list):
        raise GatewayConfigError("must be an array of tables ([[route]])", source=source)
    routes: list[RouteConfig] = []
    for index, raw in enumerate(raw_routes):
        route = _route(raw, source, index, folder, ae_title)
        if any(r.name == route.name for r in routes):
            raise GatewayConfigError(
                "a route of this name exists already", source=source, entry=f"route {route.name!r}"
            )
        routes.append(route)
    return GatewayConfig(
        source=path,
        state_dir=_path(state, folder),
        routes=tuple(routes),
        ae_title=ae_title,
        host=host,
        port=port,
        max_associations=max_associations,
        max_pdu_size=max_pdu_size,
        max_instances_per_association=max_instances,
        timeout=timeout,
        withheld_status=WithheldStatus(withheld),
        retry_initial=retry_initial,
        retry_max=retry_max,
        tls=tls,
    )


_ROUTE_PATHS = ("profile", "key", "output")


def _route(raw: Any, source: str, index: int, folder: Path, ae_title: str) -> RouteConfig:
    name_hint = raw.get("name") if isinstance(raw, dict) else None
    entry = f"route {name_hint!r}" if isinstance(name_hint, str) else f"route #{index + 1}"
    table = _Table(raw, source, entry)
    name = table.text("name")
    if not _NAME.match(name):
        raise table.error("must be 1-64 letters, digits, '_' or '-'", "name")
    calling = table.strings("calling_ae")
    if not calling:
        raise table.error("name at least one calling AE title (the allow-list)", "calling_ae")
    for title in calling:
        _check_ae(table, "calling_ae", title)
    called = table.strings("called_ae")
    for title in called:
        _check_ae(table, "called_ae", title)
    networks = []
    for text in table.strings("sources"):
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise table.error(f"not an address or network: {text!r}", "sources") from None
    profile_name = table.text("profile", "ps3.15-basic")
    if profile_name.endswith(".toml"):
        profile_name = str(_path(profile_name, folder))
    options = table.strings("options")
    try:
        profile = Profile.named(profile_name).with_options(options)
        profile.compile()
    except DicomveilError as exc:
        raise table.error(str(exc), "profile") from None
    key_text = table.get("key")
    if key_text is not None and not isinstance(key_text, str):
        raise table.error("must be a string", "key")
    key_path = _path(key_text, folder) if key_text else default_key_path()
    try:
        key = read_key(key_path)
    except DicomveilError as exc:
        raise table.error(str(exc), "key") from None
    try:
        layout = Layout(table.text("layout", DEFAULT_LAYOUT))
    except DicomveilError as exc:
        raise table.error(str(exc), "layout") from None
    output_text = table.get("output")
    if output_text is not None and not isinstance(output_text, str):
        raise table.error("must be a string", "output")
    forward_table = table.table("forward")
    forward = _node(forward_table, folder, ae_title) if forward_table is not None else None
    query_table = table.table("query")
    query = _query(query_table, folder, ae_title) if query_table is not None else None
    mpps_table = table.table("mpps")
    mpps = _node(mpps_table, folder, ae_title) if mpps_table is not None else None
    table.done()
    output = _path(output_text, folder) if output_text else None
    if output is None and forward is None and query is None and mpps is None:
        raise table.error(
            "give an 'output' folder, a [route.forward], [route.query] or [route.mpps] node"
        )
    return RouteConfig(
        name=name,
        calling_ae=frozenset(calling),
        called_ae=frozenset(called),
        sources=tuple(networks),
        profile=profile,
        key=key,
        layout=layout,
        output=output,
        forward=forward,
        query=query,
        mpps=mpps,
    )


def _node(table: _Table, folder: Path, ae_title: str) -> Node:
    host = table.text("host")
    port = table.integer("port", 104, 1, 65535)
    if not table.has("port"):
        raise table.error("missing (required)", "port")
    called = _ae(table, "ae_title", None)
    calling = _ae(table, "calling_ae_title", ae_title)
    tls_value = table.get("tls")
    tls: TlsConfig | None = None
    if tls_value is True:
        tls = TlsConfig()
    elif isinstance(tls_value, dict):
        tls = _tls(_Table(tls_value, table.source, f"{table.entry}: tls"), folder, server=False)
    elif tls_value not in (None, False):
        raise table.error("must be true, false or a table", "tls")
    table.done()
    return Node(host=host, port=port, ae_title=called, calling_ae_title=calling, tls=tls)


def _query(table: _Table, folder: Path, ae_title: str) -> QueryUpstream:
    keys = table.strings("pass_query_keys")
    for keyword in keys:
        if keyword not in keyword_dict:
            raise table.error(f"not a DICOM keyword: {keyword!r}", "pass_query_keys")
    worklist = table.flag("worklist", False)
    issuer = table.text("default_issuer_of_patient_id", "")
    # The rest of the table is the node.
    node_data = {
        k: v
        for k, v in table.data.items()
        if k not in {"pass_query_keys", "worklist", "default_issuer_of_patient_id"}
    }
    node = _node(_Table(node_data, table.source, table.entry), folder, ae_title)
    return QueryUpstream(
        node=node,
        pass_query_keys=frozenset(keys),
        worklist=worklist,
        default_issuer_of_patient_id=issuer,
    )


def _tls(table: _Table, folder: Path, *, server: bool) -> TlsConfig:
    values: dict[str, Path | None] = {}
    for name in ("certificate", "private_key", "ca"):
        text = table.get(name)
        if text is not None and not isinstance(text, str):
            raise table.error("must be a string", name)
        values[name] = _path(text, folder) if text else None
    table.done()
    config = TlsConfig(**values)
    if server and (config.certificate is None or config.private_key is None):
        raise table.error("a TLS server needs 'certificate' and 'private_key'")
    if (config.certificate is None) != (config.private_key is None):
        raise table.error("give both 'certificate' and 'private_key', or neither")
    try:
        config.server_context() if server else config.client_context()
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise table.error(f"cannot load the certificates ({reason})") from None
    return config


def _ae(table: _Table, key: str, default: str | None) -> str:
    value = table.text(key, default)
    _check_ae(table, key, value)
    return value


def _check_ae(table: _Table, key: str, value: str) -> None:
    if not _AE_TITLE.match(value) or not value.strip():
        raise table.error(f"not a valid AE title: {value!r} (1-16 printable characters)", key)


def _path(text: str, folder: Path) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else folder / path
