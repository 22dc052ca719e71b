"""Every action code against every VR family, through the engine and a real file round trip."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom.config
import pytest
from pydicom import dcmread, dcmwrite
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage
from pydicom.valuerep import validate_value

from dicomveil import Profile
from dicomveil.errors import ProfileError
from dicomveil.standard.actions import DUMMY_VALUES, Action, Code, dummy_value

from .conftest import EngineFactory, deid, write_profile

# One attribute per VR (keyword, VR, a non-empty original value).
VR_SAMPLES: list[tuple[str, str, object]] = [
    ("RetrieveAETitle", "AE", "SCANNER01"),
    ("PatientAge", "AS", "042Y"),
    ("FrameIncrementPointer", "AT", 0x00181063),
    ("BodyPartExamined", "CS", "HEAD"),
    ("StudyDate", "DA", "20240105"),
    ("AcquisitionDateTime", "DT", "20240105101500"),
    ("StudyTime", "TM", "101500"),
    ("PatientWeight", "DS", "72.5"),
    ("SeriesNumber", "IS", "7"),
    ("InstitutionName", "LO", "St Elsewhere Hospital"),
    ("AdditionalPatientHistory", "LT", "History of fall at home"),
    ("ReferringPhysicianName", "PN", "HOUSE^GREGORY"),
    ("AccessionNumber", "SH", "ACC12345"),
    ("InstitutionAddress", "ST", "1 Main Street, Springfield"),
    ("LongCodeValue", "UC", "A-LONG-CODE-VALUE"),
    ("URNCodeValue", "UR", "urn:oid:1.2.3"),
    ("TextValue", "UT", "Patient John Doe reports pain"),
    ("RecommendedDisplayFrameRateInFloat", "FL", 25.0),
    ("DiffusionBValue", "FD", 1000.0),
    ("ReferencePixelX0", "SL", -5),
    ("TagAngleSecondAxis", "SS", -3),
    ("SimpleFrameList", "UL", 12),
    ("Rows", "US", 16),
    ("ICCProfile", "OB", b"\x01\x02\x03\x04"),
    ("RedPaletteColorLookupTableData", "OW", b"\x01\x00\x02\x00"),
    ("VectorGridData", "OF", b"\x00\x00\x80\x3f"),
    ("SelectorODValue", "OD", b"\x00" * 7 + b"\x40"),
    ("SelectorOLValue", "OL", b"\x01\x00\x00\x00"),
    ("SelectorOVValue", "OV", b"\x01" + b"\x00" * 7),
    ("SelectorSVValue", "SV", -9),
    ("SelectorUVValue", "UV", 9),
    ("FrameOfReferenceUID", "UI", "1.2.826.0.1.3680043.99.1.2.3"),
]


def _dataset() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.99.7.7.7"
    ds.PatientID = "PAT-1"
    for keyword, _vr, value in VR_SAMPLES:
        setattr(ds, keyword, value)
    item = Dataset()
    item.ReferencedSOPClassUID = SecondaryCaptureImageStorage
    item.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.99.7.7.8"
    ds.ReferencedImageSequence = Sequence([item])
    return ds


def _profile(tmp_path: Path, action: str, keywords: list[str], value: str | None = None) -> Profile:
    lines = ['base = "keep"']
    for keyword in keywords:
        lines += ["[[rules]]", f'keyword = "{keyword}"', f'action = "{action}"']
        if value is not None:
            lines.append(f'value = "{value}"')
    return Profile.from_file(write_profile(tmp_path, "\n".join(lines)))


def _roundtrip(ds: Dataset) -> Dataset:
    """Write and read back: what a real file would hold."""
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    buffer.seek(0)
    return dcmread(buffer)


KEYWORDS = [k for k, _, _ in VR_SAMPLES]


def test_remove_every_vr(tmp_path: Path, make_engine: EngineFactory) -> None:
    engine = make_engine(_profile(tmp_path, "X", [*KEYWORDS, "ReferencedImageSequence"]))
    out = _roundtrip(deid(engine, _dataset()))
    for keyword in [*KEYWORDS, "ReferencedImageSequence"]:
        assert keyword not in out, keyword


def test_empty_every_vr(tmp_path: Path, make_engine: EngineFactory) -> None:
    engine = make_engine(_profile(tmp_path, "Z", [*KEYWORDS, "ReferencedImageSequence"]))
    out = _roundtrip(deid(engine, _dataset()))
    for keyword in KEYWORDS:
        assert keyword in out, keyword
        assert out[keyword].is_empty, keyword
    assert len(out.ReferencedImageSequence) == 0


@pytest.mark.parametrize(
    ("keyword", "vr", "original"), VR_SAMPLES, ids=[v for _, v, _ in VR_SAMPLES]
)
def test_dummy_is_valid_for_its_vr(
    tmp_path: Path, make_engine: EngineFactory, keyword: str, vr: str, original: object
) -> None:
    engine = make_engine(_profile(tmp_path, "D", [keyword]))
    out = _roundtrip(deid(engine, _dataset()))
    value = out[keyword].value
    assert not out[keyword].is_empty
    assert value != original
    if isinstance(value, str):
        validate_value(vr, value, pydicom.config.RAISE)
    if vr == "UI":
        assert str(value).startswith("2.25.")


def test_dummy_values_cover_every_vr_but_sequences() -> None:
    from pydicom.valuerep import VR

    # UI dummies are keyed UIDs made by the engine; sequences have no dummy value.
    missing = (
        {str(v) for v in VR}
        - set(DUMMY_VALUES)
        - {"SQ", "UI", "US or SS", "OB or OW", "US or OW", "US or SS or OW"}
    )
    assert not missing
    with pytest.raises(ProfileError):
        dummy_value("SQ")


def test_keep_every_vr_is_unchanged(tmp_path: Path, make_engine: EngineFactory) -> None:
    engine = make_engine(_profile(tmp_path, "K", KEYWORDS))
    before = _roundtrip(_dataset())
    out = _roundtrip(deid(engine, _dataset()))
    for keyword in KEYWORDS:
        assert out[keyword].value == before[keyword].value, keyword


def test_uid_action_replaces_uids_and_recurses_into_sequences(
    tmp_path: Path, make_engine: EngineFactory
) -> None:
    engine = make_engine(
        _profile(tmp_path, "U", ["FrameOfReferenceUID", "ReferencedImageSequence"])
    )
    out = _roundtrip(deid(engine, _dataset()))
    assert out.FrameOfReferenceUID != "1.2.826.0.1.3680043.99.1.2.3"
    assert out.FrameOfReferenceUID.startswith("2.25.")
    ref = out.ReferencedImageSequence[0]
    # ReferencedSOPInstanceUID is kept by the keep base, but the U on the sequence only
    # recurses: the items follow their own rules (keep) ...
    assert ref.ReferencedSOPClassUID == SecondaryCaptureImageStorage


@pytest.mark.parametrize(
    "keyword",
    [
        "InstitutionName",
        "AccessionNumber",
        "ReferringPhysicianName",
        "InstitutionAddress",
        "TextValue",
        "LongCodeValue",
    ],
)
def test_replace_text_vrs(tmp_path: Path, make_engine: EngineFactory, keyword: str) -> None:
    engine = make_engine(_profile(tmp_path, "replace", [keyword], "REDACTED"))
    out = _roundtrip(deid(engine, _dataset()))
    assert str(out[keyword].value) == "REDACTED"


def test_replace_value_invalid_for_vr_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"rules\[0\].*not valid for VR DA"):
        _profile(tmp_path, "replace", ["StudyDate"], "Anonymous")


def test_clean_keeps_descriptions_and_replaces_identifiers(make_engine: EngineFactory) -> None:
    def described() -> Dataset:
        ds = _dataset()
        ds.SeriesDescription = "T1 MPRAGE sag 1mm"
        ds.StudyDescription = "Brain for Dr. House, 05.01.2024"
        return ds

    out = deid(make_engine("ps3.15-basic", "clean-descriptors"), described())
    assert out.StudyDescription == "Brain for Dr. [NAME], [DATE]"
    assert out.SeriesDescription == "T1 MPRAGE sag 1mm"
    basic = deid(make_engine("ps3.15-basic"), described())
    assert "StudyDescription" not in basic and "SeriesDescription" not in basic


@pytest.mark.parametrize(
    ("code", "attribute_type", "expected"),
    [
        ("X/Z", "3", Action.REMOVE),
        ("X/Z", "2", Action.EMPTY),
        ("X/Z", None, Action.REMOVE),
        ("X/D", "3", Action.REMOVE),
        ("X/D", "2", Action.DUMMY),
        ("X/D", "1", Action.DUMMY),
        ("Z/D", "2", Action.EMPTY),
        ("Z/D", "2C", Action.EMPTY),
        ("Z/D", "1", Action.DUMMY),
        ("Z/D", "1C", Action.DUMMY),
        ("X/Z/D", "3", Action.REMOVE),
        ("X/Z/D", "2", Action.EMPTY),
        ("X/Z/D", "1", Action.DUMMY),
        ("X/Z/U*", "3", Action.REMOVE),
        ("X/Z/U*", "2", Action.UID),
        ("X/Z/U*", "1", Action.UID),
        ("Z", "1", Action.EMPTY),
        ("U", None, Action.UID),
    ],
)
def test_compound_codes_resolve_by_type(
    code: str, attribute_type: str | None, expected: Action
) -> None:
    assert Code.parse(code).resolve(attribute_type) is expected


def test_compound_codes_follow_the_iod_of_the_object(make_engine: EngineFactory) -> None:
    """SeriesDate is X/D: Type 3 in CT (removed), Type 1 in PET (a dummy)."""
    engine = make_engine()
    ct = _dataset()
    ct.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
    ct.SeriesDate = "20240105"
    ct.ContentDate = "20240105"  # Z/D, Type 2C in CT: emptied
    pet = _dataset()
    pet.SOPClassUID = "1.2.840.10008.5.1.4.1.1.128"  # PET Image Storage
    pet.SeriesDate = "20240105"
    out_ct, out_pet = deid(engine, ct), deid(engine, pet)
    assert "SeriesDate" not in out_ct
    assert out_ct["ContentDate"].is_empty
    assert out_pet.SeriesDate == "19000101"


def test_unknown_action_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"custom.toml: rules\[0\]: unknown action 'Q'"):
        _profile(tmp_path, "Q", ["StudyDate"])


def test_x_on_sequence_removes_nested_phi(make_engine: EngineFactory) -> None:
    ds = _dataset()
    other = Dataset()
    other.PatientID = "OTHER-ID-99"
    other.IssuerOfPatientID = "HOSPITAL"
    ds.OtherPatientIDsSequence = Sequence([other])
    out = deid(make_engine(), ds)
    assert "OtherPatientIDsSequence" not in out


def test_elements_not_in_the_dictionary_are_removed(make_engine: EngineFactory) -> None:
    ds = _dataset()
    ds.add(DataElement(0x00091234 - 0x00010000, "LO", "unknown even tag"))  # (0008,1234)
    out = deid(make_engine(), ds)
    assert 0x00081234 not in out
