"""The gateway's TOML file as pydantic models: keys, types, ranges and formats.

One model per table, each with ``extra="forbid"`` (an unknown key is an error) and strict
types (TOML has real integers, floats, booleans and strings: ``port = "104"`` or
``worklist = 1`` are errors, never converted; an integer is accepted where a number is
expected). The checks that need nothing but the file are here too: AE titles, route
names, networks, DICOM keywords, ranges, and the rules that tie keys together. Loading
profiles, keys, layouts and certificates is :mod:`dicomveil.gateway.config`'s work.

:func:`problems` turns a :class:`pydantic.ValidationError` into one ``(entry, message)``
pair per problem, the entry being the key path in the file (``gateway.port``,
``route[1].forward.prot``, tables of an array counted from 1) followed by the route's name
when it has one: ``route[1].forward.prot (route 'research')``. Messages never carry the
value of a key, except the AE titles, networks and keywords they reject.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydicom.datadict import keyword_dict

from dicomveil.io.layout import DEFAULT_LAYOUT
from dicomveil.validation import key_path

__all__ = [
    "DestinationTable",
    "GatewayFile",
    "GatewayTable",
    "KeyPathError",
    "NodeTable",
    "QueryTable",
    "RouteTable",
    "ServerTlsTable",
    "TlsTable",
    "WebRouteTable",
    "WebTable",
    "entry",
    "problems",
]

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # printable ASCII, no backslash
_MESSAGES = {
    "missing": "missing (required)",
    "extra_forbidden": "unknown key",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "dict_type": "must be a table",
}


class KeyPathError(ValueError):
    """A problem a table's check found at one of its keys (the entry then names the key).

    Parameters
    ----------
    key : tuple of str or int
        The key path below the table (``("retry_max",)``, ``("route", 2, "name")``).
    message : str
        What is wrong.
    """

    def __init__(self, key: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.key = key


# --------------------------------------------------------------------------------------------
# Values


def _between(low: float, high: float) -> AfterValidator:
    def check(value: float) -> float:
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return AfterValidator(check)


def _ae_title(value: str) -> str:
    if not _AE_TITLE.match(value) or not value.strip():
        raise ValueError(f"not a valid AE title: {value!r} (1-16 printable characters)")
    return value


def _route_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError("must be 1-64 letters, digits, '_' or '-'")
    return value


def _network(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"not an address or network: {value!r}") from None
    return value


def _keyword(value: str) -> str:
    if value not in keyword_dict:
        raise ValueError(f"not a DICOM keyword: {value!r}")
    return value


def _not_empty(message: str) -> Callable[[list[Any]], list[Any]]:
    def check(value: list[Any]) -> list[Any]:
        if not value:
            raise ValueError(message)
        return value

    return check


AeTitle = Annotated[str, AfterValidator(_ae_title)]


# --------------------------------------------------------------------------------------------
# Tables


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TlsTable(_Table):
    """Certificates of a TLS client (``tls = {...}`` of a node); paths as written."""

    server: ClassVar[bool] = False
    certificate: str | None = None
    private_key: str | None = None
    ca: str | None = None

    @model_validator(mode="after")
    def _pair(self) -> Self:
        if self.server and not (self.certificate and self.private_key):
            raise ValueError("a TLS server needs 'certificate' and 'private_key'")
        if bool(self.certificate) != bool(self.private_key):
            raise ValueError("give both 'certificate' and 'private_key', or neither")
        return self


class ServerTlsTable(TlsTable):
    """``[gateway.tls]``: the gateway's certificate and key (required), client CA."""

    server: ClassVar[bool] = True


