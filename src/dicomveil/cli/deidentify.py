"""``run``, ``profiles``, ``explain``, ``keygen`` and ``version``: the de-identification
commands."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from dicomveil._version import __version__
from dicomveil.cli._app import (
    CrosswalkArg,
    KeyArg,
    OptionArg,
    ProfileArg,
    app,
    err,
    fail,
    flag,
    load_key,
    load_profile,
    out,
)
from dicomveil.cli._pixels import (
    PixelFillArg,
    PixelRulesArg,
    PreviewDirArg,
    pixel_settings,
    pixel_table,
)
from dicomveil.engine import explain as _explain
from dicomveil.errors import DicomveilError
from dicomveil.identity.crosswalk import Crosswalk
from dicomveil.identity.keys import write_key
from dicomveil.io.layout import DEFAULT_LAYOUT, FIELDS, Layout
from dicomveil.profiles import Profile, preset_names
from dicomveil.runs import cluster
from dicomveil.runs.batch import FileResult, Outcome, RunConfig, RunSummary, run
from dicomveil.runs.dicomdir import write_dicomdir
from dicomveil.standard.options import Option
from dicomveil.standard.tables import EDITION


@app.command("run")
def run_command(
    paths: Annotated[
        list[str],
        typer.Argument(
            help="INPUT... OUTPUT: files, folders or .zip archives, then the output folder; "
            "each may be an fsspec URL (s3://bucket/prefix)."
        ),
    ],
    profile: ProfileArg = "ps3.15-basic",
    option: OptionArg = None,
    key: KeyArg = None,
    crosswalk: CrosswalkArg = None,
    map_dir: Annotated[
        Path | None,
        typer.Option(help="Write patient, UID and date-offset maps here (outside the output)."),
    ] = None,
    layout: Annotated[
        str, typer.Option(help="Output path template; fields: " + ", ".join(FIELDS))
    ] = DEFAULT_LAYOUT,
    workers: Annotated[int, typer.Option(help="Worker processes (0: one per core).")] = 0,
    dicomdir: Annotated[
        bool,
        flag(
            "--dicomdir",
            "Write a fresh DICOMDIR for the output (files get DICOMDIR-compatible names).",
        ),
    ] = False,
    audit: Annotated[
        str | None,
        typer.Option(
            metavar="DB",
            help="Record the run in this audit database (SQLite file or postgresql:// URL).",
        ),
    ] = None,
    operator: Annotated[
        str | None, typer.Option(help="With --audit: who runs it (default: your OS user name).")
    ] = None,
    dask: Annotated[
        str | None,
        typer.Option(
            "--dask",
            metavar="ADDRESS|local",
            help="Run on a Dask cluster: a scheduler address, or 'local' (--workers processes).",
        ),
    ] = None,
    storage_option: Annotated[
        list[str] | None,
        typer.Option(
            "--storage-option",
            metavar="KEY=VALUE",
            help="fsspec option for URL locations, e.g. endpoint_url=http://host:9000.",
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(help="With --dask or URLs: files per task (0: automatic).")
    ] = 0,
    preview_dir: PreviewDirArg = None,
    pixel_fill: PixelFillArg = None,
    pixel_rules: PixelRulesArg = None,
    json_report: Annotated[
        Path | None,
        typer.Option(
            "--json",
            metavar="FILE",
            help="Also write the summary and every file's outcome and reason as JSON.",
        ),
    ] = None,
) -> None:
    """De-identify INPUT... into OUTPUT."""
    if len(paths) < 2:
        raise fail("give at least one input and the output folder")
    if operator is not None and audit is None:
        raise fail("--operator goes with --audit DB")
    inputs, output = paths[:-1], paths[-1]
    if cluster.is_url(output) and (audit is not None or dicomdir):
        raise fail("--audit and --dicomdir need a local output folder")
    try:
        runner = cluster.runner_for(
            inputs,
            output,
            address=dask,
            storage_options=storage_option or [],
            batch_size=batch_size,
        )
        chosen = load_profile(profile, option)
        secret = load_key(key)
        walk = Crosswalk.from_csv(crosswalk) if crosswalk else None
        config = RunConfig(
            profile=chosen,
            key=secret,
            output=Path(output),
            layout=Layout(layout),
            crosswalk=walk,
            map_dir=map_dir,
            workers=workers,
            today=_dt.date.today(),
            pixels=pixel_settings(
                preview_dir=preview_dir, fill=pixel_fill, rules=pixel_rules, output=output
            ),
        )
        err.print(
            f"dicomveil {__version__}: profile {chosen.name} (PS3.15 {EDITION}), key "
            f"{secret.fingerprint}",
            highlight=False,
        )
        from dicomveil.qc.audit import recording  # SQLAlchemy: loaded only when a run is recorded

        with recording(audit, config, operator=operator) as recorder:
            summary = _run_with_progress([Path(p) for p in inputs], config, recorder, runner)
        if recorder is not None:
            err.print(f"audit: run {recorder.run_id} in {recorder.trail.location}", highlight=False)
    except DicomveilError as exc:
        raise fail(str(exc)) from None
    if dicomdir and summary.written:
        try:
            write_dicomdir(Path(output), summary)
            err.print("wrote a fresh DICOMDIR", highlight=False)
        except DicomveilError as exc:
            err.print(f"DICOMDIR not written: {exc}", style="bold red")
            raise typer.Exit(1) from None
    _print_summary(summary)
    if json_report is not None:
        try:
            _write_json(json_report, summary, chosen, Path(output))
        except OSError as exc:
            raise fail(f"cannot write {json_report} ({exc.strerror})") from None
    raise typer.Exit(0 if summary.ok else 1)


def _write_json(path: Path, summary: RunSummary, profile: Profile, output: Path) -> None:
    """The run's outcomes as JSON: counts, reasons, and one record per input (the input as
    given, the outcome, the reason, the output relative to the output folder). Written to a
    temporary file first, then moved into place."""
    import json

    def relative(target: Path | None) -> str | None:
        if target is None:
            return None
        try:
            return target.relative_to(output).as_posix()
        except ValueError:
            return str(target)

    document = {
        "dicomveil": __version__,
        "profile": profile.name,
        "summary": {o.value: summary.count(o) for o in Outcome},
        "reasons": {
            o.value: dict(sorted(summary.reasons(o).items()))
            for o in (Outcome.WITHHELD, Outcome.SKIPPED, Outcome.FAILED)
        },
        "files": [
            {
                "input": r.task.display,
                "outcome": r.outcome.value,
                "reason": r.reason,
                "output": relative(r.output) if r.outcome is Outcome.WRITTEN else None,
            }
            for r in summary.results
        ],
    }
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    temporary.replace(path)


def _run_with_progress(
    inputs: list[Path],
    config: RunConfig,
    audit: Callable[[FileResult], None] | None = None,
    runner: cluster.Runner | None = None,
) -> RunSummary:
    def execute(progress: Callable[[FileResult], None]) -> RunSummary:
        if runner is not None:
            return runner(config, progress)
        return run(inputs, config, progress=progress)

    def report(result: FileResult) -> None:
        if audit is not None:
            audit(result)
        if result.outcome is Outcome.FAILED:
            err.print(
                f"failed {result.task.display}: {result.reason}",
                style="red",
                highlight=False,
                markup=False,
            )
        elif result.outcome in (Outcome.WITHHELD, Outcome.SKIPPED) and not err.is_terminal:
            err.print(
                f"{result.outcome.value} {result.task.display}: {result.reason}",
                highlight=False,
                markup=False,
            )

    if not err.is_terminal:
        return execute(report)
    with Progress(
        TextColumn("de-identifying"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task("files", total=None)

        def tick(result: FileResult) -> None:
            bar.advance(task)
            report(result)

        return execute(tick)


def _print_summary(summary: RunSummary) -> None:
    counts = ", ".join(f"{o.value} {summary.count(o)}" for o in Outcome)
    err.print(f"summary: {counts}", highlight=False, markup=False)
    for outcome in (Outcome.WITHHELD, Outcome.SKIPPED):
        for reason, count in sorted(summary.reasons(outcome).items()):
            err.print(f"  {outcome.value} {count}: {reason}", highlight=False, markup=False)


@app.command("profiles")
def profiles_command() -> None:
    """List the named profiles and the options."""
    table = Table(title=f"profiles (PS3.15 {EDITION})")
    table.add_column("name", style="bold")
    table.add_column("description")
    table.add_column("source")
    for name in preset_names():
        p = Profile.named(name)
        table.add_row(name, p.description, p.source)
    out.print(table)
    options = Table(title="options (--option)")
    options.add_column("option", style="bold")
    options.add_column("CID 7050")
    options.add_column("what it does")
    for o in Option:
        options.add_row(o.value, o.code[0] if o.code else "-", o.description)
    out.print(options)


@app.command("explain")
def explain_command(
    file: Annotated[Path, typer.Argument(help="A DICOM file.")],
    profile: ProfileArg = "ps3.15-basic",
    option: OptionArg = None,
    key: KeyArg = None,
    show_values: Annotated[
        bool,
        flag("--show-values", "Also print original and new values (PHI: do not share the output)."),
    ] = False,
    pixel_rules: PixelRulesArg = None,
) -> None:
    """Show, for each element, what the profile would do and why."""
    try:
        chosen = load_profile(profile, option)
        secret = load_key(key)
        explanation = _explain.explain(
            file,
            chosen,
            secret,
            show_values=show_values,
            pixels=pixel_settings(rules=pixel_rules),
        )
    except DicomveilError as exc:
        raise fail(str(exc)) from None
    table = Table(title=f"{chosen.name}: {explanation.verdict}")
    for column in ("element", "tag", "VR", "action", "why"):
        table.add_column(column)
    if show_values:
        table.add_column("before")
        table.add_column("after")
    for row in explanation.rows:
        cells = [row.element, row.tag, row.vr, row.action, row.source]
        if show_values:
            cells += [row.before, row.after]
        table.add_row(*cells)
    out.print(table)
    if explanation.pixels is not None:
        out.print(pixel_table(explanation.pixels, show_values=show_values))


@app.command("keygen")
def keygen_command(
    keyfile: Annotated[Path, typer.Argument(help="Where to write the new key.")],
) -> None:
    """Write a new key readable by its owner only."""
    try:
        new = write_key(keyfile)
    except DicomveilError as exc:
        raise fail(str(exc)) from None
    err.print(
        f"wrote {keyfile} (fingerprint {new.fingerprint}); keep it secret and backed up",
        highlight=False,
    )


@app.command("version")
def version_command() -> None:
    """Print the version and the PS3.15 edition."""
    out.print(f"dicomveil {__version__} (PS3.15 {EDITION})", highlight=False)
