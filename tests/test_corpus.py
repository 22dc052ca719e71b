"""Every file of pydicom's bundled data and of pydicom-data, de-identified one at a time.

The issue: "Every file of pydicom's bundled test files and of pydicom-data (PyPI) either
de-identifies -- pixel data byte-identical, no decode -- or is reported with a clear reason;
no crash."

The corpus is every file under ``pydicom/data/test_files`` (recursively: ``dicomdirtests/``
too), ``pydicom/data/charset_files`` and ``pydicom/data/palettes``, plus every file of the
pydicom-data package (the ``pydicom.data.external_sources`` plug-in; its tests are skipped
when it is not installed). Each file runs alone with the ``ps3.15-basic`` profile.

Outcomes observed when this module was written (pydicom 3.0.2, pydicom-data 1.0.0): 271
files, 143 WRITTEN, 96 WITHHELD, 21 SKIPPED, 11 FAILED.

Expected WITHHELD (``ps3.15-basic`` allows none of these risks):

* secondary capture, ultrasound, visible light and other "often burned-in" images that do
  not say ``BurnedInAnnotation NO``: the ``SC_*``, ``US1_*``, ``OBXXXX1A*``, ``JPEG*``,
  ``JPGExtended``, ``GDCMJ2K_TextGBR``, ``color-p*``, ``color3d_jpeg_baseline``,
  ``examples_{jpeg2k,palette,rgb_color,ybr_color}``, ``gdcm-US-ALOKA-16*``, ``mlut_18``,
  ``vlut_04``, ``OT-PAL-8-face``, ``ExplVR_BigEnd``, ``image_dfl`` (deflated) files and
  the charset files that are secondary captures (``chrArab``, ``chrFren*``, ``chrGerm``,
  ``chrGreek``, ``chrH31``, ``chrH32``, ``chrHbrw``, ``chrI2``, ``chrRuss``, ``chrX1``,
  ``chrX2``);
* structured content the profile cannot vouch for: ``test-SR``, ``reportsi*``,
  ``waveform_ecg`` (SR content tree / acquisition context sequence).

Expected SKIPPED:

* not DICOM: the ``README*``, ``*.txt``, ``*.md``, ``*.json``, ``*.dump``, ``crayons.icc``
  and ``zipMR.gz`` files; also ``no_meta.dcm`` (a bare dataset that starts with a stray
  byte: pydicom cannot read it either);
* the eight DICOMDIRs of ``dicomdirtests/`` (never copied).

Expected FAILED (each with a reason naming no value of the file):

* truncated: ``MR_truncated.dcm``, ``rtplan_truncated.dcm`` and pydicom-data's
  ``emri_small_jpeg_2k_lossless_too_short.dcm`` (encapsulated Pixel Data without its
  sequence delimiter);
* datasets without SOP Instance UID (not composite objects): ``UN_sequence``,
  ``empty_charset_LEI``, ``meta_missing_tsyntax``, ``nested_priv_SQ``,
  ``no_meta_group_length``, ``priv_SQ``, ``chrSQEncoding``, ``chrSQEncoding1``.
"""

from __future__ import annotations

import re
import shutil
import struct
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pydicom.pixels
import pydicom.pixels.decoders.base
import pydicom.pixels.utils
import pytest
from pydicom import dcmread
from pydicom._uid_dict import UID_dictionary  # not re-exported by pydicom.uid for mypy
from pydicom.dataset import Dataset
from pydicom.encaps import generate_fragments

from dicomveil import Key, Outcome, Profile, RunConfig, run
from dicomveil.runs.batch import FileResult
from tests.support.commands import PYDICOM_DATA, CorpusFile, pydicom_data_folder, real_files

KEY = Key(b"k" * 32)
PROFILE = Profile.named("ps3.15-basic")
PIXEL_TAGS = (0x7FE00008, 0x7FE00009, 0x7FE00010)
UID_KEYWORDS = ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


EXTERNAL = pydicom_data_folder()
NO_EXTERNAL = "pydicom-data is not installed (pip install pydicom-data)"


