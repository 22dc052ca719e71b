"""``verify``: check de-identified output as a stranger would (see :mod:`dicomveil.qc.verify`).

Exit codes: 0 pass, 1 findings, 2 could not check (no output folder, a bad profile or map).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from dicomveil.cli._app import app, err, fail, flag, load_profile, out
from dicomveil.cli._args import OptionArg, ProfileArg, WorkersArg
from dicomveil.cli._help import Command
from dicomveil.cli._json import write_report
from dicomveil.cli._qc import RunMapsArg
from dicomveil.errors import DicomveilError
from dicomveil.qc.verify import IodCheck, Verdict, VerifyReport


@app.command("verify", cls=Command)
def verify_command(
    output: Annotated[
        Path, typer.Argument(metavar="OUTPUT", help="The de-identified output folder.")
    ],
    against: Annotated[
        list[Path] | None,
        typer.Option(
            "--against",
            metavar="INPUT",
            help="An original input (file, folder or .zip), repeated for each input the run "
            "had: find their identifying values; matched to the files through --map-dir, or "
            "else by pixel data.",
        ),
    ] = None,
    profile: ProfileArg = "ps3.15-basic",
    option: OptionArg = None,
    map_dir: RunMapsArg = None,
    json_file: Annotated[
        Path | None,
        typer.Option(
            "--json",
            metavar="FILE",
            help="Also write the report as JSON (schema: verify.schema.json).",
        ),
    ] = None,
    show_values: Annotated[
        bool,
        flag("--show-values", "Print the identifying values found (PHI: do not share the report)."),
    ] = False,
    workers: WorkersArg = 0,
    iod: Annotated[
        IodCheck,
        typer.Option(
            metavar="|".join(IodCheck),
            help="dciodvfy, where installed: once per distinct file structure, on every file, "
            "or off.",
        ),
    ] = IodCheck.STRUCTURE,
    audit: Annotated[
        str | None,
        typer.Option(
            "--audit",
            metavar="DB",
            help="Record this check in the audit trail (SQLite file or postgresql:// URL) and "
            "set the checked subjects' QC status.",
        ),
    ] = None,
    operator: Annotated[
        str | None, typer.Option(metavar="NAME", help="Who checks (default: your OS user name).")
    ] = None,
    risk_k: Annotated[
        int | None,
        typer.Option(
            "--risk-k",
            metavar="K",
            min=1,
            help="Also assess the release's re-identification risk (as 'dicomveil risk "
            "--k K'): printed and in the JSON report; it does not change the exit code.",
        ),
    ] = None,
) -> None:
    """Check OUTPUT: profile conformance, leaks of the originals, references, validity."""
    try:
        chosen = load_profile(profile, option)
    except DicomveilError as exc:
        _write_json(json_file, VerifyReport(profile, 0, problems=(str(exc),)))
        raise fail(str(exc)) from None
    from dicomveil.qc.verify import verify  # the verifier: loaded to run it

    report = verify(
        output,
        against=against,
        profile=chosen,
        map_dir=map_dir,
        show_values=show_values,
        workers=workers,
        iod=iod,
    )
    risk = None
    if risk_k is not None and output.exists():
        from dicomveil.cli.risk import print_risk
        from dicomveil.qc.risk import assess, read_release

        risk = assess(read_release(output, workers=workers), risk_k)
    _write_json(
        json_file, report, private=show_values, risk=None if risk is None else risk.as_dict()
    )
    _print(report)
    if risk is not None:
        print_risk(risk)
    if audit is not None:
        _record(audit, output, operator, report, show_values)
        if risk is not None:
            from dicomveil.qc.audit import AuditTrail

            with AuditTrail.open(audit) as trail:
                trail.record_risk(str(output), risk.as_dict(), operator)
    if report.result is Verdict.COULD_NOT_CHECK:
        raise fail("; ".join(report.problems))
    raise typer.Exit(report.exit_code)


def _record(
    db: str, output: Path, operator: str | None, report: VerifyReport, show_values: bool
) -> None:
    """The check goes into the audit trail; messages only when they carry no values."""
    from dicomveil.qc.audit import AuditTrail

    findings = [
        {
            "file": f.file,
            "path": f.path,
            "check": f.check.value,
            "category": f.category.value,
            **({} if show_values else {"message": f.message}),
        }
        for f in report.findings
    ]
    try:
        with AuditTrail.open(db) as trail:
            number = trail.record_verification(output, operator, report.result.value, findings)
    except DicomveilError as exc:
        raise fail(str(exc)) from None
    err.print(f"recorded as verification {number} in the audit trail")


def _write_json(
    path: Path | None,
    report: VerifyReport,
    private: bool = False,
    risk: dict[str, object] | None = None,
) -> None:
    """The ``--json`` report (schema ``verify.schema.json``); owner-only with values."""
    if path is not None:
        body = report.to_dict()
        if risk is not None:
            body = {**body, "risk": risk}
        write_report(path, "verify", body, private=private)


def _print(report: VerifyReport) -> None:
    if report.findings:
        table = Table(title=f"findings ({len(report.findings)})")
        for column in ("file", "check", "category", "element", "message"):
            table.add_column(column)
        for f in sorted(report.findings, key=lambda f: (f.file, f.check, f.path)):
            table.add_row(
                Text(f.file), f.check.value, f.category.value, Text(f.path), Text(f.message)
            )
        out.print(table)
    if report.risk_flags:
        table = Table(title=f"risk flags ({len(report.risk_flags)}): review before sharing")
        for column in ("file", "flag", "element", "message"):
            table.add_column(column)
        for r in sorted(report.risk_flags, key=lambda r: (r.file, r.flag, r.path)):
            table.add_row(Text(r.file), r.flag.value, Text(r.path), Text(r.message))
        out.print(table)
    for note in report.notes:
        err.print(f"note: {note}", highlight=False)
    out.print(
        Text(
            f"verify: {report.result.value}: {report.files} file(s), {len(report.findings)} "
            f"finding(s), {len(report.risk_flags)} risk flag(s), profile {report.profile}"
        )
    )
