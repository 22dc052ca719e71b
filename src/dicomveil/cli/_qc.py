"""Command-line pieces the checking commands (``diff``, ``verify``) share."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

RunMapsArg = Annotated[
    Path | None,
    typer.Option(
        "--map-dir", metavar="DIR", help="The run's --map-dir: its uids.csv matches the files."
    ),
]
