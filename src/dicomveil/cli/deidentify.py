"""``profiles``, ``explain``, ``keygen`` and ``version``: the commands around a run (``run``
itself is :mod:`dicomveil.cli.run`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dicomveil._version import __version__
from dicomveil.cleaners.pixels import Box, PixelOutcome
from dicomveil.cli import run as _run  # noqa: F401  (registered first: run leads the help)
from dicomveil.cli._app import app, err, fail, flag, load_key, load_profile, option, out
from dicomveil.cli._args import KeyArg, OptionArg, ProfileArg
from dicomveil.cli._help import Command
from dicomveil.cli._json import JsonArg, write_report
from dicomveil.cli._pixels import PixelRulesArg, pixel_settings, pixel_table
from dicomveil.engine import explain as _explain
from dicomveil.errors import DicomveilError
from dicomveil.identity.keys import write_key
from dicomveil.profiles import Profile, preset_names
from dicomveil.standard.options import Option
from dicomveil.standard.tables import EDITION


@app.command("profiles", cls=Command)
def profiles_command(json_report: JsonArg = None) -> None:
    """List the named profiles and the options."""
    presets = {name: Profile.named(name) for name in preset_names()}
    table = Table(title=f"profiles (PS3.15 {EDITION})")
    table.add_column("name", style="bold")
    table.add_column("description")
    table.add_column("source")
    for name, p in presets.items():
        table.add_row(name, p.description, p.source)
    out.print(table)
    options = Table(title="options (--option)")
    options.add_column("option", style="bold")
    options.add_column("CID 7050")
    options.add_column("what it does")
    for o in Option:
        options.add_row(o.value, o.code[0] if o.code else "-", o.description)
    out.print(options)
    if json_report is not None:
        body = {
            "edition": EDITION,
            "profiles": [
                {"name": name, "description": p.description, "source": p.source}
                for name, p in presets.items()
            ],
            "options": [
                {
                    "option": o.value,
                    "cid7050": o.code[0] if o.code else None,
                    "description": o.description,
                }
                for o in Option
            ],
        }
        write_report(json_report, "profiles", body, private=False)


@app.command("explain", cls=Command)
def explain_command(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="A DICOM file.")],
    profile: ProfileArg = "ps3.15-basic",
    option: OptionArg = None,
    key: KeyArg = None,
    show_values: Annotated[
        bool,
        flag("--show-values", "Also print original and new values (PHI: do not share the output)."),
    ] = False,
    pixel_rules: PixelRulesArg = None,
    json_report: Annotated[
        Path | None,
        option(
            "FILE",
            "Also write the explanation as JSON (schema: dicomveil/cli/schemas/; owner-only "
            "with --show-values).",
            "--json",
        ),
    ] = None,
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
    if json_report is not None:
        body = {
            "file": str(file),
            "profile": chosen.name,
            "show_values": show_values,
            "verdict": explanation.verdict,
            "elements": [
                {
                    "element": row.element,
                    "tag": row.tag,
                    "vr": row.vr,
                    "action": row.action,
                    "why": row.source,
                    **({"before": row.before, "after": row.after} if show_values else {}),
                }
                for row in explanation.rows
            ],
            "pixels": _pixels_json(explanation.pixels, show_values),
        }
        write_report(json_report, "explain", body, private=show_values)


def _pixels_json(report: PixelOutcome | None, show_values: bool) -> dict[str, object] | None:
    if report is None:
        return None

    def box(b: Box) -> dict[str, int]:
        return {"x": b.x, "y": b.y, "width": b.width, "height": b.height}

    return {
        "verdict": report.verdict,
        "signals": list(report.signals),
        "frames": [
            {
                "frame": frame.frame + 1,
                "found": [
                    {
                        "found_by": d.source,
                        "confidence": d.confidence,
                        "box": box(d.box),
                        **({"text": d.text} if show_values else {}),
                    }
                    for d in frame.found
                ],
                "redacted": [box(b) for b in frame.redacted],
            }
            for frame in report.frames
        ],
    }


@app.command("keygen", cls=Command)
def keygen_command(
    keyfile: Annotated[Path, typer.Argument(metavar="KEYFILE", help="Where to write the new key.")],
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


@app.command("version", cls=Command)
def version_command() -> None:
    """Print the version and the PS3.15 edition."""
    out.print(f"dicomveil {__version__} (PS3.15 {EDITION})", highlight=False)