CORPUS = real_files()


def _params() -> Iterator[Any]:
    for case in CORPUS:
        yield pytest.param(case, id=case.name)
    if EXTERNAL is None:
        yield pytest.param(None, id="pydicom-data", marks=pytest.mark.skip(reason=NO_EXTERNAL))


def _find(name: str) -> Path | None:
    """A corpus file by its relative name (``test_files/...``, ``pydicom-data/...``)."""
    for case in CORPUS:
        if case.name == name:
            return case.path
    return None


# --------------------------------------------------------------------------------------------
# Reading the input for comparison (pydicom, forgiving, never the code under test)


def _read_forced(path: Path, *, pixels: bool) -> Dataset | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return dcmread(path, force=True, stop_before_pixels=not pixels)
    except Exception:
        return None


def _string(ds: Dataset, keyword: str) -> str:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = ds.get(keyword)
            if value is None:
                return ""
            text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
    except Exception:
        return ""
    return text.strip("\x00 ")


def _identifying_values(ds: Dataset | None) -> list[str]:
    """PatientName and PatientID when they are strings of 3 characters or more."""
    if ds is None:
        return []
    values = [_string(ds, "PatientName"), _string(ds, "PatientID")]
    return [v for v in values if len(v) >= 3]


def _pixel_values(ds: Dataset | None) -> dict[int, bytes]:
    """The raw bytes of every pixel data element pydicom can read."""
    found: dict[int, bytes] = {}
    if ds is None:
        return found
    for tag in PIXEL_TAGS:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if tag not in ds:
                    continue
                value = ds[tag].value
        except Exception:
            continue
        if isinstance(value, bytes | bytearray):
            found[tag] = bytes(value)
    return found


def _is_encapsulated(ds: Dataset) -> bool:
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    return bool(syntax is not None and syntax.is_encapsulated)


def _appears(text: str, value: str) -> bool:
    """``value`` occurs in ``text``; an all-digit value only as a whole number."""
    if value.isdigit():
        return re.search(rf"(?<![0-9]){re.escape(value)}(?![0-9])", text) is not None
    return value in text


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def _run_one(path: Path, output: Path) -> FileResult:
    summary = run([path], RunConfig(profile=PROFILE, key=KEY, output=output, workers=1))
    assert len(summary.results) == 1, [r.outcome for r in summary.results]
    return summary.results[0]


# --------------------------------------------------------------------------------------------


def test_corpus_is_found() -> None:
    names = {case.name for case in CORPUS}
    assert "test_files/CT_small.dcm" in names
    assert "test_files/dicomdirtests/DICOMDIR" in names
    assert "charset_files/chrH31.dcm" in names
    if EXTERNAL is not None:
        assert "pydicom-data/emri_small.dcm" in names


@pytest.mark.parametrize("case", list(_params()))
def test_corpus_file(case: CorpusFile, tmp_path: Path) -> None:
    output = tmp_path / "out"
    result = _run_one(case.path, output)
    original = _read_forced(case.path, pixels=True)
    identifying = _identifying_values(original)

    assert isinstance(result.outcome, Outcome)
    for value in identifying:
        assert value not in result.reason, f"the reason quotes a value of the file: {value!r}"
    if result.outcome is not Outcome.WRITTEN:
        assert result.reason.strip(), f"{result.outcome.value} without a reason"
        assert result.output is None
        assert _files_under(output) == [], "a file that was not written left an output"
        return

    # WRITTEN: a parseable file, inside the output folder, named by de-identified values.
    assert result.output is not None
    assert result.output.is_file()
    assert _files_under(output) == [result.output]
    relative = result.output.relative_to(output).as_posix()
    stem = case.path.stem
    if len(stem) > 3:
        assert not _appears(relative, stem), f"the output path {relative} names the input"
    patient_id = _string(original, "PatientID") if original is not None else ""
    if patient_id:
        assert not _appears(relative, patient_id), f"the output path {relative} has PatientID"

    written = dcmread(result.output)
    assert written.PatientIdentityRemoved == "YES"

    # Pixel data: byte-identical (and the same fragments when encapsulated).
    before = _pixel_values(original)
    after = _pixel_values(written)
    for tag, pixels in before.items():
        assert tag in after, f"pixel data element {tag:08X} is missing from the output"
        assert after[tag] == pixels, f"pixel data element {tag:08X} changed"
        if tag == 0x7FE00010 and original is not None and _is_encapsulated(original):
            assert list(generate_fragments(after[tag])) == list(generate_fragments(pixels))

    # No original instance, study or series UID anywhere in the output bytes.
    data = result.output.read_bytes()
    if original is not None:
        for keyword in UID_KEYWORDS:
            uid = _string(original, keyword)
            if uid and uid not in UID_dictionary:
                assert uid.encode("ascii", "replace") not in data, f"original {keyword} kept"


