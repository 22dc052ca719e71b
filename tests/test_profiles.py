"""Profiles: presets, options (with dcm4chee aliases), custom TOML files, load-time errors."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileDataset

from dicomveil import Option, Profile
from dicomveil.errors import ProfileError
from dicomveil.profiles import Base, preset_names
from dicomveil.standard.risks import Risk
from tests.support import synthetic

from .conftest import TODAY, EngineFactory, deid, write_profile

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
PRESETS = [
    "lab-dicombrowser",
    "neuro-research",
    "nidb-anonymize",
    "nidb-anonymize-full",
    "original",
    "ps3.15-basic",
    "qmenta",
]


def test_every_preset_is_listed_and_described() -> None:
    assert sorted(preset_names()) == PRESETS
    for name in PRESETS:
        profile = Profile.named(name)
        assert profile.name == name
        assert profile.description and profile.source


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_has_the_shape_a_users_file_is_checked_for(name: str) -> None:
    """Presets are read without pydantic (a run starts without it): each passes the check
    a user's file gets, and the reader's tables are the checked file's keys."""
    import dataclasses
    import tomllib
    from importlib import resources

    from dicomveil.profiles.loading import _Spec
    from dicomveil.profiles.profile_file import ProfileFile, check_shape

    raw = resources.files("dicomveil.profiles").joinpath("presets", f"{name}.toml").read_text()
    check_shape(tomllib.loads(raw), name)  # raises ProfileError on a wrong key or type
    assert [f.name for f in dataclasses.fields(_Spec)] == list(ProfileFile.model_fields)


def test_unknown_profile_name_is_an_error() -> None:
    with pytest.raises(ProfileError, match="unknown profile 'no-such-profile'"):
        Profile.named("no-such-profile")


@pytest.mark.parametrize(
    ("alias", "option"),
    [
        ("RetainUIDsOption", Option.RETAIN_UIDS),
        ("RetainLongitudinalTemporalInformationFullDatesOption", Option.RETAIN_LONG_FULL_DATES),
        ("RetainDeviceIdentityOption", Option.RETAIN_DEVICE_IDENTITY),
        ("RetainInstitutionIdentityOption", Option.RETAIN_INSTITUTION_IDENTITY),
        ("RetainPatientIDHashOption", Option.RETAIN_PATIENT_ID_HASH),
        ("retain_safe_private", Option.RETAIN_SAFE_PRIVATE),
        ("clean-descriptors", Option.CLEAN_DESCRIPTORS),
    ],
)
def test_option_names_and_dcm4chee_aliases(alias: str, option: Option) -> None:
    assert Option.parse(alias) is option


def test_unknown_option_is_an_error() -> None:
    with pytest.raises(ProfileError, match="unknown option 'retain-everything'"):
        Option.parse("retain-everything")


def test_full_and_modified_dates_cannot_be_combined() -> None:
    with pytest.raises(ProfileError, match="cannot be combined"):
        Profile.named("ps3.15-basic").with_options(
            ["retain-long-full-dates", "retain-long-modified-dates"]
        )


def _ct(patient: synthetic.FakePatient) -> FileDataset:
    return synthetic.ct_series(patient, seed=3, n_slices=1, rows=8, columns=8)[0]


def _mr(patient: synthetic.FakePatient) -> FileDataset:
    return synthetic.mr_series(patient, seed=3, n_slices=1, rows=8, columns=8)[0]


