"""Tests of the synthetic DICOM builders (tests.support.synthetic, tools/make_sample.py)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MRImageStorage,
    UltrasoundImageStorage,
)

from tests.support.synthetic import (
    FakePatient,
    PhiRecord,
    ct_series,
    fake_patient,
    mr_series,
    phi_of,
    us_burned_in,
    write_series,
)

REPO = Path(__file__).resolve().parent.parent
MAKE_SAMPLE = REPO / "tools" / "make_sample.py"
SAMPLE = REPO / "examples" / "sample"
TRANSFER_SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian]
UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")

Builder = Callable[[FakePatient], list[FileDataset]]


@pytest.fixture(scope="module")
def patient() -> FakePatient:
    return fake_patient(1)


def _build_ct(p: FakePatient) -> list[FileDataset]:
    return ct_series(p, seed=7)


def _build_ct_implicit(p: FakePatient) -> list[FileDataset]:
    return ct_series(p, seed=7, transfer_syntax=ImplicitVRLittleEndian)


def _build_ct_big(p: FakePatient) -> list[FileDataset]:
    return ct_series(p, seed=7, transfer_syntax=ExplicitVRBigEndian)


def _build_mr(p: FakePatient) -> list[FileDataset]:
    return mr_series(p, seed=7)


def _build_us(p: FakePatient) -> list[FileDataset]:
    return [us_burned_in(p, seed=7)]


BUILDERS: dict[str, Builder] = {
    "ct": _build_ct,
    "ct-implicit": _build_ct_implicit,
    "ct-big-endian": _build_ct_big,
    "mr": _build_mr,
    "us": _build_us,
}


def _read_all(paths: list[Path]) -> list[FileDataset]:
    return [pydicom.dcmread(path) for path in paths]


# ------------------------------------------------------------------- fake_patient


def test_fake_patient_is_deterministic_and_plausible() -> None:
    assert fake_patient(3) == fake_patient(3)
    patients = [fake_patient(seed) for seed in range(12)]
    assert len({p.name for p in patients}) > 5
    assert len({p.patient_id for p in patients}) == len(patients)
    for p in patients:
        surname, given, middle = p.name.split("^")
        assert len(surname) >= 3 and len(given) >= 3 and len(middle) == 1
        assert re.fullmatch(r"(19|20)\d{6}", p.birth_date)
        assert re.fullmatch(r"\d{3}Y", p.age)
        assert p.sex in ("M", "F")
        assert len(p.other_ids) == 2
        assert all(v.isascii() for v in (p.name, p.address, p.phone, p.issuer))
        assert len(p.phone) <= 16  # SH


# ------------------------------------------------------------------- determinism


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_written_bytes_are_identical_across_calls(
    kind: str, patient: FakePatient, tmp_path: Path
) -> None:
    first = write_series(BUILDERS[kind](patient), tmp_path / "a")
    second = write_series(BUILDERS[kind](patient), tmp_path / "b")
    assert [p.name for p in first] == [p.name for p in second]
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes()


def test_different_seeds_give_different_uids(patient: FakePatient) -> None:
    a = ct_series(patient, seed=1)
    b = ct_series(patient, seed=2)
    assert a[0].StudyInstanceUID != b[0].StudyInstanceUID
    assert a[0].SOPInstanceUID != b[0].SOPInstanceUID


# ------------------------------------------------------------- round trip + PHI


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_files_read_back_with_preamble_and_file_meta(
    kind: str, patient: FakePatient, tmp_path: Path
) -> None:
    built = BUILDERS[kind](patient)
    paths = write_series(built, tmp_path)
    for path, original in zip(paths, built, strict=True):
        raw = path.read_bytes()
        assert raw[:128] == bytes(128) and raw[128:132] == b"DICM"
        ds = pydicom.dcmread(path)
        meta = ds.file_meta
        assert meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
        assert meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert meta.MediaStorageSOPClassUID == ds.SOPClassUID
        assert ds.SpecificCharacterSet == "ISO_IR 100"
        assert ds.PatientName == patient.name
        assert ds.PatientID == patient.patient_id
        assert ds.PatientBirthDate == patient.birth_date
        assert ds.PixelData == original.PixelData
        assert any(ds.PixelData)
        expected = ds.Rows * ds.Columns * ds.SamplesPerPixel * (ds.BitsAllocated // 8)
        assert len(ds.PixelData) == expected


@pytest.mark.parametrize("syntax", TRANSFER_SYNTAXES)
def test_ct_pixel_bytes_follow_the_byte_order(syntax: str, patient: FakePatient) -> None:
    ds = ct_series(patient, seed=7, transfer_syntax=syntax)[0]
    data = ds.PixelData
    high = data[0::2] if syntax == ExplicitVRBigEndian else data[1::2]
    assert max(high) < 16  # 12 bits stored
    assert ds.SOPClassUID == CTImageStorage


def test_ct_phi_locations(patient: FakePatient, tmp_path: Path) -> None:
    paths = write_series(ct_series(patient, seed=7, n_slices=3), tmp_path)
    files = _read_all(paths)
    phi = phi_of(files)
    for ds in files:
        assert ds.OtherPatientIDsSequence[0].PatientID == patient.other_ids[0]
        assert ds.OtherPatientIDsSequence[0].PatientID in phi.ids
        assert ds.OtherPatientIDsSequence[1].PatientID in phi.ids
        acme = ds.private_block(0x0009, "ACME PRIVATE")
        assert acme[0x01].value == patient.name
        item = acme[0x02].value[0]
        inner = item.private_block(0x0009, "ACME PRIVATE")
        assert inner[0x10].value == patient.patient_id
        assert inner[0x11].value == ds.StudyInstanceUID
        gems = ds.private_block(0x0043, "GEMS_PARM_01")
        assert gems[0x39].VR == "IS" and len(gems[0x39].value) == 4
        assert ds.ImageComments.startswith("seen by Dr. ")
        assert ds.RequestAttributesSequence[0].RequestedProcedureID in phi.ids
        assert ds.RequestAttributesSequence[0].ScheduledProcedureStepID in phi.ids
        assert ds.AcquisitionDateTime in phi.dates
    assert 0x50003000 in files[0] and 0x50000005 in files[0]
    assert 0x50003000 not in files[1]
    philips = files[-1].private_block(0x7053, "Philips PET Private Group")
    assert philips[0x00].VR == "DS"
    locations = [float(ds.SliceLocation) for ds in files]
    assert len(set(locations)) == 3
    assert [ds.InstanceNumber for ds in files] == [1, 2, 3]


def test_mr_phi_locations(patient: FakePatient, tmp_path: Path) -> None:
    files = _read_all(write_series(mr_series(patient, seed=7), tmp_path))
    name = patient.name.encode("ascii")
    for ds in files:
        assert ds.SOPClassUID == MRImageStorage
        assert ds.SeriesDescription == "T1 MPRAGE sag 1mm"
        assert ds[0x00290010].value == "SIEMENS CSA HEADER"
        assert ds[0x00290011].value == "SIEMENS MEDCOM HEADER"
        assert ds[0x00291008].value == "IMAGE NUM 4"
        assert ds[0x00291009].value == "20100114"
        for tag in (0x00291010, 0x00291020):
            blob = ds[tag].value
            assert ds[tag].VR == "OB" and blob.startswith(b"SV10") and name in blob
            assert 200 <= len(blob) <= 2000
        assert {0x00291018, 0x00291019, 0x00291108, 0x00291109} <= set(ds.keys())
        header = ds.private_block(0x0019, "SIEMENS MR HEADER")
        for offset, vr in ((0x0C, "IS"), (0x0D, "CS"), (0x0E, "FD"), (0x27, "FD")):
            assert vr == header[offset].VR
        assert patient.surname in ds[0x60001500].value
        assert patient.surname.title() in ds[0x60000022].value
        overlay = ds[0x60003000].value
        assert len(overlay) == (ds.Rows * ds.Columns + 7) // 8 and any(overlay)


def test_us_has_burned_in_annotation(patient: FakePatient, tmp_path: Path) -> None:
    (path,) = write_series([us_burned_in(patient, seed=7)], tmp_path)
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == UltrasoundImageStorage
    assert ds.BurnedInAnnotation == "YES"
    assert ds.PhotometricInterpretation == "RGB" and ds.SamplesPerPixel == 3
    banner = ds.PixelData[: 24 * ds.Columns * 3]
    assert b"\xff\xff\xff" in banner  # the burned-in text
    assert patient.surname in phi_of([ds]).names


# --------------------------------------------------------------------- phi_of


def test_phi_of_collects_names_components_ids_dates_and_uids(patient: FakePatient) -> None:
    ct = ct_series(patient, seed=7)
    mr = mr_series(patient, seed=7)
    phi = phi_of([*ct, *mr])
    surname, given, middle = patient.name.split("^")
    assert {patient.name, surname, given} <= phi.names
    assert middle not in phi.names  # single letters are useless for byte searches
    assert str(ct[0].ReferringPhysicianName) in phi.names
    assert str(ct[0].ReferringPhysicianName).split("^")[0] in phi.names
    assert str(ct[0].OtherPatientNames) in phi.names
    assert {patient.patient_id, patient.issuer, *patient.other_ids} <= phi.ids
    assert {ct[0].AccessionNumber, ct[0].StudyID, ct[0].DeviceSerialNumber} <= phi.ids
    assert {patient.birth_date, ct[0].StudyDate} <= phi.dates
    assert {patient.address, patient.phone, ct[0].InstitutionName} <= phi.texts
    assert {ct[0].ImageComments, mr[0].SeriesDescription, mr[0][0x60001500].value} <= phi.texts
    instance_uids = {ds.SOPInstanceUID for ds in [*ct, *mr]}
    assert instance_uids <= phi.uids
    assert {
        ct[0].StudyInstanceUID,
        ct[0].SeriesInstanceUID,
        mr[0].SeriesInstanceUID,
        ct[0].FrameOfReferenceUID,
        ct[0].InstanceCreatorUID,
    } <= phi.uids
    assert CTImageStorage not in phi.uids and MRImageStorage not in phi.uids
    assert ExplicitVRLittleEndian not in phi.uids
    assert PYDICOM_IMPLEMENTATION_UID not in phi.uids
    assert all(UID_RE.match(uid) and len(uid) <= 64 for uid in phi.uids)


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_phi_values_are_in_the_written_bytes(
    kind: str, patient: FakePatient, tmp_path: Path
) -> None:
    built = BUILDERS[kind](patient)
    paths = write_series(built, tmp_path)
    blob = b"".join(path.read_bytes() for path in paths)
    phi = phi_of(built)
    missing = sorted(v for v in phi.all_values() if v.encode("latin-1") not in blob)
    assert missing == []
    # reading the files back finds the same values, even where private elements
    # become UN (implicit VR)
    assert phi_of(_read_all(paths)) == phi


def test_phi_record_is_empty_for_empty_input() -> None:
    assert phi_of([]) == PhiRecord()
    assert phi_of([Dataset()]).all_values() == frozenset()


# ---------------------------------------------------------------- UID consistency


def test_references_point_into_the_same_series(patient: FakePatient) -> None:
    ct = ct_series(patient, seed=7, n_slices=4)
    mr = mr_series(patient, seed=7)
    uids = [ds.SOPInstanceUID for ds in ct]
    assert len(set(uids)) == 4
    for i, ds in enumerate(ct):
        assert ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID == uids[(i + 1) % 4]
        assert ds.ReferencedStudySequence[0].ReferencedSOPInstanceUID == ds.StudyInstanceUID
        if i:
            assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == uids[0]
    # same patient and seed: same study, other series and frame of reference
    assert mr[0].StudyInstanceUID == ct[0].StudyInstanceUID
    assert mr[0].AccessionNumber == ct[0].AccessionNumber
    assert mr[0].SeriesInstanceUID != ct[0].SeriesInstanceUID
    assert mr[0].FrameOfReferenceUID != ct[0].FrameOfReferenceUID
    assert not set(uids) & {ds.SOPInstanceUID for ds in mr}


# ---------------------------------------------------------------- write_series


def test_write_series_names_carry_no_phi(patient: FakePatient, tmp_path: Path) -> None:
    built = ct_series(patient, seed=7)
    paths = write_series(built, tmp_path / "x", names="slice_{index:03d}.dcm")
    assert [p.name for p in paths] == ["slice_001.dcm", "slice_002.dcm", "slice_003.dcm"]
    phi = phi_of(built)
    for path in paths:
        assert not any(v in str(path) for v in phi.all_values())
    with pytest.raises(ValueError, match="same name"):
        write_series(built, tmp_path / "y", names="fixed")
    with pytest.raises(ValueError, match="invalid file name"):
        write_series(built, tmp_path / "z", names="../IM{index}")


def test_builders_reject_bad_arguments(patient: FakePatient) -> None:
    with pytest.raises(ValueError, match="transfer syntax"):
        ct_series(patient, seed=1, transfer_syntax="1.2.840.10008.1.2.4.50")
    with pytest.raises(ValueError, match="n_slices"):
        mr_series(patient, seed=1, n_slices=0)


# ------------------------------------------------------------------ make_sample


def _run_make_sample(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(MAKE_SAMPLE), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def _folder_bytes(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_make_sample_is_small_complete_and_deterministic(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    for out in (first, second):
        result = _run_make_sample(str(out))
        assert result.returncode == 0, result.stderr
        assert "deterministic: OK" in result.stdout
    files = _folder_bytes(first)
    assert files == _folder_bytes(second)
    assert sum(len(data) for data in files.values()) < 400_000
    assert sorted(files) == [
        "ct1/IM0001",
        "ct1/IM0002",
        "ct1/IM0003",
        "ct2/IM0001",
        "ct2/IM0002",
        "mr1/IM0001",
        "mr1/IM0002",
        "mr1/IM0003",
        "notes.txt",
        "us/IM0001",
    ]
    assert files["notes.txt"].startswith(b"scan notes")
    datasets = {name: pydicom.dcmread(first / name) for name in files if name != "notes.txt"}
    assert datasets["us/IM0001"].BurnedInAnnotation == "YES"
    ct1, mr1, ct2 = datasets["ct1/IM0001"], datasets["mr1/IM0001"], datasets["ct2/IM0001"]
    assert ct1.PatientName == mr1.PatientName != ct2.PatientName
    assert ct1.StudyInstanceUID == mr1.StudyInstanceUID != ct2.StudyInstanceUID
    phi = phi_of(datasets.values())
    for name in files:
        assert not any(value in name for value in phi.all_values())
    assert _run_make_sample(str(first), "--check").returncode == 0
    (first / "ct1" / "IM0001").write_bytes(b"changed")
    assert _run_make_sample(str(first), "--check").returncode == 1


@pytest.mark.skipif(not SAMPLE.is_dir(), reason="examples/sample has not been generated")
def test_checked_in_sample_is_up_to_date() -> None:
    result = _run_make_sample(str(SAMPLE), "--check")
    assert result.returncode == 0, result.stderr + " (run: python tools/make_sample.py)"


# --------------------------------------------------------------------- dciodvfy


@pytest.mark.skipif(
    shutil.which("dciodvfy") is None,
    reason="dciodvfy not on PATH (install the Debian package dicom3tools)",
)
@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_dciodvfy_reports_no_errors(kind: str, patient: FakePatient, tmp_path: Path) -> None:
    for path in write_series(BUILDERS[kind](patient), tmp_path):
        result = subprocess.run(
            ["dciodvfy", str(path)], capture_output=True, text=True, check=False, timeout=60
        )
        output = result.stdout + result.stderr
        errors = [line for line in output.splitlines() if "Error" in line]
        assert errors == [], f"{path.name}:\n{output}"
