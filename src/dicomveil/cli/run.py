"""``run``: de-identify INPUT... into OUTPUT (or, with ``--dry-run``, decide and write nothing).

What it prints, on stderr: a header (version, profile, key fingerprint); one line per
withheld, skipped or failed file (``withheld <input>: <reason>``), on a terminal above the
progress bar too; with ``-v`` one line per written file as well; then the counts and the
reasons. ``-q`` keeps only errors (failed files among them) and the counts.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dicomveil._version import __version__
from dicomveil.cli._app import app, err, fail, flag, load_key, load_profile, option
from dicomveil.cli._args import CrosswalkArg, KeyArg, OptionArg, ProfileArg, WorkersArg
from dicomveil.cli._help import Command, choice
from dicomveil.cli._json import JsonArg, write_report
from dicomveil.cli._pixels import PixelFillArg, PixelRulesArg, PreviewDirArg, pixel_settings
from dicomveil.cli._progress import ProgressMode, showing
from dicomveil.errors import DicomveilError
from dicomveil.identity.crosswalk import Crosswalk
from dicomveil.io.layout import DEFAULT_LAYOUT, FIELDS, Layout
from dicomveil.profiles import Profile
from dicomveil.runs import cluster
from dicomveil.runs.batch import (
    FileResult,
    Outcome,
    RunConfig,
    RunSummary,
    run,
)
from dicomveil.runs.dicomdir import write_dicomdir
from dicomveil.runs.journal import default_state_dir
from dicomveil.runs.locations import check_locations
from dicomveil.runs.maps import GATE_PREFIX
from dicomveil.runs.output_key import check_output_key
from dicomveil.standard.options import Option
from dicomveil.standard.tables import EDITION

if TYPE_CHECKING:
    from dicomveil.identity.envelope import Recipient

Progressed = Callable[[FileResult], None]


@dataclass(frozen=True)
class _Say:
    """How much a run prints (``-q``, ``-v``), and whether it is a dry run."""

    quiet: bool = False
    verbose: bool = False
    dry: bool = False
    output: str = ""  # the output folder as typed: written files are named below it

    def note(self, text: str) -> None:
        if not self.quiet:
            err.print(text)

    def result(self, result: FileResult) -> None:
        """One file's line, if this verbosity shows it (never a value read from the file)."""
        if result.outcome is Outcome.FAILED:
            err.print(f"failed {result.task.display}: {result.reason}", style="red")
        elif result.outcome is Outcome.WRITTEN:
            if self.verbose:
                verb = "would write" if self.dry else "written"
                notes = f" ({result.reason})" if result.reason else ""
                target = _below(self.output, result.output)
                err.print(f"{verb} {result.task.display} -> {target}{notes}")
        elif not self.quiet:
            err.print(f"{result.outcome.value} {result.task.display}: {result.reason}")

    def summary(self, summary: RunSummary, *, gated: bool = False) -> None:
        counts = ", ".join(f"{o.value} {summary.count(o)}" for o in Outcome)
        label = "summary (dry run, nothing written)" if self.dry else "summary"
        err.print(f"{label}: {counts}")
        if gated:
            err.print(f"release gate: {stopped(summary)} written file(s) stopped by the verifier")
        if self.quiet:
            return
        for outcome in (Outcome.WITHHELD, Outcome.SKIPPED):
            for reason, count in sorted(summary.reasons(outcome).items()):
                err.print(f"  {outcome.value} {count}: {reason}")