def test_basic_profile_on_a_realistic_ct(
    make_engine: EngineFactory, patient: synthetic.FakePatient
) -> None:
    source = _ct(patient)
    out = deid(make_engine(), _ct(patient))
    assert out.PatientName == out.PatientID != patient.patient_id
    assert out.PatientID.startswith("DV")
    for keyword in (
        "PatientBirthDate",
        "StudyDate",
        "AccessionNumber",
        "StudyID",
        "ReferringPhysicianName",
        "PatientSex",
    ):
        assert out[keyword].is_empty, keyword
    for keyword in (
        "InstitutionName",
        "StationName",
        "DeviceSerialNumber",
        "PatientAge",
        "PatientWeight",
        "StudyDescription",
        "OtherPatientIDsSequence",
        "PatientAddress",
        "OperatorsName",
        "RequestAttributesSequence",
    ):
        assert keyword not in out, keyword
    assert out.StudyInstanceUID != source.StudyInstanceUID
    assert out.SOPInstanceUID != source.SOPInstanceUID
    assert not any(tag.group & 1 for tag in out.keys()), "private elements must be removed"
    assert out.Modality == "CT" and out.Rows == source.Rows  # kept: not identifying
    assert out.PatientIdentityRemoved == "YES"
    assert out.LongitudinalTemporalInformationModified == "REMOVED"
    codes = [item.CodeValue for item in out.DeidentificationMethodCodeSequence]
    assert codes == ["113100"]


