"""Command-line pieces of the clean-pixel-data option: its options and its report table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dicomveil.cleaners.pixels import Box, PixelOutcome, PixelSettings
from dicomveil.errors import DicomveilError

PreviewDirArg = Annotated[
    Path | None,
    typer.Option(
        "--preview-dir",
        metavar="DIR",
        help="clean-pixel-data: write a PNG of each redacted frame, boxes outlined, for "
        "human QC (outside the output).",
    ),
]
PixelFillArg = Annotated[
    int | None,
    typer.Option(
        "--pixel-fill",
        metavar="VALUE",
        help="clean-pixel-data: the stored value painted over text (default: black).",
    ),
]
PixelRulesArg = Annotated[
    Path | None,
    typer.Option(
        "--pixel-rules",
        metavar="FILE.toml",
        help="clean-pixel-data: more rectangle rules (format of data/pixel-rules.toml).",
    ),
]


def pixel_settings(
    *,
    preview_dir: Path | None = None,
    fill: int | None = None,
    rules: Path | None = None,
    output: str | None = None,
) -> PixelSettings:
    """Make the clean-pixel-data settings from the command line, checked now.

    Parameters
    ----------
    preview_dir : Path or None
        ``--preview-dir``: where PNG previews are written; outside the output.
    fill : int or None
        ``--pixel-fill``: the stored value painted over text.
    rules : Path or None
        ``--pixel-rules``: more rectangle rules.
    output : str or None
        The run's output (a folder or a URL), to refuse previews inside it.

    Returns
    -------
    PixelSettings
        The settings, their rules loaded and validated.

    Raises
    ------
    DicomveilError
        Previews inside the output folder, or an impossible setting.
    ProfileError
        The rules file cannot be used (a bad rules file stops the run before it starts).
    """
    if preview_dir is not None and output is not None and "://" not in output:
        out, preview = Path(output).resolve(), preview_dir.resolve()
        if preview == out or out in preview.parents:
            raise DicomveilError("--preview-dir must be outside the shareable output folder")
    try:
        settings = PixelSettings(fill=fill, rules_file=rules, preview_dir=preview_dir)
    except ValueError as exc:
        raise DicomveilError(str(exc)) from None
    settings.rules()  # load and validate now
    return settings


def pixel_table(report: PixelOutcome, *, show_values: bool) -> Table:
    """Tabulate the boxes found and redacted per frame.

    Parameters
    ----------
    report : PixelOutcome
        What the pixel step did to one file.
    show_values : bool
        Add the recognised text (PHI: ``--show-values`` only).

    Returns
    -------
    Table
        One row per box found, with the padded box that redacted it; the header signals as
        its caption.
    """
    table = Table(title=f"pixels: {report.verdict}")
    for column in ("frame", "found by", "box", "redacted as"):
        table.add_column(column)
    if show_values:
        table.add_column("text read")
    table.caption = "header signals: " + ", ".join(report.signals) if report.signals else None
    for frame in report.frames:
        for detection in frame.found:
            padded = [b for b in frame.redacted if _inside(detection.box, b)]
            cells = [
                str(frame.frame + 1),
                detection.source
                + (f" ({detection.confidence:.0f}%)" if detection.confidence is not None else ""),
                detection.box.text(),
                padded[0].text() if padded else "-",
            ]
            if show_values:
                cells.append(detection.text)
            table.add_row(*cells)
    return table


def _inside(inner: Box, outer: Box) -> bool:
    return (
        outer.x <= inner.x
        and outer.y <= inner.y
        and inner.right <= outer.right
        and inner.bottom <= outer.bottom
    )
