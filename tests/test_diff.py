"""``diff``: matching original and de-identified files (UID map, same UID, content), the
classification of every element, the aggregated rows, the text and HTML reports, and the
``dicomveil diff`` command.

The de-identified files come from the real engine (:func:`dicomveil.run`) on synthetic files
with known fake PHI; a few pairs are edited by hand to pin one classification each.
"""

from __future__ import annotations

import copy
import csv
import datetime as dt
import os
import shutil
import stat
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileDataset
from typer.testing import CliRunner

from dicomveil import Key, Profile, RunConfig, run
from dicomveil.cli import app
from dicomveil.errors import InputError
from dicomveil.qc.diff import ChangeKind, DiffReport, MatchMethod, SummaryRow, diff, render_html
from tests.support import synthetic
from tests.support.scratch import scratch

KEY = Key(bytes(range(32)))
TODAY = dt.date(2026, 11, 30)
N_CT, N_MR = 3, 2
N = N_CT + N_MR
RUNNER = CliRunner(env={"COLUMNS": "10000", "NO_COLOR": "1", "FORCE_COLOR": None})
CSA = '(0029,"SIEMENS CSA HEADER")'
MR_HEADER = '(0019,"SIEMENS MR HEADER")'


@dataclass(frozen=True)
class Batch:
    original: Path
    output: Path
    maps: Path
    datasets: tuple[FileDataset, ...]

    @property
    def phi(self) -> synthetic.PhiRecord:
        return synthetic.phi_of(self.datasets)


@dataclass(frozen=True)
class Batches:
    original: Path
    datasets: tuple[FileDataset, ...]
    patient: synthetic.FakePatient
    basic: Batch
    long: Batch  # retain-long-modified-dates + retain-uids
    safe: Batch  # retain-safe-private


def _deidentify(original: Path, root: Path, name: str, options: list[str]) -> tuple[Path, Path]:
    output, maps = root / f"out-{name}", root / f"maps-{name}"
    summary = run(
        [original],
        RunConfig(
            profile=Profile.named("ps3.15-basic").with_options(options),
            key=KEY,
            output=output,
            map_dir=maps,
            workers=1,
            today=TODAY,
        ),
    )
    assert len(summary.written) == N, [r.reason for r in summary.results]
    return output, maps


@pytest.fixture(scope="module")
def batches(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Batches]:
    with scratch(tmp_path_factory, "diff") as root:
        yield _batches(root)


def _batches(root: Path) -> Batches:
    patient = synthetic.fake_patient(1)
    ct = synthetic.ct_series(patient, seed=1, n_slices=N_CT, rows=16, columns=16)
    mr = synthetic.mr_series(patient, seed=1, n_slices=N_MR, rows=16, columns=16)
    original = root / "original"
    synthetic.write_series(copy.deepcopy(ct), original / "ct")
    synthetic.write_series(copy.deepcopy(mr), original / "mr")
    (original / "notes.txt").write_text("not DICOM\n", encoding="utf-8")
    made = {}
    for name, options in (
        ("basic", []),
        ("long", ["retain-long-modified-dates", "retain-uids"]),
        ("safe", ["retain-safe-private"]),
    ):
        output, maps = _deidentify(original, root, name, options)
        made[name] = Batch(original, output, maps, tuple(ct + mr))
    return Batches(original, tuple(ct + mr), patient, made["basic"], made["long"], made["safe"])


@pytest.fixture(scope="module")
def basic_report(batches: Batches) -> DiffReport:
    b = batches.basic
    return diff(b.original, b.output, map_dir=b.maps)


@pytest.fixture(scope="module")
def long_report(batches: Batches) -> DiffReport:
    b = batches.long
    return diff(b.original, b.output, map_dir=b.maps)


def rows_of(report: DiffReport, label: str) -> list[SummaryRow]:
    return [row for row in report.summary_rows() if row.label == label]


def only_row(report: DiffReport, label: str) -> SummaryRow:
    """The one row of an element that had the same change in every file."""
    rows = rows_of(report, label)
    assert len(rows) == 1, (label, rows)
    return rows[0]


def assert_all(report: DiffReport, label: str, change: ChangeKind, n: int = N) -> SummaryRow:
    row = only_row(report, label)
    assert (row.change, row.count, row.total) == (change, n, n), row
    return row


# --------------------------------------------------------------------------------------------
# Classification, through the real engine


