"""``reidentify``: restore the original values sealed by the ``reversible`` option.

Each input file (folders are walked) is read whole, its Encrypted Attributes Sequence opened
with the private key (:func:`dicomveil.engine.reversible.restore`), and the re-identified file
written atomically to OUTPUT at the input's path relative to the input it was found under. A
file without an envelope this key opens, or whose envelope fails authentication, is refused
(reported failed, nothing written). With ``--audit DB`` the act is recorded in the audit
trail: who, when, the certificate, how many files. Exit codes: 0 all restored, 1 a file
refused, 2 could not start.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from dicomveil.cli._app import app, err, fail, option
from dicomveil.cli._help import Command
from dicomveil.errors import DicomveilError
from dicomveil.io import regular_files

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import rsa

# ``cryptography`` and the envelope are loaded by this command only (every command's start
# would pay for them otherwise: the CLI registers all commands).


@app.command("reidentify", cls=Command)
def reidentify_command(
    paths: Annotated[
        list[Path],
        typer.Argument(
            metavar="INPUT... OUTPUT", help="De-identified files or folders, then the output."
        ),
    ],
    private_key: Annotated[
        Path,
        typer.Option(
            "--private-key", metavar="KEY.pem", help="A recipient's RSA private key (PEM or DER)."
        ),
    ],
    certificate: Annotated[
        Path | None,
        option("CERT.pem", "Its certificate: picks its entry in each envelope."),
    ] = None,
    password_env: Annotated[
        str | None,
        option("VAR", "The environment variable holding the key's pass phrase, if any."),
    ] = None,
    audit: Annotated[
        str | None,
        option("DB", "Record the re-identification in this audit database."),
    ] = None,
    operator: Annotated[
        str | None, option("NAME", "With --audit: who does it (default: your OS user name).")
    ] = None,
) -> None:
    """Restore the original values of files de-identified with --option reversible."""
    if len(paths) < 2:
        raise fail("give at least one input and the output folder")
    inputs, output = paths[:-1], paths[-1]
    from dicomveil.identity.envelope import load_private_key, load_recipient

    try:
        password = None
        if password_env is not None:
            if password_env not in os.environ:
                raise fail(f"--password-env: ${password_env} is not set")
            password = os.environ[password_env].encode()
        key = load_private_key(private_key, password)
        cert = load_recipient(certificate).certificate if certificate is not None else None
        for root in inputs:
            if not root.exists():
                raise fail(f"{root}: no such file or folder")
            if root.resolve() == output.resolve() or output.resolve().is_relative_to(
                root.resolve()
            ):
                raise fail(f"the output folder {output} is inside the input {root}")
    except DicomveilError as exc:
        raise fail(str(exc)) from None
    restored = failed = 0
    for root in inputs:
        for path in regular_files(root):
            relative = path.relative_to(root) if root.is_dir() else Path(path.name)
            reason = _reidentify(path, output / relative, key, cert)
            if reason is None:
                restored += 1
            else:
                failed += 1
                err.print(f"refused {path}: {reason}", style="red", highlight=False)
    err.print(f"summary: re-identified {restored}, refused {failed}", highlight=False)
    if audit is not None:
        _record(audit, operator, cert, output, restored, failed)
    raise typer.Exit(1 if failed else 0)


def _reidentify(
    path: Path, target: Path, key: rsa.RSAPrivateKey, cert: x509.Certificate | None
) -> str | None:
    """Re-identify one file into ``target``; None when done, else why not (no values)."""
    from dicomveil.engine.reversible import restore
    from dicomveil.identity.envelope import EnvelopeError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = dcmread(path)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        return f"cannot read it as DICOM ({type(exc).__name__})"
    try:
        restore(ds, key, cert)
    except EnvelopeError as exc:
        return str(exc)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.save_as(fh, enforce_file_format=True)
        Path(temporary).chmod(0o600)  # it holds identifying values again
        Path(temporary).replace(target)
    except (OSError, ValueError, TypeError) as exc:
        with contextlib.suppress(OSError):
            Path(temporary).unlink()
        return f"cannot write the output ({type(exc).__name__})"
    return None


def _record(
    audit: str,
    operator: str | None,
    certificate: object,
    output: Path,
    restored: int,
    refused: int,
) -> None:
    from dicomveil.qc.audit import AuditTrail  # SQLAlchemy: loaded only to record

    subject = getattr(getattr(certificate, "subject", None), "rfc4514_string", lambda: "")()
    try:
        with AuditTrail.open(audit) as writer:
            writer.record_reidentification(
                operator or getpass.getuser(), str(output), subject, restored, refused
            )
    except DicomveilError as exc:
        raise fail(f"audit: {exc}") from None