# --------------------------------------------------------------------------------------------
# Known-malformed files


def _malformed() -> Iterator[Any]:
    yield pytest.param("test_files/MR_truncated.dcm", id="MR_truncated.dcm")
    yield pytest.param("test_files/rtplan_truncated.dcm", id="rtplan_truncated.dcm")
    name = "pydicom-data/emri_small_jpeg_2k_lossless_too_short.dcm"
    marks: Any = ()
    if EXTERNAL is None:
        marks = pytest.mark.skip(reason=NO_EXTERNAL)
    elif _find(name) is None:
        marks = pytest.mark.skip(reason="this pydicom-data version has no such file")
    yield pytest.param(name, id="emri_small_jpeg_2k_lossless_too_short.dcm", marks=marks)


@pytest.mark.parametrize("name", list(_malformed()))
def test_known_malformed_files_fail(name: str, tmp_path: Path) -> None:
    path = _find(name)
    assert path is not None, f"{name} is not in the corpus"
    output = tmp_path / "out"
    result = _run_one(path, output)
    assert result.outcome is Outcome.FAILED, (result.outcome, result.reason)
    assert result.reason.strip()
    assert _files_under(output) == []


def _item_ends(data: bytes) -> list[int]:
    """Offsets just past each item of the (explicit VR little endian) encapsulated Pixel Data."""
    start = data.rindex(b"\xe0\x7f\x10\x00")
    assert data[start + 4 : start + 6] in (b"OB", b"OW")
    assert data[start + 8 : start + 12] == b"\xff\xff\xff\xff"
    start += 12
    ends: list[int] = []
    while True:
        group, element, length = struct.unpack("<HHI", data[start : start + 8])
        if (group, element) != (0xFFFE, 0xE000):
            return ends
        start += 8 + length
        ends.append(start)


@pytest.mark.parametrize("delimiter", [False, True], ids=["cut", "cut-and-delimited"])
def test_encapsulated_pixel_data_cut_at_an_item_boundary_fails(
    delimiter: bool, tmp_path: Path
) -> None:
    """A multi-frame file cut after half its frames: structurally fine, frames missing."""
    path = _find("test_files/rtdose_rle.dcm")  # RLE, 15 frames, one fragment each
    assert path is not None
    data = path.read_bytes()
    ends = _item_ends(data)
    assert len(ends) == 16  # the Basic Offset Table and 15 fragments
    cut = data[: ends[8]] + (struct.pack("<HHI", 0xFFFE, 0xE0DD, 0) if delimiter else b"")
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "cut.dcm").write_bytes(cut)
    result = _run_one(folder / "cut.dcm", tmp_path / "out")
    assert result.outcome is Outcome.FAILED, (result.outcome, result.reason)
    assert _files_under(tmp_path / "out") == []


