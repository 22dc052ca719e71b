"""Progress of a long ``dicomveil run``: files/s, bytes/s, done/total and ETA.

Three forms (``--progress``): a live bar on a terminal (``bar``), a line to stderr every
``--progress-every`` seconds (``lines``, the default when stderr is no terminal), or one
JSON object per line on stdout (``json``: ``{"event": "progress", ...}`` at the same pace and
a last ``{"event": "finished", ...}``) for orchestration. ``auto`` picks ``bar`` or ``lines``.
The total is known once the walk of the inputs has finished; until then there is no ETA.
Nothing shown names an input.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from dicomveil.runs.results import FileResult


class ProgressMode(StrEnum):
    """How progress is shown (``--progress``)."""

    AUTO = "auto"
    BAR = "bar"
    LINES = "lines"
    JSON = "json"
    NONE = "none"


@dataclass
class Meter:
    """Counts of a run so far: files, bytes written, the total once known."""

    started: float = field(default_factory=time.monotonic)
    done: int = 0
    bytes: int = 0
    total: int | None = None

    def add(self, result: FileResult) -> None:
        """Count one result."""
        self.done += 1
        self.bytes += result.size

    def snapshot(self) -> dict[str, float | int | None]:
        """The figures: done, total, elapsed, files/s, bytes/s, ETA (seconds or None)."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / elapsed
        eta = None
        if self.total is not None and rate > 0:
            eta = round(max(self.total - self.done, 0) / rate, 1)
        return {
            "done": self.done,
            "total": self.total,
            "elapsed_s": round(elapsed, 1),
            "files_per_s": round(rate, 1),
            "bytes_per_s": round(self.bytes / elapsed),
            "eta_s": eta,
        }

    def line(self) -> str:
        """The figures as one line of text."""
        s = self.snapshot()
        of = f"/{s['total']}" if s["total"] is not None else " (still finding inputs)"
        eta = f", ETA {_duration(float(s['eta_s']))}" if s["eta_s"] is not None else ""
        megabytes = float(s["bytes_per_s"] or 0) / 1e6
        return (
            f"progress: {s['done']}{of} files, {s['files_per_s']:.0f} files/s, "
            f"{megabytes:.1f} MB/s, {_duration(float(s['elapsed_s'] or 0))} elapsed{eta}"
        )


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


Tick = Callable[[FileResult], None]


@dataclass
class Shown:
    """What a run calls while it runs: ``tick`` per result, ``total`` once the walk ends."""

    tick: Tick
    total: Callable[[int], None]
    meter: Meter


@contextmanager
def showing(
    mode: ProgressMode, err: Console, *, every: float, dry: bool, report: Tick
) -> Iterator[Shown]:
    """Show the progress of the run in the block; ``report`` is called with every result
    (lines printed while a bar is live go above it).

    Parameters
    ----------
    mode : ProgressMode
        How (``auto``: a bar on a terminal, else lines).
    err : rich.console.Console
        Where the bar and the lines go.
    every : float
        Seconds between two lines or JSON events.
    dry : bool
        A dry run ("deciding" rather than "de-identifying").
    report : callable
        Called with each result.

    Yields
    ------
    Shown
        The callbacks to give the run.
    """
    if mode is ProgressMode.AUTO:
        mode = ProgressMode.BAR if err.is_terminal else ProgressMode.LINES
    meter = Meter()
    if mode is ProgressMode.BAR:
        with Progress(
            TextColumn("deciding" if dry else "de-identifying"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=True,
        ) as bar:
            task = bar.add_task("files", total=None, rate="")

            def tick_bar(result: FileResult) -> None:
                meter.add(result)
                s = meter.snapshot()
                bar.update(task, advance=1, rate=f"{s['files_per_s']:.0f} files/s")
                report(result)

            def total_bar(n: int) -> None:
                meter.total = n
                bar.update(task, total=n)

            yield Shown(tick_bar, total_bar, meter)
        return
    last = [time.monotonic()]

    def emit(event: str) -> None:
        if mode is ProgressMode.JSON:
            sys.stdout.write(json.dumps({"event": event, **meter.snapshot()}) + "\n")
            sys.stdout.flush()
        elif mode is ProgressMode.LINES and event == "progress":
            err.print(meter.line(), highlight=False)

    def tick(result: FileResult) -> None:
        meter.add(result)
        report(result)
        now = time.monotonic()
        if now - last[0] >= every:
            last[0] = now
            emit("progress")

    def total(n: int) -> None:
        meter.total = n

    yield Shown(tick, total, meter)
    emit("finished")