@pytest.mark.parametrize(
    ("option", "kept", "code"),
    [
        ("retain-device-identity", ["StationName", "DeviceSerialNumber"], "113109"),
        ("retain-institution-identity", ["InstitutionName", "InstitutionAddress"], "113112"),
        ("retain-patient-characteristics", ["PatientSex", "PatientAge", "PatientWeight"], "113108"),
        ("retain-long-full-dates", ["StudyDate", "SeriesDate", "AcquisitionDate"], "113106"),
        ("retain-uids", ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"], "113110"),
    ],
)
def test_each_retain_option_keeps_its_attributes(
    make_engine: EngineFactory,
    patient: synthetic.FakePatient,
    option: str,
    kept: list[str],
    code: str,
) -> None:
    source = _ct(patient)
    basic = deid(make_engine(), _ct(patient))
    out = deid(make_engine("ps3.15-basic", option), _ct(patient))
    for keyword in kept:
        assert keyword in source, keyword
        assert out[keyword].value == source[keyword].value, keyword
        assert keyword not in basic or basic[keyword].value != source[keyword].value, keyword
    codes = {item.CodeValue for item in out.DeidentificationMethodCodeSequence}
    assert codes == {"113100", code}


def test_patient_age_over_89_is_capped(
    make_engine: EngineFactory, patient: synthetic.FakePatient
) -> None:
    ds = _ct(patient)
    ds.PatientAge = "093Y"
    assert (
        deid(make_engine("ps3.15-basic", "retain-patient-characteristics"), ds).PatientAge == "090Y"
    )
    young = _ct(patient)
    young.PatientAge = "045Y"
    assert (
        deid(make_engine("ps3.15-basic", "retain-patient-characteristics"), young).PatientAge
        == "045Y"
    )


def test_retain_safe_private_keeps_only_the_safe_list(
    make_engine: EngineFactory, patient: synthetic.FakePatient
) -> None:
    source = _mr(patient)
    out = deid(make_engine("ps3.15-basic", "retain-safe-private"), _mr(patient))
    block = source.private_block(0x0019, "SIEMENS MR HEADER")
    kept_block = out.private_block(0x0019, "SIEMENS MR HEADER")
    kept = [e.tag for e in out if e.tag.group == 0x0019 and e.tag.element > 0xFF]
    assert kept, "safe SIEMENS MR HEADER elements must stay"
    for tag in kept:
        assert out[tag].value == source[block.get_tag(tag.element & 0xFF)].value
    assert kept_block.block_start == block.block_start
    assert not any(e.tag.group == 0x0029 for e in out), "CSA headers are not on the safe list"
    assert 0x00290010 not in out, "the creator of a removed block goes with it"
    codes = {item.CodeValue for item in out.DeidentificationMethodCodeSequence}
    assert "113111" in codes


def test_a_safe_private_element_holding_the_patients_values_is_removed(
    make_engine: EngineFactory, patient: synthetic.FakePatient
) -> None:
    """The safe list keeps what vendors put in those elements; one holding the patient's
    name, ID or birth date is not that, and goes (a black-box test found such values kept,
    and verify missed a surname alone); a number is compared whole."""
    source = _mr(patient)
    block = source.private_block(0x2001, "Philips Imaging DD 001", create=True)
    block.add_new(0x10, "LO", f"{patient.given_name} {patient.surname}".title())
    block.add_new(0x04, "CS", patient.surname.upper())
    block.add_new(0x03, "DS", str(source.PatientBirthDate))  # the birth date as a number
    block.add_new(0x02, "IS", "2")  # a number that is no one's: kept
    out = deid(make_engine("ps3.15-basic", "retain-safe-private"), source)
    kept = out.private_block(0x2001, "Philips Imaging DD 001")
    assert kept.get_tag(0x02) in out
    for offset in (0x10, 0x04, 0x03):
        assert kept.get_tag(offset) not in out, hex(offset)


def test_retain_tcia_private_uses_tcia_dispositions(
    make_engine: EngineFactory, patient: synthetic.FakePatient
) -> None:
    source = _ct(patient)
    assert any(e.tag.group == 0x0043 for e in source)
    out = deid(make_engine("ps3.15-basic", "retain-tcia-private"), _ct(patient))
    block = out.private_block(0x0043, "GEMS_PARM_01")
    assert block.get_tag(0x39) in out, "TCIA keeps GEMS_PARM_01 0043,xx39"
    assert not any(e.tag.group == 0x0009 for e in out), "unknown creators are removed"


def test_retain_patient_id_hash(make_engine: EngineFactory, patient: synthetic.FakePatient) -> None:
    out = deid(make_engine("ps3.15-basic", "RetainPatientIDHashOption"), _ct(patient))
    assert len(out.PatientID) == 32 and out.PatientID != patient.patient_id
    assert out.IssuerOfPatientID != patient.issuer and len(out.IssuerOfPatientID) == 32
    again = deid(make_engine("ps3.15-basic", "retain-patient-id-hash"), _ct(patient))
    assert again.PatientID == out.PatientID


def test_clean_structured_content_cleans_sr_content_the_basic_profile_withholds(
    make_engine: EngineFactory,
) -> None:
    def sr() -> Dataset:
        ds = Dataset()
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.33"
        ds.SOPInstanceUID = "1.2.3.4.5.6.7"
        ds.PatientID = "X1"
        item = Dataset()
        item.ValueType = "TEXT"
        item.TextValue = "Seen by Dr Smith"
        ds.ContentSequence = [item]
        return ds

    result = make_engine("ps3.15-basic").deidentify(sr())
    assert result.dataset is None
    assert result.withheld is Risk.STRUCTURED_CONTENT
    out = deid(make_engine("ps3.15-basic", "clean-structured-content"), sr())
    assert out.ContentSequence[0].TextValue == "Seen by Dr [NAME]"


def test_clean_graphics_keeps_overlays_the_basic_profile_removes(
    make_engine: EngineFactory, patient: synthetic.FakePatient
) -> None:
    source = _mr(patient)
    assert 0x60003000 in source
    basic = deid(make_engine("ps3.15-basic"), _mr(patient))
    assert 0x60003000 not in basic and 0x60004000 not in basic
    out = deid(make_engine("ps3.15-basic", "clean-graphics"), _mr(patient))
    assert out[0x60003000].value == source[0x60003000].value
    assert patient.surname.lower() not in str(out[0x60001500].value).lower()


# ----------------------------------------------------------------------------- custom files


def test_custom_profile_extends_adds_options_and_overrides(
    tmp_path: Path, make_engine: EngineFactory, patient: synthetic.FakePatient
) -> None:
    path = write_profile(
        tmp_path,
        """
name = "my-study"
description = "keep series descriptions for BIDS"
extends = "ps3.15-basic"
options = ["retain-uids", "RetainDeviceIdentityOption"]
allow = ["burned-in-annotation"]

[[rules]]
keyword = "SeriesDescription"
action = "K"
reason = "BIDS conversion"

[[rules]]
tag = "0008,0022"
action = "replace"
value = "{today}"

[[rules]]
tag = "60xx,3000"
action = "K"

[[rules]]
private = { creator = "SIEMENS CSA HEADER", group = "0029", element = "xx08" }
action = "K"
""",
    )
    profile = Profile.from_file(path)
    assert profile.name == "my-study"
    assert {Option.RETAIN_UIDS, Option.RETAIN_DEVICE_IDENTITY} <= profile.options
    assert Risk.BURNED_IN_ANNOTATION in profile.allow
    source = _mr(patient)
    out = deid(make_engine(profile), _mr(patient))
    assert out.SeriesDescription == source.SeriesDescription
    assert out.AcquisitionDate == TODAY.strftime("%Y%m%d")
    assert out.SOPInstanceUID == source.SOPInstanceUID
    assert out[0x60003000].value == source[0x60003000].value
    csa = out.private_block(0x0029, "SIEMENS CSA HEADER")
    assert (
        out[csa.get_tag(0x08)].value
        == source[source.private_block(0x0029, "SIEMENS CSA HEADER").get_tag(0x08)].value
    )
    assert csa.get_tag(0x10) not in out, "other CSA elements still go"


def test_custom_profile_can_extend_another_file(tmp_path: Path) -> None:
    write_profile(tmp_path, 'extends = "ps3.15-basic"\noptions = ["retain-uids"]\n', "a.toml")
    child = Profile.from_file(
        write_profile(tmp_path, 'extends = "a.toml"\noptions = ["retain-safe-private"]\n', "b.toml")
    )
    assert {Option.RETAIN_UIDS, Option.RETAIN_SAFE_PRIVATE} <= child.options


def test_u_on_a_private_text_removes_it(
    tmp_path: Path, make_engine: EngineFactory, patient: synthetic.FakePatient
) -> None:
    """U replaces UIDs; a private element it is given that holds no UID (a name) is removed,
    never kept as it was (a black-box test: a U rule kept the original value)."""
    path = write_profile(
        tmp_path,
        'extends = "ps3.15-basic"\n[[rules]]\n'
        'private = { creator = "ACME", group = "0011", element = "xx01" }\naction = "U"\n',
        "u.toml",
    )
    source = _mr(patient)
    block = source.private_block(0x0011, "ACME", create=True)
    block.add_new(0x01, "LO", str(patient.name))
    block.add_new(0x02, "UI", "1.2.3.4.5")  # no rule: removed with the private groups
    out = deid(make_engine(Profile.from_file(path)), source)
    assert 0x00111001 not in out
    assert str(patient.name).encode() not in b"".join(
        bytes(e.value) if isinstance(e.value, bytes) else str(e.value).encode() for e in out
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[[rules]]\nkeyword = "PatientNam"\naction = "X"', r"rules\[0\]: unknown keyword"),
        ('[[rules]]\ntag = "0011,0010"\naction = "X"', r"rules\[0\]: .*private"),
        ('[[rules]]\ntag = "0008,1234"\naction = "X"', r"rules\[0\]: unknown tag"),
        ('[[rules]]\ntag = "zz"\naction = "X"', r"rules\[0\]: not a tag"),
        ('[[rules]]\nkeyword = "PatientName"\naction = "B"', r"rules\[0\]: unknown action"),
        ('[[rules]]\nkeyword = "PatientName"\naction = "X"\nvalue = "a"', r"only action 'repl"),
        (
            '[[rules]]\nkeyword = "StudyDate"\naction = "replace"\nvalue = "{birthday}"',
            r"unknown template field",
        ),
        ('[[rules]]\nkeyword = "StudyDate"\naction = "U"', r"rules\[0\]: action U replaces UIDs"),
        ('options = ["retain-nothing"]', r"options\[0\]: unknown option"),
        (
            '[[rules]]\nkeyword = "OtherPatientIDsSequence"\naction = "replace"\nvalue = "Anon"',
            r"a sequence cannot be replaced",
        ),
        ('allow = ["everything"]', r"allow\[0\]: unknown risk"),
        ('extends = "nope"', r"extends unknown profile"),
        ('colour = "blue"', r"unknown key\(s\) colour"),
        ('base = "secret"', r"unknown base"),
        ('extends = "original"', r"cannot extend a byte-identical copy"),
        ("this is = not toml", r"not valid TOML"),
    ],
)
def test_bad_profile_files_name_the_file_and_entry(tmp_path: Path, body: str, message: str) -> None:
    path = write_profile(tmp_path, body, "bad.toml")
    with pytest.raises(ProfileError, match=message) as info:
        Profile.from_file(path)
    assert "bad.toml" in str(info.value)