@app.command("run", cls=Command)
def run_command(
    paths: Annotated[
        list[str],
        typer.Argument(
            metavar="INPUT... OUTPUT",
            help="Files, folders or .zip archives, then the output folder; each may be an "
            "fsspec URL (s3://bucket/prefix).",
        ),
    ],
    profile: ProfileArg = "ps3.15-basic",
    option: OptionArg = None,
    key: KeyArg = None,
    crosswalk: CrosswalkArg = None,
    map_dir: Annotated[
        Path | None,
        option("DIR", "Write patient, UID and date-offset maps here (outside the output)."),
    ] = None,
    layout: Annotated[
        str, option("TEMPLATE", "Output path template; fields: " + ", ".join(FIELDS))
    ] = DEFAULT_LAYOUT,
    workers: WorkersArg = 0,
    dicomdir: Annotated[
        bool,
        flag(
            "--dicomdir",
            "Write a fresh DICOMDIR for the output (files get DICOMDIR-compatible names).",
        ),
    ] = False,
    audit: Annotated[
        str | None,
        option("DB", "Record the run in this audit database (SQLite file or postgresql:// URL)."),
    ] = None,
    operator: Annotated[
        str | None, option("NAME", "With --audit: who runs it (default: your OS user name).")
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
        int,
        typer.Option(metavar="N", help="With --dask or URLs: files per task (0: automatic)."),
    ] = 0,
    preview_dir: PreviewDirArg = None,
    pixel_fill: PixelFillArg = None,
    pixel_rules: PixelRulesArg = None,
    json_report: JsonArg = None,
    dry_run: Annotated[
        bool,
        flag(
            "--dry-run",
            "Decide every file (written, withheld, skipped, failed, with reasons) and write "
            "nothing: no output files, maps, DICOMDIR, previews or audit records.",
        ),
    ] = False,
    allow_other_key: Annotated[
        bool,
        flag(
            "--allow-other-key",
            "Write into an output folder that another key wrote (two sets of pseudonyms).",
        ),
    ] = False,
    gate: Annotated[
        bool | None,
        typer.Option(
            "--verify/--no-verify",
            help="The release gate: the verifier checks each written file against its input "
            "first and withholds (moves out of OUTPUT) any it flags. Default: the profile's "
            "(on in neuro-research).",
        ),
    ] = None,
    redact_paths: Annotated[
        bool,
        flag(
            "--redact-paths",
            "Name inputs by a keyed label (input-3f9c...), not their path, in messages, the "
            "--json report and the audit trail; --map-dir gets paths.csv to look labels up.",
        ),
    ] = False,
    recipient: Annotated[
        list[Path] | None,
        option(
            "CERT.pem",
            "With --option reversible: a recipient's X.509 certificate (RSA); whoever holds "
            "its private key can restore the original values (repeatable).",
        ),
    ] = None,
    resume: Annotated[
        bool,
        flag(
            "--resume",
            "Skip the inputs an earlier run into OUTPUT finished (same key and settings, input "
            "unchanged), as its journal records; say how many.",
        ),
    ] = False,
    state_dir: Annotated[
        Path | None,
        option(
            "DIR",
            "Where the run journal goes (outside the output; default: one folder per output "
            "under $XDG_STATE_HOME/dicomveil/runs).",
        ),
    ] = None,
    progress: Annotated[
        ProgressMode,
        choice(
            ProgressMode,
            "Progress: a bar on a terminal, else a line every --progress-every seconds "
            "(auto); json: events on stdout; none.",
        ),
    ] = ProgressMode.AUTO,
    progress_every: Annotated[
        float, typer.Option(metavar="SECONDS", help="Seconds between progress lines.", min=0.1)
    ] = 10.0,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only errors and the final counts.")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also print a line per written file.")
    ] = False,
) -> None:
    """De-identify INPUT... into OUTPUT."""
    if len(paths) < 2:
        raise fail("give at least one input and the output folder")
    if quiet and verbose:
        raise fail("give --quiet or --verbose, not both")
    if operator is not None and audit is None:
        raise fail("--operator goes with --audit DB")
    inputs, output = paths[:-1], paths[-1]
    local = not any(cluster.is_url(p) for p in paths)
    if cluster.is_url(output) and (audit is not None or dicomdir):
        raise fail("--audit and --dicomdir need a local output folder")
    if resume and (dry_run or not local or dask is not None):
        raise fail("--resume goes with a local run into a local output folder, not --dry-run")
    say = _Say(quiet=quiet, verbose=verbose, dry=dry_run, output=output)
    shown = ProgressMode.NONE if quiet and progress is ProgressMode.AUTO else progress
    spool = _Spool(json_report) if json_report is not None else None
    try:
        runner = cluster.runner_for(
            inputs,
            output,
            address=dask,
            storage_options=storage_option or [],
            batch_size=batch_size,
        )
        if dry_run and runner is not None:
            raise fail("--dry-run works on local inputs and outputs, without --dask")
        chosen = load_profile(profile, option)
        recipients = _recipients(recipient or [])
        if recipients and Option.REVERSIBLE not in chosen.options:
            raise fail("--recipient goes with --option reversible")
        secret = load_key(key)
        walk = Crosswalk.from_csv(crosswalk) if crosswalk else None
        pixels = pixel_settings(
            preview_dir=preview_dir, fill=pixel_fill, rules=pixel_rules, output=output
        )
        config = RunConfig(
            profile=chosen,
            key=secret,
            output=Path(output),
            layout=Layout(layout),
            crosswalk=walk,
            map_dir=map_dir,
            workers=workers,
            today=_dt.date.today(),
            pixels=replace(pixels, preview_dir=None) if dry_run else pixels,
            dry_run=dry_run,
            redact_paths=redact_paths,
            allow_other_key=allow_other_key,
            verify=gate,
            keep_results=dicomdir,
            state_dir=(state_dir or default_state_dir(Path(output)))
            if local and runner is None and not dry_run
            else None,
            resume=resume,
            recipients=recipients,
        )
        say.note(
            f"dicomveil {__version__}: profile {chosen.name} (PS3.15 {EDITION}), key "
            f"{secret.fingerprint}"
        )
        if local:
            check_locations([Path(p) for p in inputs], config.output, map_dir)
        if not cluster.is_url(output):
            check_output_key(
                config.output,
                secret.fingerprint,
                allow_other=allow_other_key,
                record=not dry_run,
            )
        if dry_run:
            say.note(
                "dry run: deciding every file; nothing is written (no output files, maps, "
                "DICOMDIR, previews or audit records)"
            )
        summary = _recorded_run(
            inputs, config, runner, None if dry_run else audit, operator, say,
            _Shown(shown, progress_every, spool),
        )  # fmt: skip
    except DicomveilError as exc:
        if spool is not None:
            spool.close()
        raise fail(_hide_inputs(str(exc), inputs) if redact_paths else str(exc)) from None
    if dicomdir and summary.written and not dry_run:
        try:
            write_dicomdir(Path(output), summary)
            say.note("wrote a fresh DICOMDIR")
        except DicomveilError as exc:
            err.print(f"DICOMDIR not written: {exc}", style="bold red")
            raise typer.Exit(1) from None
    say.summary(summary, gated=config.verifying)
    if json_report is not None and spool is not None:
        body = _report(summary, chosen, dry_run, gated=config.verifying)
        try:
            write_report(json_report, "run", body, private=False, items=("files", spool.read()))
        finally:
            spool.close()
    raise typer.Exit(0 if summary.ok else 1)


