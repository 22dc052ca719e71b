"""``review``: the review and sign-off web application (see :mod:`dicomveil.review`);
``review adduser``: its accounts.

``dicomveil review --audit DB`` serves on 127.0.0.1:8000 until Ctrl-C. It binds to another
address only with ``--host``; with ``--certificate`` and ``--private-key`` it serves HTTPS
(and marks its cookie Secure). The server's log names methods, paths (pseudonyms and record
numbers only) and statuses.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Annotated

import typer

from dicomveil.cli._app import app, err, fail
from dicomveil.cli._help import Command, Group
from dicomveil.errors import DicomveilError

review_app = typer.Typer(
    cls=Group,
    help="The review and sign-off web application, and its accounts.",
    no_args_is_help=False,
)
app.add_typer(review_app, name="review")

_NEEDS_EXTRA = "the review application needs its extra: pip install 'dicomveil[review]'"

AuditOption = Annotated[
    str | None,
    typer.Option(
        "--audit",
        metavar="DB",
        help="The audit database (a SQLite file or a postgresql:// URL) that runs wrote.",
        show_default=False,
    ),
]


@review_app.callback(invoke_without_command=True)
def review_command(
    ctx: typer.Context,
    audit: AuditOption = None,
    host: Annotated[
        str, typer.Option(metavar="ADDRESS", help="The address to listen on.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="PORT", help="The port.", min=0, max=65535)] = 8000,
    crosswalk: Annotated[
        Path | None,
        typer.Option(
            metavar="CSV",
            help="Original ID -> study ID (a crosswalk or a map folder's patients.csv): "
            "the admins' separate export with original IDs.",
        ),
    ] = None,
    certificate: Annotated[
        Path | None, typer.Option(metavar="PEM", help="Serve HTTPS with this certificate.")
    ] = None,
    private_key: Annotated[
        Path | None, typer.Option(metavar="PEM", help="The certificate's private key.")
    ] = None,
) -> None:
    """Serve the review application (add accounts first: 'dicomveil review adduser')."""
    if ctx.invoked_subcommand is not None:
        return
    if audit is None:
        raise fail("give --audit DB (the audit database of your runs)")
    if (certificate is None) != (private_key is None):
        raise fail("HTTPS needs both --certificate and --private-key")
    try:
        import uvicorn

        from dicomveil.review import ReviewSettings, ReviewStore, create_app
    except ImportError:
        raise fail(_NEEDS_EXTRA) from None

    try:
        _check_audit(audit)
        store = ReviewStore(audit)
        try:
            accounts = store.users()
        finally:
            store.close()
        if not accounts:
            raise fail(
                "no accounts yet: add one with "
                "'dicomveil review adduser NAME --role reviewer --audit DB'"
            )
        settings = ReviewSettings(
            audit=audit, crosswalk=crosswalk, secure_cookies=certificate is not None
        )
        application = create_app(settings)
    except DicomveilError as exc:
        raise fail(str(exc)) from None
    scheme = "https" if certificate is not None else "http"
    err.print(f"dicomveil review on {scheme}://{host}:{port}/ (Ctrl-C stops it)")
    uvicorn.run(
        application,
        host=host,
        port=port,
        ssl_certfile=str(certificate) if certificate else None,
        ssl_keyfile=str(private_key) if private_key else None,
        log_level="info",
        server_header=False,
        proxy_headers=False,
    )


@review_app.command("adduser", cls=Command)
def adduser_command(
    name: Annotated[str, typer.Argument(help="The account (like the runs' --operator names).")],
    audit: AuditOption = None,
    role: Annotated[
        str, typer.Option(help="operator, reviewer or admin.", metavar="ROLE")
    ] = "reviewer",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Add an account, or set the password and role of an existing one."""
    try:
        from dicomveil.review import ReviewStore, Role
    except ImportError:
        raise fail(_NEEDS_EXTRA) from None

    if audit is None:
        raise fail("give --audit DB")
    try:
        chosen = Role(role)
    except ValueError:
        raise fail(f"unknown role {role!r}: operator, reviewer or admin") from None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {name}: ")
        if getpass.getpass("again: ") != password:
            raise fail("the passwords differ")
    try:
        _check_audit(audit)
        store = ReviewStore(audit)
        try:
            store.add_user(name, password, chosen)
            store.log("-", "account", detail=f"{name} is {chosen.value} (command line)")
        finally:
            store.close()
    except DicomveilError as exc:
        raise fail(str(exc)) from None
    err.print(f"account {name} ({chosen.value}) saved")


def _check_audit(audit: str) -> None:
    """The database must be a dicomveil audit trail before the review's tables join it."""
    from dicomveil.qc.audit import AuditTrail

    AuditTrail.open(audit, create=False).close()