def test_profile_cycles_are_an_error(tmp_path: Path) -> None:
    write_profile(tmp_path, 'extends = "b.toml"\n', "a.toml")
    write_profile(tmp_path, 'extends = "a.toml"\n', "b.toml")
    with pytest.raises(ProfileError, match="cycle"):
        Profile.from_file(tmp_path / "a.toml")


def test_digest_changes_with_content() -> None:
    basic = Profile.named("ps3.15-basic")
    assert basic.digest == Profile.named("ps3.15-basic").digest
    assert basic.digest != basic.with_options(["retain-uids"]).digest
    assert len(basic.digest) == 64


# ----------------------------------------------------------------------------- seed presets


def _all_values(ds: Dataset) -> dict[int, object]:
    return {e.tag: e.value for e in ds if e.VR != "SQ"}


def test_original_is_a_byte_identical_copy(tmp_path: Path, ct: list[FileDataset]) -> None:
    from dicomveil import Key, RunConfig, run

    files = synthetic.write_series(ct, tmp_path / "in")
    summary = run(
        [tmp_path / "in"],
        RunConfig(
            profile=Profile.named("original"),
            key=Key(b"k" * 32),
            output=tmp_path / "out",
            workers=1,
        ),
    )
    assert len(summary.written) == len(files)
    originals = sorted(f.read_bytes() for f in files)
    assert sorted(r.output.read_bytes() for r in summary.written if r.output) == originals
    assert Profile.named("original").base is Base.COPY


