"""The report of ``diff``: per file pair every element compared, and across the batch one row
per element path and kind of change.

Values are PHI: the report holds them (truncated) but shows them only when asked
(``show_values``). Day offsets are shown: with the de-identified files they reveal the original
dates, so a report belongs with the maps, not with the shared data. Messages name files,
never values read from them.

The report renders itself as plain text (:meth:`DiffReport.to_text`); the HTML page is
:func:`dicomveil.qc.diff.html.render_html`'s, which depends on this model (never the reverse).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from dicomveil.qc.diff.steps import (
    _KIND_ORDER,
    ChangeKind,
    MatchMethod,
    StepPath,
    _path_keyword,
    _path_label,
    _path_text,
)

__all__ = ["DiffReport", "ElementChange", "FilePair", "SummaryRow"]


@dataclass(frozen=True)
class ElementChange:
    """One element of one file pair.

    Attributes
    ----------
    steps : StepPath
        The element's path, step by step.
    path : str
        The path as text, with item indices: ``(0040,0275)[0]>(0040,1001)``.
    keyword : str
        The path's keywords (empty when none is known).
    change : ChangeKind
        What de-identification did to it.
    detail : str
        More about the change (``+12 d``, ``as uids.csv maps it``, ...).
    before, after : str
        The values, as short text: PHI.
    """

    steps: StepPath = field(repr=False)
    path: str  # with item indices: (0040,0275)[0]>(0040,1001)
    keyword: str
    change: ChangeKind
    detail: str = ""
    before: str = field(default="", repr=False)
    after: str = field(default="", repr=False)


@dataclass(frozen=True)
class FilePair:
    """An original file, its de-identified file, and every element compared.

    Attributes
    ----------
    original, deidentified : pathlib.Path
        The two files.
    matched_by : MatchMethod
        How they were paired.
    changes : tuple of ElementChange
        Every element of either file, in tag order.
    date_offset_days : int or None
        The whole-day shift found in this pair.
    expected_offset_days : int or None
        The shift the map's ``date_offsets.csv`` records for the patient.
    """

    original: Path
    deidentified: Path
    matched_by: MatchMethod
    changes: tuple[ElementChange, ...]
    date_offset_days: int | None = None  # the whole-day shift found in this pair
    expected_offset_days: int | None = None  # from the map's date_offsets.csv

    def count(self, kind: ChangeKind) -> int:
        """How many elements of the pair had one kind of change.

        Parameters
        ----------
        kind : ChangeKind
            The kind of change.

        Returns
        -------
        int
            The number of elements.
        """
        return sum(1 for c in self.changes if c.change is kind)

    @property
    def offset_disagrees(self) -> bool:
        """Dates moved by another offset than the map's date_offsets.csv records."""
        return (
            self.date_offset_days is not None
            and self.expected_offset_days is not None
            and self.date_offset_days != self.expected_offset_days
        )


@dataclass(frozen=True)
class SummaryRow:
    """One element path and one kind of change, across the batch: ``count`` of ``total``
    occurrences of the element (in either file of a pair).

    Attributes
    ----------
    path, keyword, label : str
        The element path as text, its keywords, and the two mixed (keywords of public
        elements, text of the others).
    change : ChangeKind
        The kind of change.
    count, total : int
        Occurrences with this change, and of the element at all.
    detail : str
        The details of the changes, joined (with their counts when they differ).
    """

    path: str
    keyword: str
    label: str
    change: ChangeKind
    count: int
    total: int
    detail: str = ""

    @property
    def phrase(self) -> str:
        """The change in words: ``replaced``, ``shifted +12 d``, ``emptied (detail)``."""
        if self.change is ChangeKind.SHIFTED and self.detail:
            return f"shifted {self.detail}"
        return f"{self.change.value} ({self.detail})" if self.detail else self.change.value

    def __str__(self) -> str:
        return f"{self.label}: {self.phrase} in {self.count}/{self.total}"


