"""The options several commands share, as ``Annotated`` types: ``key: KeyArg = None``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from dicomveil.cli._help import option

__all__ = ["CrosswalkArg", "KeyArg", "OptionArg", "ProfileArg", "WorkersArg"]

ProfileArg = Annotated[
    str,
    option(
        "NAME|FILE.toml",
        "A preset name (see 'dicomveil profiles') or a .toml profile file.",
        "--profile",
        "-p",
    ),
]
OptionArg = Annotated[
    list[str] | None,
    option(
        "NAME",
        "A PS3.15 option, e.g. retain-uids (repeatable; dcm4chee names accepted).",
        "--option",
        "-o",
    ),
]
KeyArg = Annotated[
    Path | None,
    option(
        "KEYFILE",
        "Key file (see 'dicomveil keygen'); default: your user key, created on first use.",
        "--key",
        "-k",
    ),
]
WorkersArg = Annotated[int, option("N", "Worker processes (0: one per core).")]
CrosswalkArg = Annotated[
    Path | None,
    option(
        "CSV",
        "CSV of original patient ID -> study ID (header row, two columns; a --map-dir "
        "patients.csv works too).",
    ),
]
