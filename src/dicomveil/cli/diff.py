"""``diff``: what de-identification changed, per element across a batch, on the terminal and
as a self-contained HTML report.

The diff is informational: exit code 0 whatever it finds, 2 when the inputs, the map folder or
the report file cannot be used.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from dicomveil.cli._app import app, err, fail, flag, out
from dicomveil.cli._qc import RunMapsArg
from dicomveil.errors import DicomveilError
from dicomveil.qc.diff import ChangeKind, DiffReport, render_html
from dicomveil.qc.diff import diff as diff_files

_STYLES = {
    ChangeKind.REMOVED: "red",
    ChangeKind.EMPTIED: "yellow",
    ChangeKind.REPLACED: "blue",
    ChangeKind.SHIFTED: "magenta",
    ChangeKind.KEPT: "dim",
    ChangeKind.ADDED: "green",
}


@app.command("diff")
def diff_command(
    original: Annotated[Path, typer.Argument(help="The original file or folder.")],
    deidentified: Annotated[Path, typer.Argument(help="The de-identified file or folder.")],
    map_dir: RunMapsArg = None,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html", help="Also write a self-contained HTML report (no external assets)."
        ),
    ] = None,
    show_values: Annotated[
        bool,
        flag("--show-values", "Also show original and new values (PHI: do not share the output)."),
    ] = False,
) -> None:
    """Compare ORIGINAL with DEIDENTIFIED: per element, removed, emptied, replaced, shifted,
    kept or added, across the batch."""
    try:
        report = diff_files(original, deidentified, map_dir=map_dir)
    except DicomveilError as exc:
        raise fail(str(exc)) from None
    _print(report, show_values)
    if html is not None:
        try:
            _write_html(html, render_html(report, show_values=show_values), private=show_values)
        except OSError as exc:
            raise fail(f"cannot write {html}: {exc.strerror or type(exc).__name__}") from None
        err.print(f"wrote {html}", highlight=False)
    raise typer.Exit(0)


def _print(report: DiffReport, show_values: bool) -> None:
    table = Table(title=Text(f"{report.original} -> {report.deidentified}"))
    for column in ("element", "keyword", "change", "in", "detail"):
        table.add_column(column, justify="right" if column == "in" else "left")
    for row in report.summary_rows():
        style = _STYLES[row.change]
        table.add_row(
            Text(row.path),
            Text(row.keyword),
            Text(row.change.value, style=style),
            Text(f"{row.count}/{row.total}"),
            Text(row.detail),
            style=style if row.change is ChangeKind.KEPT else None,
        )
    out.print(table)
    if show_values:
        _print_values(report)
    out.print(Text(report.headline()))
    for pair in report.pairs:
        if pair.offset_disagrees:
            err.print(
                f"warning: {pair.deidentified}: dates moved by another offset than "
                "date_offsets.csv records",
                style="yellow",
            )
    for title, paths in (
        ("unmatched original", report.unmatched_original),
        ("unmatched de-identified", report.unmatched_deidentified),
    ):
        for path in paths:
            err.print(f"{title}: {path}")
    for path, reason in report.skipped:
        err.print(f"not compared {path}: {reason}")


def _print_values(report: DiffReport) -> None:
    for pair in report.pairs:
        table = Table(
            title=Text(f"{pair.original} -> {pair.deidentified} ({pair.matched_by.value})")
        )
        for column in ("element", "keyword", "change", "before", "after"):
            table.add_column(column)
        for change in pair.changes:
            if change.change is ChangeKind.KEPT:
                continue
            table.add_row(
                Text(change.path),
                Text(change.keyword),
                Text(change.change.value, style=_STYLES[change.change]),
                Text(change.before),
                Text(change.after),
            )
        out.print(table)


def _write_html(path: Path, text: str, *, private: bool) -> None:
    """Write the report; one showing values (PHI) is readable by its owner only."""
    data = text.encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    if private:
        with contextlib.suppress(OSError):
            path.chmod(0o600)
