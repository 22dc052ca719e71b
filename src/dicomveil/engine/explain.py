"""``explain``: what a profile does to each element of one file, and why.

Values are shown only when asked (``show_values``): the explanation of a file holding PHI
may otherwise be shared.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset

from dicomveil.cleaners.pixels import PixelOutcome, PixelSettings, clean_pixels
from dicomveil.engine.core import Engine
from dicomveil.engine.report import ElementReport
from dicomveil.identity.keys import Key
from dicomveil.identity.pseudonyms import Pseudonymizer
from dicomveil.io import read_source
from dicomveil.profiles import Profile


@dataclass(frozen=True)
class Row:
    element: str
    tag: str
    vr: str
    action: str
    source: str
    before: str = ""
    after: str = ""


@dataclass(frozen=True)
class Explanation:
    verdict: str
    rows: tuple[Row, ...]
    pixels: PixelOutcome | None = None  # clean-pixel-data: boxes found and redacted per frame


def explain(
    path: Path,
    profile: Profile,
    key: Key,
    *,
    show_values: bool = False,
    pixels: PixelSettings | None = None,
) -> Explanation:
    source = read_source(path)
    original = copy.deepcopy(source.dataset) if show_values else None
    engine = Engine(profile.compile(), Pseudonymizer(key))
    cleaned = clean_pixels(source, engine, pixels)
    pixel_report = cleaned if cleaned.checked else None
    if cleaned.withheld is not None:
        return Explanation(f"withheld: {cleaned.withheld}", (), pixel_report)
    result = engine.deidentify(source.dataset, explain=True, has_pixel_data=source.has_pixel_data)
    if result.dataset is None:
        assert result.withheld is not None
        return Explanation(
            f"withheld: {result.withheld_detail or result.withheld.reason}", (), pixel_report
        )
    if engine.profile.copy:
        return Explanation("copied byte for byte: nothing is changed", ())
    before = flatten(original) if original is not None else {}
    after = flatten(result.dataset) if show_values else {}
    rows = []
    for report in result.reports:
        key_ = _key(report)
        rows.append(
            Row(
                element=(report.path + ">" if report.path else "") + report.keyword,
                tag=report.tag_text,
                vr=report.vr,
                action=report.action,
                source=report.source,
                before=before.get(key_, ""),
                after=after.get(key_, "(removed)") if show_values else "",
            )
        )
    verdict = "de-identified" + (
        f", dates shifted by {result.date_offset_days} days"
        if result.date_offset_days is not None
        else ""
    )
    for note in result.notes:
        verdict += f"; {note}"
    if pixel_report is not None:
        verdict += f"; pixels: {pixel_report.verdict}"
    return Explanation(verdict, tuple(rows), pixel_report)


def _key(report: ElementReport) -> str:
    return f"{report.path}|{report.tag:08X}"


def flatten(ds: Dataset, path: str = "") -> dict[str, str]:
    """Every element's value as short text, keyed like the engine's reports."""
    values: dict[str, str] = {}
    for elem in ds:
        key = f"{path}|{elem.tag:08X}"
        if elem.VR == "SQ":
            values[key] = f"{len(elem.value)} item(s)"
            name = elem.keyword or f"({elem.tag.group:04X},{elem.tag.element:04X})"
            for i, item in enumerate(elem.value):
                inner = (path + ">" if path else "") + f"{name}[{i}]"
                values.update(flatten(item, inner))
        else:
            text = repr(elem.value) if isinstance(elem.value, bytes) else str(elem.value)
            values[key] = text if len(text) <= 64 else text[:61] + "..."
    return values
