"""The ``--json FILE`` reports of ``run``, ``explain``, ``diff``, ``profiles`` and ``verify``:
written whole or not at all, and their schemas (with ``gateway status --json``'s, printed).

Each report is described by a JSON Schema (draft 2020-12) in ``dicomveil/cli/schemas/``
(``run.schema.json``, ...): field names, types and meaning. Every report carries
``"dicomveil"`` (the version that wrote it) and ``"schema"`` (the schema's name), so a reader
can tell what it holds.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from dicomveil._version import __version__
from dicomveil.cli._app import fail

SCHEMAS = Path(__file__).resolve().parent / "schemas"
"""The folder of the reports' JSON Schemas."""

JsonArg = Annotated[
    Path | None,
    typer.Option(
        "--json",
        metavar="FILE",
        help="Also write the report as JSON (schema: dicomveil/cli/schemas/).",
    ),
]


def schema_path(name: str) -> Path:
    """The JSON Schema of one report.

    Parameters
    ----------
    name : str
        ``run``, ``explain``, ``diff``, ``profiles``, ``verify`` or ``gateway-status``.

    Returns
    -------
    Path
        ``<name>.schema.json`` in :data:`SCHEMAS`.
    """
    return SCHEMAS / f"{name}.schema.json"


def write_report(
    path: Path,
    schema: str,
    body: Mapping[str, Any],
    *,
    private: bool,
    items: tuple[str, Iterable[Any]] | None = None,
) -> None:
    """Write a report: to a temporary file beside ``path``, then moved into place.

    Parameters
    ----------
    path : Path
        The ``--json`` file, as the user gave it.
    schema : str
        The report's schema name (see :func:`schema_path`); recorded in the report.
    body : Mapping
        The report's fields (after ``dicomveil`` and ``schema``).
    private : bool
        Readable by its owner only (0600): the report holds values of the files, or what
        reveals them (original dates from day offsets); else 0644.
    items : tuple of (str, iterable), optional
        A last field whose value, a list, is written item by item as the iterable yields
        them (a run's per-file records: never all in memory).

    Raises
    ------
    typer.Exit
        With code 2, after an error message, when the file cannot be written.
    """
    document = {"dicomveil": __version__, "schema": schema, **body}
    text = json.dumps(document, indent=2, ensure_ascii=False)
    temporary: str | None = None
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            if items is None:
                fh.write(text + "\n")
            else:
                name, values = items
                fh.write(text.removesuffix("\n}") + f",\n  {json.dumps(name)}: [")
                for n, value in enumerate(values):
                    fh.write(("," if n else "") + "\n    " + json.dumps(value, ensure_ascii=False))
                fh.write("\n  ]\n}\n")
        Path(temporary).chmod(0o600 if private else 0o644)
        Path(temporary).replace(path)
        temporary = None
    except OSError as exc:
        raise fail(f"cannot write {path} ({exc.strerror or type(exc).__name__})") from None
    finally:
        if temporary is not None:
            with contextlib.suppress(OSError):
                Path(temporary).unlink()