def test_outcome_does_not_depend_on_warning_filters(tmp_path: Path) -> None:
    source = PYDICOM_DATA / "test_files" / "CT_small.dcm"
    folder = tmp_path / "in"
    folder.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dcmread(source)
        ds.StudyInstanceUID = "1.2.840.0123"  # a leading zero: not a valid UID
        ds.save_as(folder / "bad-uid.dcm")
    profile = PROFILE.with_options(["retain-uids"])
    outcomes = {}
    for action in ("ignore", "error"):
        with warnings.catch_warnings():
            warnings.simplefilter(action)
            config = RunConfig(profile=profile, key=KEY, output=tmp_path / action, workers=1)
            result = run([folder / "bad-uid.dcm"], config).results[0]
        outcomes[action] = (result.outcome, result.reason)
    assert outcomes["ignore"][0] is Outcome.WRITTEN
    assert outcomes["error"] == outcomes["ignore"]


# --------------------------------------------------------------------------------------------
# No decoding, ever

# The first file of each SOP instance is used (one output per instance).
NO_DECODE_CANDIDATES = (
    "test_files/MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS
    "test_files/693_J2KI.dcm",  # JPEG 2000
    "test_files/J2K_pixelrep_mismatch.dcm",  # JPEG 2000 lossless
    "test_files/rtdose_rle.dcm",  # RLE, multi-frame
    "test_files/CT_small.dcm",
    "test_files/liver_1frame.dcm",
    "test_files/examples_overlay.dcm",
    "test_files/dicomdirtests/77654033/CT2/17106",
    "test_files/dicomdirtests/98892003/MR2/4950",
    "pydicom-data/JPGLosslessP14SV1_1s_1f_8b.dcm",  # JPEG lossless
    "pydicom-data/emri_small_jpeg_2k_lossless.dcm",  # multi-frame JPEG 2000
    "pydicom-data/MR2_J2KI.dcm",
    "pydicom-data/RG1_J2KR.dcm",
    "pydicom-data/bad_sequence.dcm",  # JPEG lossless
)


def test_no_pixel_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder of (mostly compressed) files de-identifies with every decoder booby-trapped."""
    folder = tmp_path / "in"
    folder.mkdir()
    sop_uids: set[str] = set()
    for name in NO_DECODE_CANDIDATES:
        path = _find(name)
        if path is None:
            continue
        ds = _read_forced(path, pixels=False)
        uid = _string(ds, "SOPInstanceUID") if ds is not None else ""
        if not uid or uid in sop_uids:  # one output per SOP instance: skip duplicates
            continue
        sop_uids.add(uid)
        shutil.copyfile(path, folder / f"in{len(sop_uids):02d}.dcm")
    assert len(sop_uids) >= 8

    calls: list[str] = []

    def trap(name: str) -> Any:
        def boom(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            raise AssertionError(f"pixel data decoded or re-encoded: {name}")

        return boom

    monkeypatch.setattr(Dataset, "pixel_array", property(trap("Dataset.pixel_array")))
    for attribute in ("convert_pixel_data", "decompress", "compress", "set_pixel_data"):
        monkeypatch.setattr(Dataset, attribute, trap(f"Dataset.{attribute}"))
    decoder = pydicom.pixels.decoders.base.Decoder
    for attribute in ("as_array", "iter_array", "as_buffer", "iter_buffer"):
        monkeypatch.setattr(decoder, attribute, trap(f"Decoder.{attribute}"))
    for module in (pydicom.pixels, pydicom.pixels.utils):
        for attribute in ("pixel_array", "iter_pixels", "decompress", "compress"):
            monkeypatch.setattr(module, attribute, trap(f"{module.__name__}.{attribute}"))

    # The trap is armed.
    with pytest.raises(AssertionError):
        _ = dcmread(folder / "in01.dcm").pixel_array
    calls.clear()

    output = tmp_path / "out"
    summary = run([folder], RunConfig(profile=PROFILE, key=KEY, output=output, workers=1))
    assert calls == []
    outcomes = {r.task.path.name: (r.outcome, r.reason) for r in summary.results}
    assert len(outcomes) == len(sop_uids)
    assert all(o is Outcome.WITHHELD or o is Outcome.WRITTEN for o, _ in outcomes.values()), (
        outcomes
    )
    assert summary.count(Outcome.WRITTEN) >= 8, outcomes
    assert len(_files_under(output)) == summary.count(Outcome.WRITTEN)
