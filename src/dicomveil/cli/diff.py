"""``diff``: what de-identification changed, per element across a batch, on the terminal and
as a self-contained HTML report.

The diff is informational: exit code 0 whatever it finds, 2 when the inputs, the map folder or
the report file cannot be used.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from dicomveil.cli._app import app, err, fail, flag, option, out
from dicomveil.cli._help import Command
from dicomveil.cli._json import write_report
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


@app.command("diff", cls=Command)
def diff_command(
    original: Annotated[
        Path, typer.Argument(metavar="ORIGINAL", help="The original file or folder.")
    ],
    deidentified: Annotated[
        Path, typer.Argument(metavar="DEIDENTIFIED", help="The de-identified file or folder.")
    ],
    map_dir: RunMapsArg = None,
    html: Annotated[
        Path | None,
        option(
            "FILE",
            "Also write a self-contained HTML report (no external assets; owner-only: its day "
            "offsets reveal the original dates).",
            "--html",
        ),
    ] = None,
    json_report: Annotated[
        Path | None,
        typer.Option(
            "--json",
            metavar="FILE",
            help="Also write the report as JSON (schema: dicomveil/cli/schemas/; owner-only).",
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
            _write_html(html, render_html(report, show_values=show_values))
        except OSError as exc:
            raise fail(f"cannot write {html}: {exc.strerror or type(exc).__name__}") from None
        err.print(f"wrote {html}", highlight=False)
    if json_report is not None:
        # Day offsets (and, with --show-values, values): readable by its owner only.
        write_report(json_report, "diff", _json_body(report, show_values), private=True)
        err.print(f"wrote {json_report}", highlight=False)
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


def _write_html(path: Path, text: str) -> None:
    """Write the page, readable by its owner only (0600, like the maps): its day offsets
    reveal the original dates, and with ``--show-values`` it holds values (PHI). Written to a
    temporary file beside it, then moved into place, so an older page is replaced whole (with
    its permissions)."""
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode("utf-8"))
        Path(temporary).chmod(0o600)  # mkstemp's mode already; said for the reader
        Path(temporary).replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(temporary).unlink()
        raise


def _json_body(report: DiffReport, show_values: bool) -> dict[str, object]:
    """The report for ``--json`` (schema ``diff.schema.json``)."""
    return {
        "original": str(report.original),
        "deidentified": str(report.deidentified),
        "map_dir": None if report.map_dir is None else str(report.map_dir),
        "show_values": show_values,
        "headline": report.headline(),
        "matched_by": {m.value: n for m, n in sorted(report.match_counts().items())},
        "changes": {kind.value: report.kind_counts().get(kind, 0) for kind in ChangeKind},
        "rows": [
            {
                "path": row.path,
                "keyword": row.keyword,
                "change": row.change.value,
                "count": row.count,
                "total": row.total,
                "detail": row.detail,
            }
            for row in report.summary_rows()
        ],
        "pairs": [
            {
                "original": str(pair.original),
                "deidentified": str(pair.deidentified),
                "matched_by": pair.matched_by.value,
                "date_offset_days": pair.date_offset_days,
                "expected_offset_days": pair.expected_offset_days,
                "offset_disagrees": pair.offset_disagrees,
                "counts": {kind.value: pair.count(kind) for kind in ChangeKind},
                "changed": [
                    {
                        "path": c.path,
                        "keyword": c.keyword,
                        "change": c.change.value,
                        "detail": c.detail,
                        **({"before": c.before, "after": c.after} if show_values else {}),
                    }
                    for c in pair.changes
                    if c.change is not ChangeKind.KEPT
                ],
            }
            for pair in report.pairs
        ],
        "unmatched_original": [str(p) for p in report.unmatched_original],
        "unmatched_deidentified": [str(p) for p in report.unmatched_deidentified],
        "not_compared": [{"file": str(p), "reason": reason} for p, reason in report.skipped],
    }