def test_basic_profile_classifies_known_elements(basic_report: DiffReport) -> None:
    report = basic_report
    assert len(report.pairs) == N
    assert {p.matched_by for p in report.pairs} == {MatchMethod.UID_MAP}
    assert report.unmatched_original == [] and report.unmatched_deidentified == []
    assert [(p.name, reason) for p, reason in report.skipped] == [
        ("notes.txt", "not DICOM: skipped, not copied")
    ]
    assert_all(report, "PatientName", ChangeKind.REPLACED)
    assert_all(report, "StudyDate", ChangeKind.EMPTIED)
    assert_all(report, "InstitutionName", ChangeKind.REMOVED)
    assert_all(report, "Modality", ChangeKind.KEPT)
    assert_all(report, "Rows", ChangeKind.KEPT)
    assert_all(report, "PatientIdentityRemoved", ChangeKind.ADDED)
    assert_all(report, "OtherPatientIDsSequence", ChangeKind.REMOVED)
    pixels = assert_all(report, "PixelData", ChangeKind.KEPT)
    assert pixels.detail == "byte-identical"
    sop = assert_all(report, "SOPInstanceUID", ChangeKind.REPLACED)
    assert sop.detail == "as uids.csv maps it"
    # The private CSA block is removed whole: its creator and every element, in the MR files.
    assert_all(report, CSA, ChangeKind.REMOVED, N_MR)
    for offset in ("08", "09", "10", "18", "19", "20"):
        assert_all(report, f'(0029,"SIEMENS CSA HEADER",{offset})', ChangeKind.REMOVED, N_MR)
    assert_all(report, f"{MR_HEADER[:-1]},0C)", ChangeKind.REMOVED, N_MR)
    # No date is left to shift: the basic profile removes or empties them.
    assert report.kind_counts()[ChangeKind.SHIFTED] == 0
    assert all(p.date_offset_days is None for p in report.pairs)


def test_every_element_is_accounted_for_once_per_pair(basic_report: DiffReport) -> None:
    for pair in basic_report.pairs:
        original = dcmread(pair.original)
        paths = [c.path for c in pair.changes]
        assert len(paths) == len(set(paths))
        top = {
            c.path for c in pair.changes if ">" not in c.path and c.change is not ChangeKind.ADDED
        }
        assert len(top) == len(original) + len(original.file_meta)  # every element, + meta


def test_text_report_reads_per_element(basic_report: DiffReport) -> None:
    lines = basic_report.to_text().splitlines()
    for expected in (
        f"PatientName: replaced in {N}/{N}",
        f"InstitutionName: removed in {N}/{N}",
        f"PixelData: kept (byte-identical) in {N}/{N}",
        f"{CSA}: removed in {N_MR}/{N_MR}",
    ):
        assert expected in lines


def test_dates_shifted_by_the_maps_offset(batches: Batches, long_report: DiffReport) -> None:
    with (batches.long.maps / "date_offsets.csv").open(newline="", encoding="utf-8") as fh:
        (offset_row,) = list(csv.DictReader(fh))
    offset = int(offset_row["offset_days"])
    assert offset < 0
    report = long_report
    # retain-uids: uids.csv maps nothing, the unchanged SOP Instance UIDs match the files.
    assert {p.matched_by for p in report.pairs} == {MatchMethod.SAME_UID}
    assert len(report.pairs) == N
    for label in ("StudyDate", "SeriesDate", "ContentDate", "AcquisitionDateTime"):
        row = assert_all(report, label, ChangeKind.SHIFTED)
        assert row.detail == f"{offset:+d} d"
        assert str(row) == f"{label}: shifted {offset:+d} d in {N}/{N}"
    assert_all(report, "StudyTime", ChangeKind.KEPT)
    assert_all(report, "StudyInstanceUID", ChangeKind.KEPT)
    assert_all(report, "PatientBirthDate", ChangeKind.EMPTIED)
    for pair in report.pairs:
        assert pair.date_offset_days == offset
        assert pair.expected_offset_days == offset
        assert not pair.offset_disagrees


