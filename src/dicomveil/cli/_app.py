"""The Typer application, its consoles and helpers shared by every command.

Exit codes: 0 everything asked for was done (withheld and skipped files are reported, not
failures); 1 at least one file failed or a check found something; 2 the command could not
start (bad profile, key, crosswalk, layout or arguments). Messages name files and reasons,
never values read from DICOM files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from dicomveil.identity.keys import Key, load_or_create_default_key, read_key
from dicomveil.profiles import Profile

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="De-identify DICOM files: PS3.15 profiles, keyed pseudonyms, streaming I/O.",
    pretty_exceptions_enable=False,
)
out = Console()
# Messages carry file names that may contain "[...]": never interpret them as markup.
err = Console(stderr=True, soft_wrap=True, markup=False, highlight=False)

ProfileArg = Annotated[
    str,
    typer.Option(
        "--profile", "-p", help="A preset name (see 'dicomveil profiles') or a .toml profile file."
    ),
]
OptionArg = Annotated[
    list[str] | None,
    typer.Option(
        "--option",
        "-o",
        help="A PS3.15 option, e.g. retain-uids (repeatable; dcm4chee names accepted).",
    ),
]
KeyArg = Annotated[
    Path | None,
    typer.Option(
        "--key",
        "-k",
        help="Key file (see 'dicomveil keygen'); default: your user key, created on first use.",
    ),
]
CrosswalkArg = Annotated[
    Path | None,
    typer.Option(
        metavar="CSV",
        help="CSV of original patient ID -> study ID (header row, two columns; a --map-dir "
        "patients.csv works too).",
    ),
]


def flag(name: str, help: str) -> Any:
    """A boolean option that is only ever switched on (``--show-values``, no ``--no-`` form).

    Parameters
    ----------
    name : str
        The option as typed.
    help : str
        Its help text.

    Returns
    -------
    typer.models.OptionInfo
        For ``Annotated[bool, flag(...)] = False``.
    """
    return typer.Option(name, help=help)


def fail(message: str) -> typer.Exit:
    """Print an error (as written: no Rich markup, so ``[[route]]`` stays) for exit 2."""
    err.print(f"error: {message}", style="bold red", markup=False, highlight=False)
    return typer.Exit(2)


def load_profile(profile: str, options: list[str] | None) -> Profile:
    return Profile.named(profile).with_options(options or [])


def load_key(path: Path | None) -> Key:
    if path is not None:
        return read_key(path)
    key, where, created = load_or_create_default_key()
    if created:
        err.print(
            f"note: created your default key at {where} (owner-only). Pseudonyms and "
            "UIDs stay stable only with the same key: back it up and keep it secret, or pass "
            "--key.",
            highlight=False,
        )
    return key