class NodeTable(_Table):
    """Another node (``[route.mpps]``, a move destination); ``tls`` may be true or false.

    :class:`DestinationTable` (``[route.forward]``, ``[route.query]``) may name a DICOMweb
    service by its ``url`` instead of ``host``, ``port`` and ``ae_title``.
    """

    web: ClassVar[bool] = False
    host: str | None = None
    port: Annotated[int, _between(1, 65535)] | None = None
    ae_title: AeTitle | None = None
    calling_ae_title: AeTitle | None = None
    tls: TlsTable | None = None

    @model_validator(mode="after")
    def _address(self) -> Self:
        dimse = (self.host, self.port, self.ae_title)
        url = getattr(self, "url", None)
        if url is not None:
            if any(value is not None for value in (*dimse, self.calling_ae_title)):
                raise ValueError("give 'url' (DICOMweb) or 'host', 'port' and 'ae_title'")
            return self
        for name, value in zip(("host", "port", "ae_title"), dimse, strict=True):
            if value is None:
                hint = " (or 'url': a DICOMweb service)" if self.web else ""
                raise KeyPathError((name,), f"missing (required){hint}")
        return self

    @field_validator("tls", mode="before")
    @classmethod
    def _tls_flag(cls, value: Any) -> Any:
        if value is True:
            return {}
        if value is False:
            return None
        if isinstance(value, dict):
            return value
        raise ValueError("must be true, false or a table")


def _http_url(value: str) -> str:
    if not re.match(r"^https?://[^/\s?#]+(/[^\s?#]*)?$", value):
        raise ValueError("must be an http:// or https:// URL (no query, no fragment)")
    return value.rstrip("/")


def _env_name(value: str) -> str:
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", value):
        raise ValueError("must be the name of an environment variable")
    return value


class DestinationTable(NodeTable):
    """``[route.forward]``: a DIMSE node, or a DICOMweb (STOW-RS) service by its URL,
    with a bearer token read from the environment variable ``token_env``."""

    web: ClassVar[bool] = True
    url: Annotated[str, AfterValidator(_http_url)] | None = None
    token_env: Annotated[str, AfterValidator(_env_name)] | None = None

    @model_validator(mode="after")
    def _token_with_url(self) -> Self:
        if self.token_env is not None and self.url is None:
            raise KeyPathError(("token_env",), "only with 'url' (a DICOMweb service)")
        return self


class QueryTable(DestinationTable):
    """``[route.query]``: the upstream node and how queries pass to it."""

    pass_query_keys: list[Annotated[str, AfterValidator(_keyword)]] = Field(default_factory=list)
    worklist: bool = False
    default_issuer_of_patient_id: str = ""
    cohort_maps: list[str] = Field(default_factory=list)
    move_destinations: list[NodeTable] = Field(default_factory=list)

    @model_validator(mode="after")
    def _dimse_only(self) -> Self:
        if self.url is not None and (self.worklist or self.move_destinations):
            raise ValueError("worklists and C-MOVE need a DIMSE upstream (host, port, ae_title)")
        return self


def _token_hash(value: str) -> str:
    if not re.match(r"^sha256:[0-9a-f]{64}$", value):
        raise ValueError(
            "must be a token's hash: 'sha256:' and 64 hex digits (see 'dicomveil gateway token')"
        )
    return value


class WebRouteTable(_Table):
    """``[route.web]``: the route over DICOMweb (``/<route>/studies``...) and who may use it."""

    tokens: Annotated[
        list[Annotated[str, AfterValidator(_token_hash)]],
        AfterValidator(_not_empty("name at least one token's hash")),
    ]


class RouteTable(_Table):
    """One ``[[route]]``: who may send, how it is de-identified, where it goes."""

    name: Annotated[str, AfterValidator(_route_name)]
    calling_ae: list[AeTitle] = Field(default_factory=list)
    called_ae: list[AeTitle] = Field(default_factory=list)
    sources: list[Annotated[str, AfterValidator(_network)]] = Field(default_factory=list)
    profile: str = "ps3.15-basic"
    options: list[str] = Field(default_factory=list)
    key: str | None = None
    layout: str = DEFAULT_LAYOUT
    output: str | None = None
    forward: DestinationTable | None = None
    query: QueryTable | None = None
    mpps: NodeTable | None = None
    web: WebRouteTable | None = None
    verify: bool = True

    @model_validator(mode="after")
    def _destination(self) -> Self:
        if not self.calling_ae and self.web is None:
            raise KeyPathError(
                ("calling_ae",),
                "name at least one calling AE title (the allow-list), or give [route.web]",
            )
        if not self.output and self.forward is None and self.query is None and self.mpps is None:
            raise ValueError(
                "give an 'output' folder, a [route.forward], [route.query] or [route.mpps] node"
            )
        return self