NIDB_FIVE = {
    "ReferringPhysicianName": "Anon",
    "PerformingPhysicianName": "Anon",
    "OperatorsName": "Anon",
    "PatientName": "Anon",
    "PatientBirthDate": "10000101",
}


def test_nidb_anonymize_changes_five_tags_and_nothing_else(
    make_engine: EngineFactory, patient: synthetic.FakePatient
) -> None:
    source = _ct(patient)
    source.PerformingPhysicianName = "CUTTER^CAMERON"
    changed = _ct(patient)
    changed.PerformingPhysicianName = "CUTTER^CAMERON"
    out = deid(make_engine("nidb-anonymize"), changed)
    for keyword, value in NIDB_FIVE.items():
        assert str(out[keyword].value) == value, keyword
    before, after = _all_values(source), _all_values(out)
    added = {0x00120062, 0x00120063}  # PatientIdentityRemoved, DeidentificationMethod
    differing = {t for t in set(before) | set(after) if before.get(t) != after.get(t)} - added
    from pydicom.datadict import tag_for_keyword

    assert differing == {tag_for_keyword(k) for k in NIDB_FIVE}
    assert any(e.tag.group & 1 for e in out), "NiDB keeps private elements"


def test_nidb_anonymize_full(make_engine: EngineFactory, patient: synthetic.FakePatient) -> None:
    out = deid(make_engine("nidb-anonymize-full"), _ct(patient))
    assert out.InstitutionName == "Anon" and out.StationName == "Anon"
    assert out.PatientID == "Anon" and out.StudyDate == "10000101"
    assert out.StudyTime == "000000.000000"
    assert out["PatientWeight"].is_empty, "NiDB's 'Anon' is not a valid DS: emptied"
    assert "OtherPatientIDsSequence" not in out


def test_qmenta(make_engine: EngineFactory, patient: synthetic.FakePatient) -> None:
    out = deid(make_engine("qmenta"), _ct(patient))
    assert out["PatientName"].is_empty and out["PatientID"].is_empty
    assert "InstitutionName" not in out and "PatientAge" not in out
    assert not any(e.tag.group & 1 for e in out), "private elements removed (privacy first)"
    assert out.Modality == "CT"


