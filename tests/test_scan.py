"""The quick scan (dicomveil.io.scan) against pydicom's reader, on real files.

For every file of pydicom's test data (and pydicom-data when installed) the scan either
declines (and pydicom reads the file) or gives the same elements pydicom gives: same tags in
the same order, same VRs, lengths, value bytes, offsets and encoding. Truncated and damaged
copies of real files must never be accepted with a different reading.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from dicomveil.errors import InputError
from dicomveil.io import read_scanned, read_source
from dicomveil.io import scan as scan_module
from dicomveil.io.scan import DEFER, scan
from tests.support import synthetic
from tests.support.commands import PYDICOM_DATA, real_files

FILES = real_files()


def _pydicom(path: Path) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dcmread(path, stop_before_pixels=True, defer_size=DEFER)


def _scanned(path: Path) -> Dataset | None:
    with path.open("rb") as fh:
        found = scan(fh, str(path))
    return None if found is None else found.dataset


def _same_element(tag: int, mine: Dataset, theirs: Dataset) -> None:
    raw_mine = mine.get_item(tag, keep_deferred=True)
    raw_theirs = theirs.get_item(tag, keep_deferred=True)
    if isinstance(raw_mine, RawDataElement) and isinstance(raw_theirs, RawDataElement):
        assert raw_mine == raw_theirs  # tag, VR, length, value bytes, offset, encoding
        return
    # pydicom decodes a few elements while reading (sequences of undefined length, the
    # character set, Pixel Representation); decoded, both readings are the same element.
    assert mine[tag] == theirs[tag]


def _compare(path: Path) -> bool:
    """True when the scan accepted the file (and agreed with pydicom)."""
    mine = _scanned(path)
    if mine is None:
        return False
    theirs = _pydicom(path)
    assert list(mine.keys()) == list(theirs.keys())
    for tag in theirs.keys():
        _same_element(tag, mine, theirs)
    assert mine.original_encoding == theirs.original_encoding
    assert mine.original_character_set == theirs.original_character_set
    assert mine.file_meta == theirs.file_meta
    assert mine.preamble == theirs.preamble
    # the scan makes its datasets without their constructors (io.scan._made): the same
    # attributes as pydicom's reading leaves (not its modification time: no deferred values;
    # nor the Pixel Representation pydicom's reader notes as it reads, nor did the scan before)
    for made, read in ((mine, theirs), (mine.file_meta, theirs.file_meta)):
        assert _state(made) == _state(read)
    return True


def _state(ds: Dataset) -> dict[str, object]:
    left = ("_dict", "file_meta", "timestamp", "_pixel_rep")
    return {k: v for k, v in vars(ds).items() if k not in left}


@pytest.mark.parametrize("case", FILES, ids=[c.name for c in FILES])
def test_scan_agrees_with_pydicom(case: object) -> None:
    path = case.path  # type: ignore[attr-defined]
    try:
        _pydicom(path)
    except Exception:
        # pydicom cannot read it: the scan must decline too, so that pydicom's reader
        # reports the problem.
        assert _scanned(path) is None
        return
    _compare(path)


def test_scanned_datasets_share_no_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two scans of one file: datasets that share no container (a change to one never shows
    in the other), equal to those pydicom's constructors make (the fallback when pydicom's
    attributes are not what the scan expects)."""
    path = PYDICOM_DATA / "test_files" / "CT_small.dcm"
    first, second = _scanned(path), _scanned(path)
    assert first is not None and second is not None
    for a, b in ((first, second), (first.file_meta, second.file_meta)):
        shared = [k for k, v in vars(a).items() if isinstance(v, (dict, list)) and v is vars(b)[k]]
        assert not shared
    first.PatientName = "CHANGED"
    first.private_block(0x0009, "X", create=True)
    assert second.PatientName != "CHANGED" and not second._private_blocks
    monkeypatch.setattr(scan_module, "_state", lambda meta, implicit: None)
    constructed = _scanned(path)
    assert constructed is not None
    assert _state(constructed) == _state(second)
    assert _state(constructed.file_meta) == _state(second.file_meta)
    assert list(constructed.keys()) == list(second.keys())


def test_most_real_files_take_the_quick_path() -> None:
    bundled = [c.path for c in FILES if c.name.startswith("test_files/")]
    accepted = 0
    for path in bundled:
        try:
            _pydicom(path)
        except Exception:
            continue
        accepted += _compare(path)
    # Big endian, deflated, prefix-less and odd files decline; most others are scanned.
    assert accepted >= len(bundled) // 3, (accepted, len(bundled))


@pytest.mark.parametrize(
    "name",
    ["MR_small_bigendian.dcm", "image_dfl.dcm", "no_meta.dcm", "rtplan_truncated.dcm"],
)
def test_unusual_files_are_left_to_pydicom(name: str) -> None:
    assert _scanned(PYDICOM_DATA / "test_files" / name) is None


def test_undefined_length_sequences_are_scanned() -> None:
    # An SR in explicit VR whose sequences have undefined length.
    path = PYDICOM_DATA / "test_files" / "reportsi.dcm"
    assert _compare(path)
    ds = _scanned(path)
    assert ds is not None
    raws = [ds.get_item(t, keep_deferred=True) for t in ds.keys()]
    assert any(isinstance(r, RawDataElement) and r.length == 0xFFFFFFFF for r in raws)


def _synthetic_file(tmp_path: Path) -> Path:
    patient = synthetic.fake_patient(7)
    path = tmp_path / "ct.dcm"
    synthetic.ct_series(patient, seed=7, n_slices=1, rows=16, columns=16)[0].save_as(
        path, enforce_file_format=True
    )
    return path


def test_truncated_copies_are_never_read_differently(tmp_path: Path) -> None:
    """Cut a real file at many places: the quick read either declines or reads exactly what
    pydicom's path reads; a cut inside an element is an error either way."""
    whole = _synthetic_file(tmp_path)
    data = whole.read_bytes()
    cuts = sorted({*range(130, len(data), max(1, len(data) // 60)), len(data) - 1})
    for cut in cuts:
        path = tmp_path / f"cut{cut}.dcm"
        path.write_bytes(data[:cut])
        quick = read_scanned(path)
        try:
            slow = read_source(path)
        except InputError:
            assert quick is None, f"cut at {cut}: accepted a file pydicom's path refuses"
            continue
        if quick is not None:
            assert list(quick.dataset.keys()) == list(slow.dataset.keys()), cut
            assert quick.pixels == slow.pixels, cut


def test_damaged_headers_are_left_to_pydicom(tmp_path: Path) -> None:
    whole = _synthetic_file(tmp_path)
    data = bytearray(whole.read_bytes())
    assert _scanned(whole) is not None
    bad_vr = bytearray(data)
    position = bad_vr.index(b"\x08\x00\x16\x00UI")  # SOP Class UID
    bad_vr[position + 4 : position + 6] = b"??"
    path = tmp_path / "bad_vr.dcm"
    path.write_bytes(bad_vr)
    assert _scanned(path) is None
    huge = bytearray(data)
    huge[position + 6 : position + 8] = b"\xff\xff"  # runs past the end of the file
    path = tmp_path / "huge.dcm"
    path.write_bytes(huge)
    assert _scanned(path) is None
