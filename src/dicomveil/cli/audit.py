"""``track`` and ``audit``: the tracking sheet and the audit trail (see :mod:`dicomveil.qc.audit`).

Neither command creates a database: they read (and ``track --set`` annotates) one that
``dicomveil run --audit`` made. Original patient IDs appear only with ``--crosswalk`` and
``--show-original-ids`` together; an export holding them is readable by its owner only.
"""

from __future__ import annotations

import datetime as _dt
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from dicomveil.cli._app import app, choice, err, fail, flag, out
from dicomveil.cli._args import CrosswalkArg
from dicomveil.cli._help import Command
from dicomveil.errors import DicomveilError
from dicomveil.identity.crosswalk import Crosswalk
from dicomveil.qc.statuses import QcStatus
from dicomveil.runs.batch import Outcome

if TYPE_CHECKING:  # the database layer (SQLAlchemy) loads only when a command needs it
    from dicomveil.qc.audit import FileRecord, RunRecord, VerificationRecord
    from dicomveil.qc.audit.sheets import Sheet

AuditDbArg = Annotated[
    str,
    typer.Option(
        "--audit",
        metavar="DB",
        help="The audit database: a SQLite file or a postgresql:// URL.",
        show_default=False,
    ),
]
ExportArg = Annotated[
    Path | None,
    typer.Option("--export", metavar="FILE", help="Also write the table to a .csv or .xlsx file."),
]


class View(StrEnum):
    """What ``dicomveil audit`` lists: runs, files or verifications."""

    RUNS = "runs"
    FILES = "files"
    VERIFICATIONS = "verifications"


# Columns shown on screen (exports carry every column); long hashes are shortened.
_SHOWN: dict[View, tuple[str, ...]] = {
    View.RUNS: (
        "id",
        "status",
        "operator",
        "started_at",
        "finished_at",
        "host",
        "profile_name",
        "profile_digest",
        "key_fingerprint",
        "written",
        "withheld",
        "skipped",
        "failed",
    ),
    View.FILES: ("run_id", "outcome", "input_path", "output_path", "subject", "input_sha256"),
    View.VERIFICATIONS: ("id", "operator", "verified_at", "output", "result", "findings_count"),
}


def _show(sheet: Sheet, columns: tuple[str, ...] | None = None, title: str = "") -> None:
    from dicomveil.qc.audit.sheets import format_cell

    if not sheet.rows:
        err.print(f"no {sheet.title} recorded", highlight=False)
        return
    chosen = columns or sheet.columns
    index = [sheet.columns.index(c) for c in chosen]
    table = Table(title=Text(title or sheet.title))
    for name in chosen:
        table.add_column(Text(name), overflow="fold")
    for row in sheet.rows:
        cells = []
        for i in index:
            text = format_cell(row[i])
            if len(text) == 64 and sheet.columns[i].endswith(("digest", "sha256")):
                text = text[:12] + "…"
            cells.append(Text(text))
        table.add_row(*cells)
    out.print(table)


def _export(sheet: Sheet, path: Path | None, *, private: bool = False) -> None:
    if path is None:
        return
    from dicomveil.qc.audit.sheets import export_sheet

    export_sheet(sheet, path, private=private)
    err.print(f"wrote {path} ({len(sheet.rows)} rows)", highlight=False)


def _since(text: str | None) -> _dt.datetime | None:
    if text is None:
        return None
    try:
        value = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise fail(f"--since {text}: give YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC)") from None
    return value if value.tzinfo else value.replace(tzinfo=_dt.UTC)