def test_retain_safe_private_keeps_siemens_mr_header(batches: Batches) -> None:
    b = batches.safe
    report = diff(b.original, b.output, map_dir=b.maps)
    assert_all(report, MR_HEADER, ChangeKind.KEPT, N_MR)
    for offset in ("0C", "0D", "0E", "27"):  # safe-private offsets
        assert_all(report, f'(0019,"SIEMENS MR HEADER",{offset})', ChangeKind.KEPT, N_MR)
    for offset in ("08", "09"):
        assert_all(report, f'(0019,"SIEMENS MR HEADER",{offset})', ChangeKind.REMOVED, N_MR)
    assert_all(report, CSA, ChangeKind.REMOVED, N_MR)
    assert_all(report, '(0043,"GEMS_PARM_01",27)', ChangeKind.KEPT, N_CT)
    row = only_row(report, '(0019,"SIEMENS MR HEADER",0C)')
    assert row.keyword == "[B_value]"


# --------------------------------------------------------------------------------------------
# Matching


def test_matching_by_content_without_a_map(batches: Batches, basic_report: DiffReport) -> None:
    b = batches.basic
    report = diff(b.original, b.output, map_dir=None)
    assert {p.matched_by for p in report.pairs} == {MatchMethod.CONTENT}
    by_content = {p.original: p.deidentified for p in report.pairs}
    by_map = {p.original: p.deidentified for p in basic_report.pairs}
    assert by_content == by_map
    assert len(by_content) == N
    # The classification does not depend on how the files were matched (UID details aside).
    assert_all(report, "PatientName", ChangeKind.REPLACED)
    assert only_row(report, "SOPInstanceUID").detail == ""


def test_content_ties_are_broken_by_instance_and_position(tmp_path: Path) -> None:
    """Three slices with byte-identical pixel data: Instance Number and Image Position pick
    each one's output."""
    patient = synthetic.fake_patient(5)
    (first,) = synthetic.ct_series(patient, seed=5, n_slices=1, rows=16, columns=16)
    slices = []
    for i in range(3):
        ds = copy.deepcopy(first)
        ds.SOPInstanceUID = f"{first.SOPInstanceUID}.{i + 1}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = 3 - i  # files and instance numbers in opposite orders
        ds.ImagePositionPatient = [0, 0, 10 * i]
        slices.append(ds)
    synthetic.write_series(slices, tmp_path / "in")
    summary = run(
        [tmp_path / "in"],
        RunConfig(Profile.named("ps3.15-basic"), KEY, tmp_path / "out", workers=1, today=TODAY),
    )
    assert len(summary.written) == 3
    report = diff(tmp_path / "in", tmp_path / "out", map_dir=None)
    assert len(report.pairs) == 3
    for pair in report.pairs:
        assert pair.matched_by is MatchMethod.CONTENT
        kept = {c.keyword for c in pair.changes if c.change is ChangeKind.KEPT}
        assert {"InstanceNumber", "ImagePositionPatient", "PixelData"} <= kept


def test_unmatched_files_are_reported(batches: Batches, tmp_path: Path) -> None:
    original, output = tmp_path / "original", tmp_path / "output"
    shutil.copytree(batches.basic.original, original)
    shutil.copytree(batches.basic.output, output)
    stranger = synthetic.fake_patient(2)
    (extra_in,) = synthetic.write_series(
        synthetic.ct_series(stranger, seed=2, n_slices=1, rows=16, columns=16),
        original / "extra",
    )
    (extra_out,) = synthetic.write_series(
        synthetic.mr_series(synthetic.fake_patient(3), seed=3, n_slices=1, rows=16, columns=16),
        output / "extra",
    )
    for map_dir in (batches.basic.maps, None):
        report = diff(original, output, map_dir=map_dir)
        assert report.unmatched_original == [extra_in]
        assert report.unmatched_deidentified == [extra_out]
        assert len(report.pairs) == N
        text = report.to_text()
        assert "unmatched original files:" in text and str(extra_in) in text
        assert "unmatched: 1 original, 1 de-identified" in text
        assert str(extra_out) in render_html(report)


# --------------------------------------------------------------------------------------------
# Hand-made pairs: one classification each


def _pair(tmp_path: Path, original: FileDataset, edited: Dataset) -> DiffReport:
    (tmp_path / "a").mkdir(parents=True)
    (tmp_path / "b").mkdir(parents=True)
    original.save_as(tmp_path / "a" / "IM1", enforce_file_format=True)
    edited.save_as(tmp_path / "b" / "IM1", enforce_file_format=True)
    return diff(tmp_path / "a" / "IM1", tmp_path / "b" / "IM1", map_dir=None)


