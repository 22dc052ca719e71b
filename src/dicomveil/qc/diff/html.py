"""The self-contained HTML report of ``dicomveil diff``: inline CSS, nothing fetched.

The page is the template ``dicomveil/qc/templates/diff_report.html``, rendered with autoescape
(:mod:`dicomveil.qc.templating`): every path, keyword, detail and value is escaped. This module
depends on the report's model (:mod:`dicomveil.qc.diff.model`); the model knows nothing of it.
"""

from __future__ import annotations

from typing import NamedTuple

from dicomveil._version import __version__
from dicomveil.qc.diff.model import DiffReport, ElementChange, FilePair
from dicomveil.qc.diff.steps import ChangeKind
from dicomveil.qc.templating import render

__all__ = ["render_html"]

_TEMPLATE = "diff_report.html"


class _Pair(NamedTuple):
    """A file pair as the page shows it: its changed elements and how many were kept."""

    file: FilePair
    changed: list[ElementChange]
    kept: int


def render_html(report: DiffReport, *, show_values: bool = False) -> str:
    """The report as one self-contained HTML page.

    Inline CSS; no scripts, fonts, images or links; every text escaped. The summary, one row
    per element path and kind of change, the unmatched and skipped files, and each pair's
    changed elements.

    Parameters
    ----------
    report : DiffReport
        What :func:`~dicomveil.qc.diff.diff` found.
    show_values : bool, default False
        Also show each changed element's values before and after (PHI: the page says so).

    Returns
    -------
    str
        The page, ending with a newline.
    """
    facts: list[tuple[str, object]] = [
        ("file pairs matched", len(report.pairs)),
        *((f"matched by {m.value}", n) for m, n in sorted(report.match_counts().items())),
        ("unmatched original files", len(report.unmatched_original)),
        ("unmatched de-identified files", len(report.unmatched_deidentified)),
        ("files not compared (not DICOM or unreadable)", len(report.skipped)),
    ]
    if report.map_dir is not None:
        facts.append(("map folder", report.map_dir))
    counts = report.kind_counts()
    return render(
        _TEMPLATE,
        report=report,
        show_values=show_values,
        version=__version__,
        facts=facts,
        kind_counts=[(kind, counts.get(kind, 0)) for kind in ChangeKind],
        offsets_disagree=sum(1 for pair in report.pairs if pair.offset_disagrees),
        rows=report.summary_rows(),
        unmatched=[
            ("Unmatched original files", report.unmatched_original),
            ("Unmatched de-identified files", report.unmatched_deidentified),
        ],
        pairs=[
            _Pair(
                pair,
                [c for c in pair.changes if c.change is not ChangeKind.KEPT],
                pair.count(ChangeKind.KEPT),
            )
            for pair in report.pairs
        ],
    )
