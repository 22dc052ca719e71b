"""Per-frame content of Enhanced MR and CT (issue 14): the functional groups' dates, times and
comments follow each preset's date policy and table at every depth.

Real Enhanced objects that pip installs (nibabel's Philips and multi-frame MR, heudiconv's
Siemens XA MR, pydicom-data's Enhanced MR and CT) de-identified under every preset: where a
preset changes the acquisition date, no frame keeps it; where it shifts dates, every frame
moves by the patient's one offset.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from dicomveil import Key, Outcome, Profile, RunConfig, run
from dicomveil.profiles import preset_names
from tests.realdata import real_files
from tests.support.neuro import real_headers

KEY = Key(b"enhanced-frames-key-0123456789ab")
ENHANCED = ("1.2.840.10008.5.1.4.1.1.4.1", "1.2.840.10008.5.1.4.1.1.2.1")  # MR, CT
GROUPS = ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence")


def _enhanced() -> list[Path]:
    return [
        real.path
        for real, ds in real_headers(("nibabel", "heudiconv", "pydicom-data"))
        if ds.get("SOPClassUID") in ENHANCED and "PerFrameFunctionalGroupsSequence" in ds
    ]


def _frame_values(ds: Dataset) -> Iterator[tuple[str, str, str]]:
    """(keyword, VR, value) of every DA, DT and FrameComments value inside the groups."""

    def walk(item: Dataset) -> Iterator[tuple[str, str, str]]:
        for elem in item:
            if elem.VR == "SQ":
                for child in elem.value:
                    yield from walk(child)
            elif (elem.VR in ("DA", "DT") or elem.keyword == "FrameComments") and elem.value:
                yield elem.keyword, elem.VR, str(elem.value)

    for group in GROUPS:
        for item in ds.get(group, []):
            yield from walk(item)


def _date(value: str) -> dt.date:
    return dt.datetime.strptime(value[:8], "%Y%m%d").date()


FILES = _enhanced()


@pytest.mark.parametrize("preset", preset_names())
@pytest.mark.parametrize("path", FILES, ids=[p.name[:24] for p in FILES])
def test_frames_follow_the_presets_date_policy(tmp_path: Path, path: Path, preset: str) -> None:
    source = dcmread(path, stop_before_pixels=True)
    before = list(_frame_values(source))
    config = RunConfig(
        profile=Profile.named(preset), key=KEY, output=tmp_path / "out", workers=1,
        today=dt.date(2026, 12, 5),
    )  # fmt: skip
    summary = run([path], config)
    (result,) = summary.results
    if result.outcome is not Outcome.WRITTEN:
        pytest.skip(f"{preset} does not write this file: {result.reason}")
    (written,) = (tmp_path / "out").rglob("*.dcm")
    out = dcmread(written, stop_before_pixels=True)
    after = list(_frame_values(out))
    acquired = str(source.get("AcquisitionDateTime") or source.get("AcquisitionDate") or "")[:8]
    kept = str(out.get("AcquisitionDateTime") or out.get("AcquisitionDate") or "")[:8]
    if not acquired or acquired == kept:  # the preset keeps the acquisition date
        return
    leaked = [(k, v) for k, vr, v in after if vr in ("DA", "DT") and v.startswith(acquired)]
    assert not leaked, leaked
    if result.date_offset_days is not None and kept:  # shifted: every frame by one offset
        offset = _date(kept) - _date(acquired)
        shifted = {(k, _date(v) + offset) for k, vr, v in before if vr in ("DA", "DT")}
        public = {(k, d) for k, d in shifted if k}  # private dates may be removed
        moved = {(k, _date(v)) for k, vr, v in after if vr in ("DA", "DT")}
        assert public <= moved <= shifted
    if Profile.named(preset).base.value == "ps3.15" and "clean-descriptors" not in {
        o.value for o in Profile.named(preset).options
    }:
        assert not [v for k, _, v in after if k == "FrameComments"]


def test_there_are_enhanced_files() -> None:
    assert len(FILES) >= 3 or not real_files()