@pytest.fixture
def mr_slice() -> FileDataset:
    (ds,) = synthetic.mr_series(synthetic.fake_patient(4), seed=4, n_slices=1, rows=16, columns=16)
    return ds


def test_each_kind_of_change(tmp_path: Path, mr_slice: FileDataset) -> None:
    edited = copy.deepcopy(mr_slice)
    del edited.InstitutionName
    edited.ReferringPhysicianName = ""
    edited.PatientName = "SUBJECT^01"
    edited.PatientIdentityRemoved = "YES"
    edited.StudyDate = "20000101"
    edited.ReferencedImageSequence[0].ReferencedSOPInstanceUID = "2.25.1"
    report = _pair(tmp_path, mr_slice, edited)
    (pair,) = report.pairs
    assert pair.matched_by is MatchMethod.SAME_UID
    changes = {c.path: c for c in pair.changes}
    assert changes["(0008,0080)"].change is ChangeKind.REMOVED
    assert changes["(0008,0090)"].change is ChangeKind.EMPTIED
    assert changes["(0010,0010)"].change is ChangeKind.REPLACED
    assert changes["(0012,0062)"].change is ChangeKind.ADDED
    assert changes["(0008,0020)"].change is ChangeKind.SHIFTED  # the only date moved
    assert changes["(0008,0060)"].change is ChangeKind.KEPT
    # Sequences item by item: the item's changed element, and the sequence as changed.
    assert changes["(0008,1140)[0]>(0008,1155)"].change is ChangeKind.REPLACED
    assert changes["(0008,1140)[0]>(0008,1150)"].change is ChangeKind.KEPT
    assert changes["(0008,1140)"].change is ChangeKind.REPLACED
    assert changes["(0008,1110)"].change is ChangeKind.KEPT
    emptied = copy.deepcopy(mr_slice)
    emptied.OtherPatientIDsSequence = []
    (pair,) = _pair(tmp_path / "2", mr_slice, emptied).pairs
    assert {c.path: c.change for c in pair.changes}["(0010,1002)"] is ChangeKind.EMPTIED


def test_a_date_moved_by_another_offset_is_replaced(tmp_path: Path, mr_slice: FileDataset) -> None:
    edited = copy.deepcopy(mr_slice)

    def moved(value: str, days: int) -> str:
        day = dt.datetime.strptime(value[:8], "%Y%m%d").date() + dt.timedelta(days=days)
        return day.strftime("%Y%m%d") + value[8:]

    for keyword in ("StudyDate", "SeriesDate", "AcquisitionDate", "AcquisitionDateTime"):
        setattr(edited, keyword, moved(getattr(mr_slice, keyword), -400))
    edited.ContentDate = moved(mr_slice.ContentDate, -3)
    edited.InstanceCreationDate = moved(mr_slice.InstanceCreationDate, -400)
    edited.PerformedProcedureStepStartDate = ""
    (pair,) = _pair(tmp_path, mr_slice, edited).pairs
    assert pair.date_offset_days == -400
    changes = {c.keyword: c for c in pair.changes}
    assert changes["StudyDate"].change is ChangeKind.SHIFTED
    assert changes["AcquisitionDateTime"].change is ChangeKind.SHIFTED
    assert changes["StudyDate"].detail == "-400 d"
    assert changes["ContentDate"].change is ChangeKind.REPLACED
    assert changes["ContentDate"].detail == "moved -3 d, not the pair's -400 d"
    assert changes["PerformedProcedureStepStartDate"].change is ChangeKind.EMPTIED


def test_a_time_of_day_changed_with_the_date_is_not_a_shift(
    tmp_path: Path, mr_slice: FileDataset
) -> None:
    edited = copy.deepcopy(mr_slice)
    value = str(mr_slice.AcquisitionDateTime)
    edited.AcquisitionDateTime = "19990101" + value[8:10] + "59" + value[12:]
    (pair,) = _pair(tmp_path, mr_slice, edited).pairs
    assert {c.keyword: c.change for c in pair.changes}["AcquisitionDateTime"] is (
        ChangeKind.REPLACED
    )
    assert pair.date_offset_days is None