def test_lab_dicombrowser(make_engine: EngineFactory, patient: synthetic.FakePatient) -> None:
    source = _mr(patient)
    out = deid(make_engine("lab-dicombrowser"), _mr(patient))
    assert out.PatientName == "Anonymous" and out.PatientID == "Anonymous"
    assert out.StudyDate == "19000101", "DA gets a valid date, not the text 'Anonymous'"
    assert out.AcquisitionDate == TODAY.strftime("%Y%m%d")
    assert out["PatientWeight"].is_empty
    csa = out.private_block(0x0029, "SIEMENS CSA HEADER")
    assert out[csa.get_tag(0x09)].value == "Anonymous"
    medcom = out.private_block(0x0029, "SIEMENS MEDCOM HEADER")
    assert out[medcom.get_tag(0x09)].value == "Anonymous"
    # Elements the lab does not list are kept, CSA image header included.
    assert (
        out[csa.get_tag(0x10)].value
        == source[source.private_block(0x0029, "SIEMENS CSA HEADER").get_tag(0x10)].value
    )


def test_lab_rules_match_private_creator_not_fixed_tags(
    make_engine: EngineFactory, patient: synthetic.FakePatient
) -> None:
    """A different vendor's 0029,1009 is not touched."""
    ds = _mr(patient)
    block = ds.private_block(0x0031, "OTHER VENDOR", create=True)
    block.add_new(0x09, "LO", "vendor value")
    out = deid(make_engine("lab-dicombrowser"), ds)
    assert out.private_block(0x0031, "OTHER VENDOR")[0x09].value == "vendor value"


@pytest.mark.skipif(
    not REFERENCE.exists(),
    reason="../shared/reference is absent: cannot compare presets with the seeds",
)
@pytest.mark.parametrize(
    ("preset", "files"),
    [
        ("nidb-anonymize", ["nidb-anonymize.csv"]),
        ("nidb-anonymize-full", ["nidb-anonymize-full.csv", "nidb-anonymize-full-code-extras.csv"]),
        ("qmenta", ["qmenta.csv"]),
        ("lab-dicombrowser", ["lab-dicombrowser.csv"]),
    ],
)
def test_presets_cover_every_seed_row(preset: str, files: list[str]) -> None:
    from pydicom.datadict import tag_for_keyword

    profile = Profile.named(preset)
    targets = {r.target.tag for r in profile.rules if r.target.tag is not None}
    private = {(r.target.group, r.target.offset) for r in profile.rules if r.target.creator}
    for name in files:
        with (REFERENCE / "seed-profiles" / name).open(encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                group, element = (int(x, 16) for x in row["tag"].split(","))
                if group & 1:
                    assert (group, element & 0xFF) in private, row["tag"]
                else:
                    assert tag_for_keyword(row["keyword"]) in targets, row["keyword"]


def test_options_reach_the_engine_through_with_options() -> None:
    profile = Profile.named("ps3.15-basic").with_options(["retain-uids"])
    assert Option.RETAIN_UIDS in profile.options
    assert not profile.compile().replace_uids
    assert dt.date.today()  # the compile does not depend on the date


def test_a_dummy_patient_name_is_the_pseudonym_from_profile_data(
    tmp_path: Path, make_engine: EngineFactory, ct: list[FileDataset]
) -> None:
    """D on PatientName/PatientID writes the keyed pseudonym: a rule of the package's data
    (profiles/identity.toml), not a branch in the engine, and explain names it."""
    path = write_profile(
        tmp_path,
        'extends = "ps3.15-basic"\n[[rules]]\nkeyword = "PatientName"\naction = "D"\n'
        '[[rules]]\nkeyword = "OperatorsName"\naction = "D"\n',
    )
    engine = make_engine(Profile.from_file(path))
    assert engine.profile.dummies[0x00100010] == "{pseudonym}"
    result = engine.deidentify(ct[0], explain=True)
    assert result.dataset is not None
    assert str(result.dataset.PatientName) == result.patient_pseudonym
    assert str(result.dataset.OperatorsName) != result.patient_pseudonym  # the PN dummy
    report = next(r for r in result.reports if r.tag == 0x00100010)
    assert report.action == "D"
    assert "identity.toml" in report.source and "{pseudonym}" in report.source
