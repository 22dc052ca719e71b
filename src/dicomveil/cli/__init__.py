"""The ``dicomveil`` command line (Typer + Rich).

Each group of commands lives in its own module and registers on :data:`app`; this package
imports them so that ``dicomveil.cli:main`` sees every command.
"""

from __future__ import annotations

import sys

from dicomveil.cli import audit as _audit  # noqa: F401
from dicomveil.cli import deidentify as _deidentify  # noqa: F401  (registers its commands)
from dicomveil.cli import diff as _diff  # noqa: F401
from dicomveil.cli import gateway as _gateway  # noqa: F401
from dicomveil.cli import verify as _verify  # noqa: F401
from dicomveil.cli._app import app, err, out

__all__ = ["app", "err", "main", "out"]


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted: no half-written output was left", highlight=False)
        sys.exit(130)