def test_private_elements_are_matched_by_creator_not_by_tag(
    tmp_path: Path, mr_slice: FileDataset
) -> None:
    """The SIEMENS MR HEADER block moves from 0019,10xx to 0019,12xx, behind another
    creator: every element is still the same element, kept."""
    edited = copy.deepcopy(mr_slice)
    old = [
        (e.tag.element & 0xFF, e.VR, e.value)
        for e in edited
        if e.tag.group == 0x0019 and e.tag.element >= 0x1000
    ]
    for tag in [e.tag for e in edited if e.tag.group == 0x0019]:
        del edited[tag]
    edited.private_block(0x0019, "ACME FIRST", create=True).add_new(0x01, "LO", "x")
    edited.private_block(0x0019, "ACME SECOND", create=True).add_new(0x01, "LO", "y")
    moved = edited.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    assert moved.block_start == 0x1200
    for offset, vr, value in old:
        moved.add_new(offset, vr, value)
    (pair,) = _pair(tmp_path, mr_slice, edited).pairs
    siemens = [c for c in pair.changes if "SIEMENS MR HEADER" in c.path]
    assert len(siemens) == 1 + 6  # the creator and its six elements
    assert {c.change for c in siemens} == {ChangeKind.KEPT}
    added = {c.path for c in pair.changes if c.change is ChangeKind.ADDED}
    assert added == {
        '(0019,"ACME FIRST")',
        '(0019,"ACME FIRST",01)',
        '(0019,"ACME SECOND")',
        '(0019,"ACME SECOND",01)',
    }


def test_changed_pixel_data_is_reported(tmp_path: Path, mr_slice: FileDataset) -> None:
    edited = copy.deepcopy(mr_slice)
    data = bytearray(edited.PixelData)
    data[0] ^= 0xFF
    edited.PixelData = bytes(data)
    (pair,) = _pair(tmp_path, mr_slice, edited).pairs
    pixels = {c.keyword: c for c in pair.changes}["PixelData"]
    assert (pixels.change, pixels.detail) == (ChangeKind.REPLACED, "bytes differ")


