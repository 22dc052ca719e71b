"""The Typer application, its consoles and helpers shared by every command.

Exit codes: 0 everything asked for was done (withheld and skipped files are reported, not
failures); 1 at least one file failed or a check found something; 2 the command could not
start (bad profile, key, crosswalk, layout or arguments). Messages name files and reasons,
never values read from DICOM files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console, ConsoleDimensions

from dicomveil._version import __version__
from dicomveil.cli._help import Group, choice, flag, option
from dicomveil.identity.keys import Key, load_or_create_default_key, read_key
from dicomveil.profiles import Profile

__all__ = [
    "app",
    "choice",
    "err",
    "fail",
    "flag",
    "load_key",
    "load_profile",
    "option",
    "out",
]

app = typer.Typer(
    cls=Group,
    add_completion=True,
    no_args_is_help=True,
    help="De-identify DICOM files: PS3.15 profiles, keyed pseudonyms, streaming I/O.",
    pretty_exceptions_enable=False,
)

PIPE_WIDTH = 10_000
"""The width of a console writing to a pipe or a file (no ``COLUMNS``): wide enough that no
table is cut or wrapped, as a reader of the file (grep, a script) expects."""


class _Console(Console):
    """A Rich console that sizes itself to the terminal, and writing to a pipe or a file is
    ``COLUMNS`` wide, or :data:`PIPE_WIDTH` (Rich would take 80 columns, or the width of a
    terminal on another stream, and cut tables to fit)."""

    @property
    def size(self) -> ConsoleDimensions:
        """The terminal's size; on a pipe or in a file, ``COLUMNS`` or :data:`PIPE_WIDTH`."""
        size = super().size
        columns = self._environ.get("COLUMNS", "")
        if self._width is None and not self.is_terminal and not columns.isdigit():
            return ConsoleDimensions(PIPE_WIDTH, size.height)
        return size

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size


out = _Console()
# Messages carry file names that may contain "[...]": never interpret them as markup.
err = _Console(stderr=True, soft_wrap=True, markup=False, highlight=False)


def _print_version(value: bool) -> None:
    if value:
        out.print(f"dicomveil {__version__}", highlight=False, markup=False)
        raise typer.Exit(0)


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """De-identify DICOM files: PS3.15 profiles, keyed pseudonyms, streaming I/O."""


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
