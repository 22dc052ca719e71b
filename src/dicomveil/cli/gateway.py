"""``gateway``: run the DICOM gateway; ``gateway status``: its queues, counts and errors.

``dicomveil gateway --config gateway.toml`` runs until SIGTERM or SIGINT (Ctrl-C), then
stops accepting, lets the forwarders stop and writes the status file; exit code 0. A
configuration that cannot be used exits with 2 before anything listens. Logs go to stderr
(``--log-level``), naming routes, AE titles, addresses and reasons, never DICOM values.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.table import Table

from dicomveil._version import __version__
from dicomveil.cli._app import app, err, fail, out
from dicomveil.cli._help import Command, Group
from dicomveil.errors import DicomveilError

gateway_app = typer.Typer(
    cls=Group,
    help="A DICOM node that de-identifies what it receives and forwards it.",
    no_args_is_help=False,
)
app.add_typer(gateway_app, name="gateway")

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", metavar="FILE", help="The gateway's TOML configuration."),
]


@gateway_app.callback(invoke_without_command=True)
def gateway_command(
    ctx: typer.Context,
    config: ConfigOption = None,
    log_level: Annotated[
        str, typer.Option(metavar="LEVEL", help="debug, info, warning or error (to stderr).")
    ] = "info",
) -> None:
    """Run the gateway (with --config), or see 'dicomveil gateway status --help'."""
    if ctx.invoked_subcommand is not None:
        return
    if config is None:
        raise fail("give --config gateway.toml")
    level = logging.getLevelName(log_level.upper())
    if not isinstance(level, int):
        raise fail(f"unknown log level {log_level!r}")
    try:
        from dicomveil.gateway import load_config  # pynetdicom loads only for this command

        settings = load_config(config)
    except DicomveilError as exc:
        raise fail(str(exc)) from None
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("dicomveil.gateway")
    logger.addHandler(handler)
    logger.setLevel(level)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    from dicomveil.gateway import Gateway

    gateway = Gateway(settings)
    try:
        try:
            gateway.start()
        except (OSError, DicomveilError) as exc:
            raise fail(f"the gateway cannot start: {exc}") from None
        err.print(
            f"gateway {settings.ae_title} on {settings.host}:{gateway.port}, "
            f"{len(settings.routes)} route(s); state in {settings.state_dir}",
            highlight=False,
        )
        if gateway.web_url is not None:
            err.print(f"DICOMweb on {gateway.web_url}/<route>", highlight=False)
        while not stop.wait(1.0):
            pass
    finally:
        gateway.stop()
        for signum, old in previous.items():
            signal.signal(signum, old)
        logger.removeHandler(handler)
    err.print("gateway stopped", highlight=False)


@gateway_app.command("token", cls=Command)
def token_command(
    hash_only: Annotated[
        bool,
        typer.Option(
            "--hash",
            help="Hash a token of yours, read from standard input, instead of making one.",
        ),
    ] = False,
) -> None:
    """Make a bearer token for a route's DICOMweb side, and the hash to configure.

    The token (printed once, on stdout) goes to the client; the hash goes into the route's
    [route.web] tokens. The gateway keeps only the hash.
    """
    from dicomveil.gateway.web.auth import hash_token, new_token

    if hash_only:
        token = sys.stdin.readline().strip()
        if not token:
            raise fail("give the token on standard input")
        out.print(hash_token(token), highlight=False)
        return
    token = new_token()
    out.print(f"token: {token}", highlight=False)
    out.print(f'hash:  "{hash_token(token)}"   (for [route.web] tokens)', markup=False)


@gateway_app.command("status", cls=Command)
def status_command(
    config: ConfigOption = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print the status as JSON (schema: gateway-status.schema.json)."
        ),
    ] = False,
) -> None:
    """Queue depth, counts, throughput and recent errors of each route."""
    if config is None:
        raise fail("give --config gateway.toml")
    try:
        from dicomveil.gateway import load_config  # pynetdicom loads only for this command

        settings = load_config(config)
    except DicomveilError as exc:
        raise fail(str(exc)) from None
    from dicomveil.gateway import read_status

    status = read_status(settings)
    if as_json:  # schema: gateway-status.schema.json
        document = {"dicomveil": __version__, "schema": "gateway-status", **status}
        out.print_json(json.dumps(document))
        return
    state = "running" if status.get("running") else "not running"
    updated = _when(status.get("updated"))
    out.print(f"gateway {settings.ae_title}: {state} (status of {updated})", highlight=False)
    table = Table()
    for column in (
        "route",
        "received",
        "written",
        "withheld",
        "failed",
        "forwarded",
        "queued",
        "refused",
        "written/s (1 min)",
        "forwarding",
    ):
        table.add_column(column)
    for name, entry in status.get("routes", {}).items():
        forwarding = entry.get("forwarding") or {}
        table.add_row(
            name,
            *(str(entry.get(k, 0)) for k in ("received", "written", "withheld", "failed")),
            str(entry.get("forwarded", 0)),
            str(entry.get("queue_depth", 0)),
            str(entry.get("queue_failed", 0)),
            str(entry.get("written_per_second_last_minute", 0)),
            _forwarding(forwarding),
        )
    out.print(table)
    errors = status.get("last_errors") or []
    for item in errors[-10:]:
        out.print(
            f"{_when(item.get('time'))} {item.get('route') or '-'}: {item.get('message')}",
            highlight=False,
            markup=False,
        )


def _forwarding(state: dict[str, Any]) -> str:
    if not state:
        return "-"
    if state.get("attempts"):
        return f"retrying ({state.get('attempts')} attempts): {state.get('last_error')}"
    return f"ok, {state.get('forwarded_total', 0)} sent to {state.get('destination', '?')}"


def _when(value: object) -> str:
    if not isinstance(value, int | float):
        return "never"
    return _dt.datetime.fromtimestamp(value).isoformat(timespec="seconds")