def test_bad_inputs_are_errors(batches: Batches, tmp_path: Path) -> None:
    b = batches.basic
    with pytest.raises(InputError, match="no such file"):
        diff(tmp_path / "missing", b.output, map_dir=None)
    with pytest.raises(InputError, match=r"uids\.csv"):
        diff(b.original, b.output, map_dir=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no readable DICOM"):
        diff(b.original, tmp_path / "empty", map_dir=None)
    with pytest.raises(InputError, match="not DICOM"):
        diff(b.original / "notes.txt", b.output, map_dir=None)


# --------------------------------------------------------------------------------------------
# HTML


class _Page(HTMLParser):
    VOID = frozenset({"meta", "br", "hr", "img", "link", "input", "wbr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.open: list[str] = []
        self.unbalanced: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend(attrs)
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open.pop() != tag:
            self.unbalanced.append(tag)


def parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    return parser


def phi_strings(batch: Batch | Batches) -> Iterator[str]:
    yield from sorted(synthetic.phi_of(batch.datasets).all_values())


def test_html_is_self_contained(basic_report: DiffReport) -> None:
    page = render_html(basic_report)
    parsed = parse(page)
    assert page.startswith("<!DOCTYPE html>")
    assert parsed.open == [] and parsed.unbalanced == []
    assert not {"script", "link", "img", "iframe", "object", "embed", "svg"} & set(parsed.tags)
    names = {name for name, _ in parsed.attrs}
    assert not {"src", "href", "srcset", "action", "background"} & names
    for forbidden in ("http://", "https://", "url(", "@import", "src="):
        assert forbidden not in page
    assert parsed.tags.count("details") == len(basic_report.pairs)
    assert "<style>" in page and ".k-removed" in page
    assert page.count('class="k-removed"') >= 1 and page.count('class="k-shifted"') == 0


def test_no_phi_without_show_values(
    batches: Batches, basic_report: DiffReport, long_report: DiffReport
) -> None:
    for report in (basic_report, long_report):
        page, text = render_html(report), report.to_text()
        found = [v for v in phi_strings(batches) if v in page or v in text]
        # retain-uids: the output's file names are its (kept) UIDs; nothing else may appear.
        names = " ".join(str(p.deidentified) for p in report.pairs)
        assert [v for v in found if v not in names] == []
        if report is basic_report:
            assert found == []
    shown = render_html(long_report, show_values=True)
    assert batches.patient.surname in shown
    assert batches.patient.patient_id in shown
    assert batches.patient.surname in long_report.to_text(show_values=True)


def test_html_escapes_what_it_shows(tmp_path: Path, mr_slice: FileDataset) -> None:
    edited = copy.deepcopy(mr_slice)
    edited.PatientName = "<b>O'HARA</b>&CO"
    (tmp_path / "a <i>").mkdir()
    (tmp_path / "b").mkdir()
    mr_slice.save_as(tmp_path / "a <i>" / "IM&<x>", enforce_file_format=True)
    edited.save_as(tmp_path / "b" / "IM1", enforce_file_format=True)
    report = diff(tmp_path / "a <i>", tmp_path / "b", map_dir=None)
    page = render_html(report, show_values=True)
    assert "a &lt;i&gt;/IM&amp;&lt;x&gt;" in page
    assert "&lt;b&gt;O&#39;HARA&lt;/b&gt;&amp;CO" in page  # Jinja2 (MarkupSafe) escapes ' as &#39;
    parsed = parse(page)
    assert "i" not in parsed.tags and "b" not in parsed.tags and "x" not in parsed.tags


def test_html_renders_in_chromium(basic_report: DiffReport, tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    page = tmp_path / "report.html"
    page.write_text(render_html(basic_report), encoding="utf-8")
    png = tmp_path / "report.png"
    env = {**os.environ, "HOME": str(tmp_path / "home")}
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1200,1600",
            f"--screenshot={png}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        env=env,
        timeout=300,
    )
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1200, 1600)
    assert len(data) > 20_000  # text and coloured rows, not a blank page


# --------------------------------------------------------------------------------------------
# The command


def test_cli_prints_the_rows_and_writes_html(batches: Batches, tmp_path: Path) -> None:
    b = batches.basic
    page = tmp_path / "report.html"
    result = RUNNER.invoke(
        app,
        ["diff", str(b.original), str(b.output), "--map-dir", str(b.maps), "--html", str(page)],
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any("PatientName" in ln and "replaced" in ln and f"{N}/{N}" in ln for ln in lines)
    assert any("InstitutionName" in ln and "removed" in ln for ln in lines)
    assert f"{N} file pair(s) matched (uid map {N})" in result.stdout
    assert "notes.txt" in result.stderr
    html = page.read_text(encoding="utf-8")
    assert parse(html).tags.count("details") == N
    leaked = [v for v in phi_strings(b) if v in result.output or v in html]
    assert leaked == []


def test_cli_show_values(batches: Batches, tmp_path: Path) -> None:
    b = batches.basic
    page = tmp_path / "values.html"
    result = RUNNER.invoke(
        app, ["diff", str(b.original), str(b.output), "--show-values", "--html", str(page)]
    )
    assert result.exit_code == 0, result.output
    assert batches.patient.surname in result.stdout
    assert batches.patient.surname in page.read_text(encoding="utf-8")
    assert stat.S_IMODE(page.stat().st_mode) == 0o600


@pytest.mark.parametrize("case", ["missing", "no-map", "not-dicom", "bad-html"])
def test_cli_bad_arguments_exit_2(batches: Batches, tmp_path: Path, case: str) -> None:
    b = batches.basic
    args = {
        "missing": [str(tmp_path / "missing"), str(b.output)],
        "no-map": [str(b.original), str(b.output), "--map-dir", str(tmp_path)],
        "not-dicom": [str(b.original / "notes.txt"), str(b.output)],
        "bad-html": [str(b.original), str(b.output), "--html", str(tmp_path / "no" / "r.html")],
    }[case]
    result = RUNNER.invoke(app, ["diff", *args])
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[-1].startswith("error: ")


def test_a_dummy_date_is_replaced_not_shifted(tmp_path: Path) -> None:
    """pydicom's RT Plan under the Basic Profile: its RTPlanDate becomes the dummy
    19000101; the comparison called it 'shifted' by a day offset that told the original
    date (found by an independent black-box test): it is 'replaced', 'a dummy date'."""
    from dicomveil.qc.diff import compare_pair
    from tests.support.commands import PYDICOM_DATA

    original = PYDICOM_DATA / "test_files" / "rtplan.dcm"
    config = RunConfig(Profile.named("ps3.15-basic"), Key(bytes(32)), tmp_path / "out", workers=1)
    summary = run([original], config)
    (written,) = summary.written
    assert written.output is not None
    pair = compare_pair(original, written.output)
    (date,) = [c for c in pair.changes if c.keyword == "RTPlanDate"]
    assert (date.change, date.detail) == (ChangeKind.REPLACED, "a dummy date")
