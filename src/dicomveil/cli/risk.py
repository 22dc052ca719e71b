"""``risk``: k-anonymity of a release over its quasi-identifiers (see :mod:`dicomveil.qc.risk`).

Exit codes: 0 every subject is in a class of at least k, 1 some are not, 2 could not check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dicomveil.cli._app import app, err, fail, option, out
from dicomveil.cli._args import WorkersArg
from dicomveil.cli._help import Command
from dicomveil.cli._json import write_report
from dicomveil.errors import DicomveilError
from dicomveil.qc.risk import DEFAULT_QUASI, RiskReport, assess, read_release


@app.command("risk", cls=Command)
def risk_command(
    output: Annotated[
        Path, typer.Argument(metavar="OUTPUT", help="A de-identified release (folder).")
    ],
    quasi: Annotated[
        list[str] | None,
        option(
            "KEYWORD",
            "A quasi-identifier, by DICOM keyword (repeatable; default: "
            + ", ".join(DEFAULT_QUASI)
            + ").",
            "--quasi",
        ),
    ] = None,
    k: Annotated[int, typer.Option("--k", metavar="K", min=1, help="The k wanted.")] = 5,
    workers: WorkersArg = 0,
    json_file: Annotated[
        Path | None,
        typer.Option("--json", metavar="FILE", help="Also write the report as JSON."),
    ] = None,
    audit: Annotated[
        str | None, option("DB", "Record the assessment in this audit database.")
    ] = None,
) -> None:
    """The re-identification risk of a release: k-anonymity over its quasi-identifiers."""
    if not output.exists():
        raise fail(f"{output}: no such file or folder")
    release = read_release(output, tuple(quasi) if quasi else DEFAULT_QUASI, workers=workers)
    report = assess(release, k)
    print_risk(report)
    if json_file is not None:
        write_report(json_file, "risk", report.as_dict(), private=False)
    if audit is not None:
        from dicomveil.qc.audit import AuditTrail  # SQLAlchemy: loaded only to record

        try:
            with AuditTrail.open(audit) as trail:
                trail.record_risk(str(output), report.as_dict())
        except DicomveilError as exc:
            raise fail(f"audit: {exc}") from None
    raise typer.Exit(0 if report.ok else 1)


def print_risk(report: RiskReport) -> None:
    """The report on the terminal: counts, what makes subjects unique, the proposals.

    Parameters
    ----------
    report : RiskReport
        The assessment.
    """
    err.print(
        f"{report.subjects} subject(s) in {report.files} file(s) ({report.unreadable} "
        f"unreadable), {report.classes} class(es) over: {', '.join(report.quasi)}",
        highlight=False,
    )
    verdict = "ok" if report.ok else "below k" if report.subjects else "nothing to assess"
    out.print(
        f"k-anonymity: k = {report.k} (wanted {report.wanted_k}: {verdict}); "
        f"{report.below_k} subject(s) ({report.share_below_k:.1%}) in classes below "
        f"{report.wanted_k}; {report.unique} unique",
        highlight=False,
    )
    if report.makes_unique:
        table = Table("quasi-identifier", "unique subjects it makes unique", title=None)
        for keyword, n in report.makes_unique.items():
            table.add_row(keyword, str(n))
        out.print(table)
    for n, step in enumerate(report.steps, 1):
        out.print(
            f"generalise {n}: {step.rule.describe()} -> k = {step.k}, {step.below_k} below",
            highlight=False,
        )
    if not report.ok:
        if report.reaches is not None and report.reaches.active and report.subjects:
            out.print(  # markup off: "[generalize]" is text here, not a style
                f"proposal: {report.reaches.describe()} reaches k = {report.wanted_k}; add "
                f"to the profile:\n{report.reaches.toml()}",
                highlight=False,
                markup=False,
            )
        elif report.subjects:
            out.print("no generalisation tried reaches k: drop a quasi-identifier", highlight=False)