@app.command("track", cls=Command)
def track_command(
    audit: AuditDbArg,
    set_subject: Annotated[
        str | None,
        typer.Option("--set", metavar="PSEUDONYM", help="The subject whose QC status to set."),
    ] = None,
    status: Annotated[QcStatus | None, choice(QcStatus, "With --set: the QC decision.")] = None,
    notes: Annotated[
        str | None, typer.Option(metavar="TEXT", help="With --set: notes (replace the old).")
    ] = None,
    operator: Annotated[
        str | None, typer.Option(metavar="NAME", help="Who decides (default: your OS user name).")
    ] = None,
    export: ExportArg = None,
    crosswalk: CrosswalkArg = None,
    show_original_ids: Annotated[
        bool,
        flag(
            "--show-original-ids",
            "With --crosswalk: add the original IDs (PHI: do not share the sheet).",
        ),
    ] = False,
) -> None:
    """Show the tracking sheet (who de-identified and who checked each subject), set a
    subject's QC status, export the sheet."""
    if set_subject is None and (status is not None or notes is not None or operator is not None):
        raise fail("--status, --notes and --operator go with --set PSEUDONYM")
    if set_subject is not None and status is None:
        raise fail("--set needs --status (passed, failed or pending)")
    if show_original_ids and crosswalk is None:
        raise fail("--show-original-ids needs --crosswalk CSV (the IDs are not in the database)")
    if crosswalk is not None and not show_original_ids:
        err.print("note: original IDs are shown only with --show-original-ids", highlight=False)
    from dicomveil.qc.audit import AuditTrail
    from dicomveil.qc.audit.sheets import tracking_sheet

    try:
        walk = Crosswalk.from_csv(crosswalk) if crosswalk and show_original_ids else None
        with AuditTrail.open(audit, create=False) as trail:
            if set_subject is not None and status is not None:
                subject = trail.set_qc(set_subject, status, operator, notes)
                err.print(
                    f"{subject.pseudonym}: QC {subject.qc_status.value} by {subject.verified_by}",
                    highlight=False,
                )
            sheet = tracking_sheet(trail.subjects(), walk)
        _show(sheet, title="tracking sheet (times in UTC)")
        _export(sheet, export, private=walk is not None)
    except DicomveilError as exc:
        raise fail(str(exc)) from None


@app.command("audit", cls=Command)
def audit_command(
    audit: AuditDbArg,
    view: Annotated[
        View,
        typer.Argument(
            metavar="VIEW", help="What to list: " + ", ".join(View) + " (default: runs)."
        ),
    ] = View.RUNS,
    run: Annotated[int | None, typer.Option("--run", metavar="N", help="Only this run.")] = None,
    outcome: Annotated[Outcome | None, choice(Outcome, "files: only this outcome.")] = None,
    since: Annotated[
        str | None,
        typer.Option(metavar="DATE", help="Only from this date or time on (ISO 8601, UTC)."),
    ] = None,
    export: ExportArg = None,
) -> None:
    """List (and export) the runs, files or verifications of the audit trail."""
    if outcome is not None and view is not View.FILES:
        raise fail("--outcome filters files: dicomveil audit files --outcome ...")
    if run is not None and view is View.VERIFICATIONS:
        raise fail("--run filters runs and files, not verifications")
    start = _since(since)
    from dicomveil.qc.audit import AuditTrail, FileRecord, RunRecord, VerificationRecord
    from dicomveil.qc.audit.sheets import records_sheet

    kinds = {View.RUNS: RunRecord, View.FILES: FileRecord, View.VERIFICATIONS: VerificationRecord}
    try:
        with AuditTrail.open(audit, create=False) as trail:
            records: list[RunRecord] | list[FileRecord] | list[VerificationRecord]
            if view is View.RUNS:
                records = trail.runs(run_id=run, since=start)
            elif view is View.FILES:
                records = trail.files(run_id=run, outcome=outcome, since=start)
            else:
                records = trail.verifications(since=start)
        sheet = records_sheet(view.value, kinds[view], records)
        _show(sheet, _SHOWN[view], title=f"{view.value} (times in UTC)")
        _export(sheet, export)
    except DicomveilError as exc:
        raise fail(str(exc)) from None
