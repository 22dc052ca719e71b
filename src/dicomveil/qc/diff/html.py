"""The self-contained HTML report of ``dicomveil diff``: inline CSS, nothing fetched."""

from __future__ import annotations

import html

from dicomveil._version import __version__
from dicomveil.qc.diff.model import ChangeKind, DiffReport

_COLOURS = {
    ChangeKind.REMOVED: ("#fde2e1", "#a4161a"),
    ChangeKind.EMPTIED: ("#fff1d6", "#8a5300"),
    ChangeKind.REPLACED: ("#e3ecfd", "#1d4ed8"),
    ChangeKind.SHIFTED: ("#efe4fb", "#6b21a8"),
    ChangeKind.KEPT: ("#f1f3f5", "#495057"),
    ChangeKind.ADDED: ("#dcf5e3", "#166534"),
}

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em;color:#212529}
h1{font-size:1.5em;margin:0 0 .3em}h2{font-size:1.2em;margin:1.6em 0 .5em}
table{border-collapse:collapse;margin:.3em 0 1em}
th,td{border:1px solid #dee2e6;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f8f9fa}td.n{text-align:right;font-variant-numeric:tabular-nums}
code,.p{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.92em}
.note{padding:.5em .8em;border-left:4px solid #adb5bd;background:#f8f9fa}
.warn{border-left-color:#a4161a;background:#fde2e1}
.badge{display:inline-block;padding:.05em .55em;border-radius:.8em;font-weight:600}
details{margin:.25em 0;border:1px solid #dee2e6;border-radius:4px;padding:.3em .6em}
summary{cursor:pointer}ul{margin:.3em 0}
"""


def _kind_css() -> str:
    rows = "".join(
        f".k-{k.value}{{background:{bg}}}"
        for k, (bg, _) in _COLOURS.items()
        if k is not ChangeKind.KEPT  # kept rows stay plain, so changes stand out
    )
    badges = "".join(
        f".badge.k-{k.value}{{color:{fg};background:{bg};border:1px solid {fg}}}"
        for k, (bg, fg) in _COLOURS.items()
    )
    return rows + badges


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _badge(kind: ChangeKind) -> str:
    return f'<span class="badge k-{kind.value}">{_e(kind.value)}</span>'


def render(report: DiffReport, show_values: bool) -> str:
    """The report as one HTML page."""
    parts: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # Nothing may be fetched from anywhere: the page is complete as it is.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>dicomveil diff</title>",
        f"<style>{_CSS}{_kind_css()}</style></head><body>",
        "<h1>dicomveil diff</h1>",
        f'<p class="p">{_e(report.original)} &rarr; {_e(report.deidentified)}</p>',
    ]
    if show_values:
        parts.append(
            '<p class="note warn">This report shows values read from the original files: it '
            "contains PHI. Do not share it.</p>"
        )
    else:
        parts.append(
            '<p class="note">Values are not shown. Day offsets are: with the de-identified '
            "files they reveal the original dates, so keep this report with the maps.</p>"
        )
    parts += _html_summary(report)
    parts += _html_rows(report)
    parts += _html_unmatched(report)
    parts += _html_pairs(report, show_values)
    parts.append(f'<p class="note">Written by dicomveil {_e(__version__)}.</p></body></html>')
    return "\n".join(parts) + "\n"


def _html_summary(report: DiffReport) -> list[str]:
    counts = report.kind_counts()
    rows = [
        ("file pairs matched", str(len(report.pairs))),
        *((f"matched by {m.value}", str(n)) for m, n in sorted(report.match_counts().items())),
        ("unmatched original files", str(len(report.unmatched_original))),
        ("unmatched de-identified files", str(len(report.unmatched_deidentified))),
        ("files not compared (not DICOM or unreadable)", str(len(report.skipped))),
    ]
    if report.map_dir is not None:
        rows.append(("map folder", str(report.map_dir)))
    out = ["<h2>Summary</h2>", "<table>"]
    out += [f'<tr><th>{_e(k)}</th><td class="n">{_e(v)}</td></tr>' for k, v in rows]
    out.append("</table><p>")
    out += [f"{_badge(k)} {counts.get(k, 0)} &nbsp;" for k in ChangeKind]
    out.append("element occurrences</p>")
    wrong = [p for p in report.pairs if p.offset_disagrees]
    if wrong:
        out.append(
            f'<p class="note warn">{len(wrong)} pair(s) have dates shifted by another offset '
            "than the map's date_offsets.csv records.</p>"
        )
    return out


def _html_rows(report: DiffReport) -> list[str]:
    out = [
        "<h2>Elements</h2>",
        "<table><thead><tr><th>element</th><th>keyword</th><th>change</th><th>in</th>"
        "<th>detail</th></tr></thead><tbody>",
    ]
    for row in report.summary_rows():
        out.append(
            f'<tr class="k-{row.change.value}"><td class="p">{_e(row.path)}</td>'
            f"<td>{_e(row.keyword)}</td><td>{_badge(row.change)}</td>"
            f'<td class="n">{row.count}/{row.total}</td><td>{_e(row.detail)}</td></tr>'
        )
    out.append("</tbody></table>")
    return out


def _html_unmatched(report: DiffReport) -> list[str]:
    out: list[str] = []
    for title, paths in (
        ("Unmatched original files", report.unmatched_original),
        ("Unmatched de-identified files", report.unmatched_deidentified),
    ):
        if paths:
            out += [f"<h2>{_e(title)} ({len(paths)})</h2>", "<ul>"]
            out += [f'<li class="p">{_e(p)}</li>' for p in paths]
            out.append("</ul>")
    if report.skipped:
        out += [f"<h2>Not compared ({len(report.skipped)})</h2>", "<ul>"]
        out += [f'<li><span class="p">{_e(p)}</span>: {_e(r)}</li>' for p, r in report.skipped]
        out.append("</ul>")
    return out


def _html_pairs(report: DiffReport, show_values: bool) -> list[str]:
    out = [f"<h2>File pairs ({len(report.pairs)})</h2>"]
    for pair in report.pairs:
        changed = [c for c in pair.changes if c.change is not ChangeKind.KEPT]
        offset = (
            f", dates {pair.date_offset_days:+d} d" if pair.date_offset_days is not None else ""
        )
        out.append(
            f'<details><summary><span class="p">{_e(pair.original)}</span> &rarr; '
            f'<span class="p">{_e(pair.deidentified)}</span> ({_e(pair.matched_by.value)}; '
            f"{len(changed)} changed, {pair.count(ChangeKind.KEPT)} kept{_e(offset)})"
            "</summary>"
        )
        if pair.offset_disagrees:
            out.append(
                '<p class="note warn">Dates moved by another offset than date_offsets.csv '
                "records for this patient.</p>"
            )
        head = "<th>element</th><th>keyword</th><th>change</th><th>detail</th>"
        if show_values:
            head += "<th>before</th><th>after</th>"
        out.append(f"<table><thead><tr>{head}</tr></thead><tbody>")
        for c in changed:
            cells = (
                f'<td class="p">{_e(c.path)}</td><td>{_e(c.keyword)}</td>'
                f"<td>{_badge(c.change)}</td><td>{_e(c.detail)}</td>"
            )
            if show_values:
                cells += f'<td class="p">{_e(c.before)}</td><td class="p">{_e(c.after)}</td>'
            out.append(f'<tr class="k-{c.change.value}">{cells}</tr>')
        out.append("</tbody></table></details>")
    return out