@dataclass(frozen=True)
class _Shown:
    """How the run's progress is shown, and where ``--json`` spools its per-file records."""

    mode: ProgressMode
    every: float
    spool: _Spool | None


def _recorded_run(
    inputs: list[str],
    config: RunConfig,
    runner: cluster.Runner | None,
    audit: str | None,
    operator: str | None,
    say: _Say,
    shown: _Shown,
) -> RunSummary:
    """The run itself, recorded in the audit trail with ``--audit``."""
    if audit is None:  # SQLAlchemy (a fifth of the start-up) is loaded only to record a run
        return _with_progress(inputs, config, runner, say, shown)
    from dicomveil.qc.audit import recording

    with recording(audit, config, operator=operator) as recorder:
        summary = _with_progress(inputs, config, runner, say, shown, audit=recorder)
    if recorder is not None:
        say.note(f"audit: run {recorder.run_id} in {recorder.trail.location}")
    return summary


def _with_progress(
    inputs: list[str],
    config: RunConfig,
    runner: cluster.Runner | None,
    say: _Say,
    shown: _Shown,
    *,
    audit: Progressed | None = None,
) -> RunSummary:
    """Run with a callback that records and prints each file's result, under the progress
    display (:mod:`dicomveil.cli._progress`)."""
    spool = shown.spool

    def report(result: FileResult) -> None:
        if audit is not None:
            audit(result)
        if spool is not None:
            spool.add(result, say.output)
        say.result(result)

    with showing(shown.mode, err, every=shown.every, dry=say.dry, report=report) as live:
        if runner is not None:
            return runner(config, live.tick)
        summary = run([Path(p) for p in inputs], config, progress=live.tick, on_total=live.total)
    if summary.resumed:
        say.note(f"resumed: {summary.resumed} input(s) skipped, done by an earlier run")
    return summary