class WebTable(_Table):
    """``[gateway.web]``: the DICOMweb side (STOW-RS, QIDO-RS, WADO-RS) over HTTP(S)."""

    host: str = "127.0.0.1"
    port: Annotated[int, _between(0, 65535)] = 8080
    max_body: Annotated[int, _between(1024, 2**40)] = 2**30
    base_url: Annotated[str, AfterValidator(_http_url)] | None = None
    tls: ServerTlsTable | None = None


class GatewayTable(_Table):
    """``[gateway]``: the listening node, its limits and timeouts."""

    ae_title: AeTitle = "DICOMVEIL"
    host: str = "127.0.0.1"
    port: Annotated[int, _between(0, 65535)] = 11112
    state_dir: str
    cohort: Annotated[str, Field(min_length=1)] | None = None
    max_associations: Annotated[int, _between(1, 1000)] = 16
    workers: Annotated[int, _between(0, 256)] | None = None
    max_pdu_size: Annotated[int, _between(4096, 64 * 1024 * 1024)] = 262144
    max_instances_per_association: Annotated[int, _between(1, 10**9)] = 10000
    timeout: Annotated[float, _between(0.1, 3600.0)] = 30.0
    withheld_status: Literal["warning", "failure"] = "warning"
    retry_initial: Annotated[float, _between(0.01, 3600.0)] = 1.0
    retry_max: Annotated[float, _between(0.01, 86400.0)] = 300.0
    tls: ServerTlsTable | None = None
    web: WebTable | None = None

    @model_validator(mode="after")
    def _backoff(self) -> Self:
        if self.retry_max < self.retry_initial:
            raise KeyPathError(("retry_max",), "must not be smaller than retry_initial")
        return self


class GatewayFile(_Table):
    """The whole file: ``[gateway]`` and the ``[[route]]`` tables (at least one)."""

    gateway: GatewayTable
    route: Annotated[
        list[RouteTable], AfterValidator(_not_empty("at least one [[route]] is needed"))
    ] = Field(default_factory=list, validate_default=True)

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        seen: set[str] = set()
        for index, route in enumerate(self.route):
            if route.web is not None and self.gateway.web is None:
                raise KeyPathError(("route", index, "web"), "needs a [gateway.web] table")
            if route.name in seen:
                raise KeyPathError(("route", index, "name"), "a route of this name exists already")
            seen.add(route.name)
        return self


# --------------------------------------------------------------------------------------------
# Errors users read


def entry(loc: Sequence[str | int], data: Mapping[str, Any]) -> str:
    """The key path of a location in the file, and the route's name when it has one.

    Parameters
    ----------
    loc : sequence of str or int
        Keys and (0-based) array indexes, as pydantic locates an error.
    data : mapping
        The file as TOML parsed it (the route's name is read from it).

    Returns
    -------
    str
        For example ``gateway.port`` or ``route[2].forward.prot (route 'research')``
        (array indexes counted from 1); empty for the whole file.
    """
    text = key_path(loc, first=1)
    routes = data.get("route")
    if len(loc) > 1 and loc[0] == "route" and isinstance(loc[1], int) and isinstance(routes, list):
        table = routes[loc[1]] if 0 <= loc[1] < len(routes) else None
        name = table.get("name") if isinstance(table, dict) else None
        if isinstance(name, str) and _NAME.match(name):
            text += f" (route {name!r})"
    return text


def problems(error: ValidationError, data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """One readable ``(entry, message)`` pair per problem pydantic found.

    Parameters
    ----------
    error : ValidationError
        What :meth:`GatewayFile.model_validate` raised.
    data : mapping
        The file as TOML parsed it.

    Returns
    -------
    list of (str, str)
        The key path of each problem (see :func:`entry`) and what is wrong with it, in the
        order of the file's models. No message holds the value of a key (see the module).
    """
    found: list[tuple[str, str]] = []
    for item in error.errors():
        loc = tuple(item["loc"])
        cause = item.get("ctx", {}).get("error")
        if isinstance(cause, KeyPathError):
            loc += cause.key
        if isinstance(cause, Exception):
            message = str(cause)
        elif item["type"] == "list_type":
            array = loc == ("route",)
            message = (
                "must be an array of tables ([[route]])" if array else "must be a list of strings"
            )
        elif item["type"] == "literal_error":
            message = f"must be {item.get('ctx', {}).get('expected', 'one of the known values')}"
        else:
            message = _MESSAGES.get(item["type"], item["msg"])
        found.append((entry(loc, data), message))
    return found