@dataclass
class DiffReport:
    """What :func:`~dicomveil.qc.diff.diff` found.

    Attributes
    ----------
    original, deidentified : pathlib.Path
        The two sides compared (a file or a folder each).
    map_dir : pathlib.Path or None
        The run's map folder, when one was given.
    pairs : list of FilePair
        The matched pairs.
    unmatched_original, unmatched_deidentified : list of pathlib.Path
        The files of either side that matched none of the other.
    skipped : list of (pathlib.Path, str)
        The files that are not DICOM or cannot be read, with the reason.
    """

    original: Path
    deidentified: Path
    map_dir: Path | None = None
    pairs: list[FilePair] = field(default_factory=list)
    unmatched_original: list[Path] = field(default_factory=list)
    unmatched_deidentified: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def summary_rows(self) -> list[SummaryRow]:
        """The rows of the summary: per element path and kind of change, across every pair.

        Returns
        -------
        list of SummaryRow
            The rows, in tag order (then in the order of :class:`ChangeKind`).
        """
        totals: Counter[StepPath] = Counter()
        details: dict[tuple[StepPath, ChangeKind], Counter[str]] = {}
        for pair in self.pairs:
            for change in pair.changes:
                totals[change.steps] += 1
                details.setdefault((change.steps, change.change), Counter())[change.detail] += 1
        return [
            SummaryRow(
                path=_path_text(steps),
                keyword=_path_keyword(steps),
                label=_path_label(steps),
                change=kind,
                count=sum(counted.values()),
                total=totals[steps],
                detail=_join_details(counted),
            )
            for (steps, kind), counted in sorted(
                details.items(),
                key=lambda kv: ([s.sort_key for s in kv[0][0]], _KIND_ORDER[kv[0][1]]),
            )
        ]

    def kind_counts(self) -> Counter[ChangeKind]:
        """How many element occurrences each kind of change has, across every pair.

        Returns
        -------
        collections.Counter
            Kind of change -> number of element occurrences.
        """
        return Counter(c.change for pair in self.pairs for c in pair.changes)

    def match_counts(self) -> Counter[MatchMethod]:
        """How many pairs each way of matching made.

        Returns
        -------
        collections.Counter
            Match method -> number of pairs.
        """
        return Counter(pair.matched_by for pair in self.pairs)

    def headline(self) -> str:
        """One line: the pairs matched (and how), the unmatched files, the files skipped.

        Returns
        -------
        str
            The line, without a newline.
        """
        methods = ", ".join(f"{m.value} {n}" for m, n in sorted(self.match_counts().items()))
        text = f"{len(self.pairs)} file pair(s) matched" + (f" ({methods})" if methods else "")
        text += (
            f"; unmatched: {len(self.unmatched_original)} original, "
            f"{len(self.unmatched_deidentified)} de-identified"
        )
        if self.skipped:
            text += f"; {len(self.skipped)} file(s) not compared (not DICOM or unreadable)"
        return text

    def to_text(self, *, show_values: bool = False) -> str:
        """The report as plain text: the headline, one line per summary row, the unmatched
        files, and with ``show_values`` each pair's changed elements with their values.

        Parameters
        ----------
        show_values : bool, default False
            Also show the values before and after (PHI).

        Returns
        -------
        str
            The text, ending with a newline.
        """
        lines = [
            f"dicomveil diff: {self.original} -> {self.deidentified}",
            self.headline(),
            "",
        ]
        lines += [str(row) for row in self.summary_rows()]
        lines += _offset_lines(self)
        lines += _file_lines("unmatched original files", self.unmatched_original)
        lines += _file_lines("unmatched de-identified files", self.unmatched_deidentified)
        if self.skipped:
            lines += ["", "not compared:"]
            lines += [f"  {path}: {reason}" for path, reason in self.skipped]
        if show_values:
            for pair in self.pairs:
                lines += ["", f"{pair.original} -> {pair.deidentified} ({pair.matched_by})"]
                for c in pair.changes:
                    if c.change is not ChangeKind.KEPT:
                        lines.append(
                            f"  {c.path} {c.keyword}: {c.change}: {c.before!r} -> {c.after!r}"
                        )
        return "\n".join(lines) + "\n"


def _join_details(counted: Counter[str]) -> str:
    if len(counted) == 1:
        return next(iter(counted))
    return "; ".join(f"{d or 'no detail'} ({n})" for d, n in sorted(counted.items()))


def _offset_lines(report: DiffReport) -> list[str]:
    wrong = [p for p in report.pairs if p.offset_disagrees]
    if not wrong:
        return []
    lines = ["", "dates shifted by another offset than date_offsets.csv records:"]
    lines += [f"  {p.original} -> {p.deidentified}" for p in wrong]
    return lines


def _file_lines(title: str, paths: list[Path]) -> list[str]:
    if not paths:
        return []
    return ["", f"{title}:", *(f"  {p}" for p in paths)]