class _Spool:
    """The ``--json`` report's per-file records, spooled to a temporary file (one JSON
    object a line) beside the report while the run goes on: memory stays flat."""

    def __init__(self, report: Path) -> None:
        try:
            self._file = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed by close)
                "w+", encoding="utf-8", prefix=f".{report.name}.", suffix=".files",
                dir=report.parent,
            )  # fmt: skip
        except OSError as exc:
            raise fail(f"cannot write {report} ({exc.strerror or type(exc).__name__})") from None

    def add(self, result: FileResult, output: str) -> None:
        """Spool one input's record."""
        record = {
            "input": result.task.display,
            "outcome": result.outcome.value,
            "reason": result.reason,
            "output": _relative(output, result.output)
            if result.outcome is Outcome.WRITTEN
            else None,
        }
        try:
            self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        except OSError as exc:  # a full disk: the run stops with the reason, no traceback
            reason = exc.strerror or type(exc).__name__
            raise DicomveilError(f"cannot write the --json report's records ({reason})") from None

    def read(self) -> Iterator[Any]:
        """The records, in the order they were spooled."""
        self._file.flush()
        self._file.seek(0)
        for line in self._file:
            yield json.loads(line)

    def close(self) -> None:
        """Remove the spool file."""
        self._file.close()


def _hide_inputs(message: str, inputs: list[str]) -> str:
    """``message`` with each input as typed replaced by ``input <n>`` (``--redact-paths``:
    a run-level error names the input by its place on the command line)."""
    forms = [(form, n) for n, typed in enumerate(inputs, 1) for form in {typed, str(Path(typed))}]
    for form, n in sorted(forms, key=lambda pair: -len(pair[0])):
        pattern = rf"(?<!\S){re.escape(form)}(?:/[^\s:]*)?(?=$|[\s:!])"
        message = re.sub(pattern, f"input {n}", message)
    return message


def _relative(output: str, target: Path | None) -> str | None:
    """A written file's path relative to the output folder (POSIX); as is when not below it
    (a cluster run's results are relative already)."""
    if target is None:
        return None
    if not target.is_absolute() or cluster.is_url(output):
        return target.as_posix()
    try:
        return target.relative_to(Path(output).resolve()).as_posix()
    except ValueError:
        return str(target)


def _below(output: str, target: Path | None) -> str:
    """A written file named below the output folder as the user typed it."""
    relative = _relative(output, target)
    if relative is None or Path(relative).is_absolute():
        return str(relative)
    if cluster.is_url(output):
        return f"{output.rstrip('/')}/{relative}"
    return str(Path(output) / relative)


def stopped(summary: RunSummary) -> int:
    """How many files the release gate stopped (withheld with its reason)."""
    reasons = summary.reasons(Outcome.WITHHELD)
    return sum(n for reason, n in reasons.items() if reason.startswith(GATE_PREFIX))


def _report(
    summary: RunSummary, profile: Profile, dry: bool, *, gated: bool = False
) -> dict[str, object]:
    """The run's outcomes for ``--json`` (schema ``run.schema.json``): counts, reasons; the
    per-file records (the input as given, the outcome, the reason, the output relative to
    the output folder) follow as ``files``, from the spool."""

    return {
        "profile": profile.name,
        "dry_run": dry,
        "release_gate": {"on": gated, "stopped": stopped(summary)},
        "summary": {o.value: summary.count(o) for o in Outcome},
        "resumed": summary.resumed,
        "reasons": {
            o.value: dict(sorted(summary.reasons(o).items()))
            for o in (Outcome.WITHHELD, Outcome.SKIPPED, Outcome.FAILED)
        },
    }


def _recipients(certificates: list[Path]) -> tuple[Recipient, ...]:
    """The ``--recipient`` certificates (``cryptography`` is loaded only when there are)."""
    if not certificates:
        return ()
    from dicomveil.identity.envelope import load_recipient

    return tuple(load_recipient(p) for p in certificates)
