"""The ``dicomveil`` command line (Typer + Rich).

Each group of commands lives in its own module and registers on :data:`app`; this package
imports them so that ``dicomveil.cli:main`` sees every command.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from dicomveil.cli import audit as _audit  # noqa: F401
from dicomveil.cli import deidentify as _deidentify  # noqa: F401  (registers its commands)
from dicomveil.cli import diff as _diff  # noqa: F401
from dicomveil.cli import gateway as _gateway  # noqa: F401
from dicomveil.cli import reidentify as _reidentify  # noqa: F401
from dicomveil.cli import review as _review  # noqa: F401
from dicomveil.cli import risk as _risk  # noqa: F401
from dicomveil.cli import run as _run  # noqa: F401
from dicomveil.cli import verify as _verify  # noqa: F401
from dicomveil.cli._app import app, err, out

__all__ = ["app", "err", "main", "out"]


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name (default: ``sys.argv[1:]``).

    Raises
    ------
    SystemExit
        Always, with the command's exit code (0 when everything succeeded).
    """
    try:
        app(args=list(argv) if argv is not None else None, prog_name="dicomveil")
    except KeyboardInterrupt:
        err.print("interrupted: no half-written output was left", highlight=False)
        sys.exit(130)
