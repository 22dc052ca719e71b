"""UIDs, pseudonyms and date shifts: stable across files, runs and machines with one key."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from dicomveil import Key, Outcome, Profile, RunConfig, RunSummary, run
from dicomveil.errors import CrosswalkError
from dicomveil.identity.crosswalk import Crosswalk
from dicomveil.identity.dates import DateError, cap_age, shift_da, shift_dt
from dicomveil.identity.pseudonyms import DATE_OFFSET_MAX_DAYS, DATE_OFFSET_MIN_DAYS, Pseudonymizer
from tests.support import synthetic

from .conftest import KEY, OTHER_KEY, EngineFactory, deid


def _run(
    folder: Path,
    out: Path,
    *options: str,
    key: Key = KEY,
    workers: int = 1,
    crosswalk: Crosswalk | None = None,
    map_dir: Path | None = None,
) -> RunSummary:
    profile = Profile.named("ps3.15-basic").with_options(options)
    config = RunConfig(
        profile=profile,
        key=key,
        output=out,
        workers=workers,
        today=dt.date(2026, 11, 30),
        crosswalk=crosswalk,
        map_dir=map_dir,
    )
    return run([folder], config)


def _read(summary: RunSummary) -> list[FileDataset]:
    return [dcmread(r.output) for r in summary.written if r.output is not None]


@pytest.fixture
def study(tmp_path: Path) -> Path:
    """Two patients; patient A has a CT and an MR in one study."""
    a, b = synthetic.fake_patient(1), synthetic.fake_patient(2)
    synthetic.write_series(
        synthetic.ct_series(a, seed=1, n_slices=3, rows=8, columns=8), tmp_path / "in" / "a-ct"
    )
    synthetic.write_series(
        synthetic.mr_series(a, seed=1, n_slices=2, rows=8, columns=8), tmp_path / "in" / "a-mr"
    )
    synthetic.write_series(
        synthetic.ct_series(b, seed=2, n_slices=2, rows=8, columns=8), tmp_path / "in" / "b-ct"
    )
    return tmp_path / "in"


def test_uids_are_consistent_across_files_and_references(study: Path, tmp_path: Path) -> None:
    originals = [dcmread(p) for p in sorted(study.rglob("IM*"))]
    summary = _run(study, tmp_path / "out")
    assert summary.ok and len(summary.written) == len(originals)
    outputs = _read(summary)
    new_sops = {ds.SOPInstanceUID for ds in outputs}
    old_sops = {ds.SOPInstanceUID for ds in originals}
    assert not new_sops & old_sops
    # Every reference to another instance resolves to an instance of the output.
    for ds in outputs:
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        for ref in ds.get("ReferencedImageSequence", []):
            assert ref.ReferencedSOPInstanceUID in new_sops
    # One study UID for patient A's CT and MR, as in the input.
    studies_in = {(ds.PatientID, ds.StudyInstanceUID) for ds in originals}
    studies_out = {(ds.PatientID, ds.StudyInstanceUID) for ds in outputs}
    assert len(studies_out) == len(studies_in) == 2
    # The same original maps to the same new UID everywhere (UID map is a function).
    uid_map: dict[str, str] = {}
    for result in summary.written:
        for old, new in result.uid_map.items():
            assert uid_map.setdefault(old, new) == new


def test_two_runs_with_one_key_give_identical_files(study: Path, tmp_path: Path) -> None:
    first = _run(study, tmp_path / "one")
    second = _run(study, tmp_path / "two", workers=2)
    one = {
        r.output.relative_to(tmp_path / "one"): r.output.read_bytes()
        for r in first.written
        if r.output
    }
    two = {
        r.output.relative_to(tmp_path / "two"): r.output.read_bytes()
        for r in second.written
        if r.output
    }
    assert one == two and one


def test_another_key_gives_other_uids_and_pseudonyms(study: Path, tmp_path: Path) -> None:
    first = _read(_run(study, tmp_path / "one"))
    other = _read(_run(study, tmp_path / "two", key=OTHER_KEY))
    assert {d.SOPInstanceUID for d in first}.isdisjoint({d.SOPInstanceUID for d in other})
    assert {d.PatientID for d in first}.isdisjoint({d.PatientID for d in other})


def test_well_known_and_class_uids_are_never_replaced(
    make_engine: EngineFactory, ct: list[FileDataset]
) -> None:
    source = ct[0]
    out = deid(make_engine(), ct[0])
    assert out.SOPClassUID == CTImageStorage == source.SOPClassUID
    for ref in out.get("ReferencedImageSequence", []):
        assert ref.ReferencedSOPClassUID == CTImageStorage
    assert str(out.DeidentificationMethodCodeSequence[0].CodingSchemeDesignator) == "DCM"


def test_private_and_unknown_uids_kept_by_a_rule_are_mapped(
    tmp_path: Path, make_engine: EngineFactory
) -> None:
    from .conftest import write_profile

    profile = Profile.from_file(
        write_profile(
            tmp_path,
            """
extends = "ps3.15-basic"
[[rules]]
private = { creator = "ACME", group = "0011", element = "xx01" }
action = "K"
[[rules]]
private = { creator = "ACME", group = "0011", element = "xx02" }
action = "K"
""",
        )
    )
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.99.5.5"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.99.5.6"
    ds.PatientID = "P"
    block = ds.private_block(0x0011, "ACME", create=True)
    block.add_new(0x01, "UI", "1.2.826.0.1.3680043.99.5.6")
    block.add_new(0x02, "UN", b"1.2.826.0.1.3680043.99.5.5\x00")
    out = deid(make_engine(profile), ds)
    kept = out.private_block(0x0011, "ACME")
    assert kept[0x01].value == out.StudyInstanceUID != "1.2.826.0.1.3680043.99.5.6"
    assert kept[0x02].value.rstrip(b"\x00").decode() == out.SOPInstanceUID


def test_date_shift_keeps_intervals_and_shifts_nested_dates(
    make_engine: EngineFactory, patient: synthetic.FakePatient
) -> None:
    engine = make_engine("ps3.15-basic", "retain-long-modified-dates")
    source = synthetic.ct_series(patient, seed=1, n_slices=1, rows=8, columns=8)[0]
    again = synthetic.ct_series(patient, seed=1, n_slices=1, rows=8, columns=8)[0]
    result = engine.deidentify(again)
    out = result.dataset
    assert out is not None and result.date_offset_days is not None
    offset = result.date_offset_days
    assert -DATE_OFFSET_MAX_DAYS <= offset <= -DATE_OFFSET_MIN_DAYS

    def day(value: str) -> dt.date:
        return dt.datetime.strptime(value[:8], "%Y%m%d").date()

    for keyword in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
        assert (day(out[keyword].value) - day(source[keyword].value)).days == offset, keyword
    assert out.StudyTime == source.StudyTime, "whole-day shifts keep the time of day"
    assert (day(out.AcquisitionDateTime) - day(source.AcquisitionDateTime)).days == offset
    assert out.LongitudinalTemporalInformationModified == "MODIFIED"
    # The same patient in another file gets the same offset; another patient another one.
    mr = synthetic.mr_series(patient, seed=5, n_slices=1, rows=8, columns=8)[0]
    assert engine.deidentify(mr).date_offset_days == offset
    other = synthetic.ct_series(synthetic.fake_patient(9), seed=9, n_slices=1, rows=8, columns=8)[0]
    assert engine.deidentify(other).date_offset_days != offset


def test_date_shift_reaches_dates_inside_sequences(
    tmp_path: Path, make_engine: EngineFactory
) -> None:
    from .conftest import write_profile

    profile = Profile.from_file(
        write_profile(
            tmp_path,
            """
extends = "ps3.15-basic"
options = ["retain-long-modified-dates"]
[[rules]]
keyword = "ScheduledProcedureStepSequence"
action = "K"
""",
        )
    )
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = "1.2.3.4"
    ds.PatientID = "P1"
    ds.StudyDate = "20200110"
    step = Dataset()
    step.ScheduledProcedureStepStartDate = "20200101"
    step.CalibrationDate = "20191231"  # not in Table E.1-1: shifted too under the option
    ds.ScheduledProcedureStepSequence = [step]
    result = make_engine(profile).deidentify(ds)
    assert result.dataset is not None and result.date_offset_days is not None
    nested = result.dataset.ScheduledProcedureStepSequence[0]
    expected = shift_da("20200101", result.date_offset_days)
    assert nested.ScheduledProcedureStepStartDate == expected
    assert nested.CalibrationDate == shift_da("20191231", result.date_offset_days)
    assert result.dataset.StudyDate == shift_da("20200110", result.date_offset_days)


def test_unparseable_dates_are_emptied_not_kept(make_engine: EngineFactory) -> None:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = "1.2.3.4"
    ds.PatientID = "P1"
    with pytest.warns(UserWarning):
        ds.add_new(0x00080020, "DA", "2020-13-45")
    out = deid(make_engine("ps3.15-basic", "retain-long-modified-dates"), ds)
    assert out["StudyDate"].is_empty


@pytest.mark.parametrize(
    ("value", "days", "expected"),
    [("20240301", -1, "20240229"), ("2024.03.01", -1, "20240229"), ("20000101", 366, "20010101")],
)
def test_shift_da(value: str, days: int, expected: str) -> None:
    assert shift_da(value, days) == expected


@pytest.mark.parametrize(
    ("value", "days", "expected"),
    [
        ("20240301101500.123+0100", -1, "20240229101500.123+0100"),
        ("202403", -1, "202402"),
        ("2024", -1, "2023"),
    ],
)
def test_shift_dt_keeps_precision(value: str, days: int, expected: str) -> None:
    assert shift_dt(value, days) == expected


@pytest.mark.parametrize("value", ["", "yesterday", "20241301", "2024x"])
def test_bad_dates_raise(value: str) -> None:
    with pytest.raises(DateError):
        shift_da(value, 1)


def test_cap_age() -> None:
    assert cap_age("095Y") == "090Y"
    assert cap_age("089Y") == "089Y"
    assert cap_age("040M") == "040M"
    assert cap_age("999M") == "999M"  # 83 years
    assert cap_age("100Y") == "090Y"
    with pytest.raises(DateError):
        cap_age("old")


def test_pseudonymizer_is_deterministic_and_keyed() -> None:
    a, b, c = Pseudonymizer(KEY), Pseudonymizer(KEY), Pseudonymizer(OTHER_KEY)
    uid = "1.2.826.0.1.3680043.99.1"
    assert a.uid(uid) == b.uid(uid) != c.uid(uid)
    assert a.uid(uid + "\x00") == a.uid(uid), "padding is not part of the UID"
    assert len(a.uid(uid)) <= 64 and a.uid(uid).startswith("2.25.")
    assert a.patient_pseudonym("id\x00\x00X") != a.patient_pseudonym("id\x00\x00Y")
    assert a.date_offset_days("p") == b.date_offset_days("p")


# ----------------------------------------------------------------------------- crosswalk


def test_crosswalk_gives_study_ids(study: Path, tmp_path: Path) -> None:
    a, b = synthetic.fake_patient(1), synthetic.fake_patient(2)
    csv_path = tmp_path / "crosswalk.csv"
    csv_path.write_text(f"original_id,study_id\n{a.patient_id},SUBJ-001\n{b.patient_id},SUBJ-002\n")
    summary = _run(study, tmp_path / "out", crosswalk=Crosswalk.from_csv(csv_path))
    assert summary.ok
    assert {ds.PatientID for ds in _read(summary)} == {"SUBJ-001", "SUBJ-002"}
    assert all(ds.PatientName == ds.PatientID for ds in _read(summary))
    assert {
        r.output.relative_to(tmp_path / "out").parts[0] for r in summary.written if r.output
    } == {"SUBJ-001", "SUBJ-002"}


def test_patient_missing_from_crosswalk_fails_its_files(study: Path, tmp_path: Path) -> None:
    a = synthetic.fake_patient(1)
    csv_path = tmp_path / "crosswalk.csv"
    csv_path.write_text(f"id_old,id_new\n{a.patient_id},SUBJ-001\n")
    summary = _run(study, tmp_path / "out", crosswalk=Crosswalk.from_csv(csv_path))
    failed = [r for r in summary.results if r.outcome is Outcome.FAILED]
    assert len(failed) == 2 and not summary.ok
    b = synthetic.fake_patient(2)
    for result in failed:
        assert "not in the crosswalk" in result.reason
        assert b.patient_id not in result.reason
    assert len(summary.written) == 5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("just-one-column\nA\n", "two columns"),
        ("a,b\nX,\n", "needs an original ID"),
        ("a,b\nX,S1\nX,S2\n", "appears twice"),
        ("a,b\nX,S1\nY,S1\n", "share one study ID"),
        ("a,b\n", "no rows"),
    ],
)
def test_bad_crosswalks(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "cw.csv"
    path.write_text(text)
    with pytest.raises(CrosswalkError, match=message):
        Crosswalk.from_csv(path)


def test_map_dir_writes_midi_b_maps(study: Path, tmp_path: Path) -> None:
    summary = _run(study, tmp_path / "out", "retain-long-modified-dates", map_dir=tmp_path / "maps")
    patients = (tmp_path / "maps" / "patients.csv").read_text().splitlines()
    uids = (tmp_path / "maps" / "uids.csv").read_text().splitlines()
    offsets = (tmp_path / "maps" / "date_offsets.csv").read_text().splitlines()
    assert patients[0] == uids[0] == "id_old,id_new"
    assert len(patients) == 3 and len(offsets) == 3
    outputs = _read(summary)
    new_uids = {ds.SOPInstanceUID for ds in outputs}
    mapped = dict(line.split(",") for line in uids[1:])
    assert new_uids <= set(mapped.values())
    assert ExplicitVRLittleEndian not in mapped


def test_a_patient_without_an_id_has_its_map_rows(tmp_path: Path) -> None:
    """A file without a PatientID is pseudonymised (by name) and shifted: date_offsets.csv
    says by how much, its patient_id empty (found by a black-box test on nibabel's DWI files:
    no row); patients.csv pairs IDs only (a crosswalk: no row without an original ID)."""
    patient = synthetic.fake_patient(8)
    series = synthetic.ct_series(patient, seed=8, n_slices=2, rows=8, columns=8)
    for ds in series:
        ds.PatientID = ""
    synthetic.write_series(series, tmp_path / "in")
    maps = tmp_path / "maps"
    summary = _run(tmp_path / "in", tmp_path / "out", "retain-long-modified-dates", map_dir=maps)
    pseudonym = _read(summary)[0].PatientID
    assert (maps / "patients.csv").read_text().splitlines() == ["id_old,id_new"]  # IDs only
    offsets = (maps / "date_offsets.csv").read_text().splitlines()
    assert len(offsets) == 2 and offsets[1].startswith(f",{pseudonym},")


def test_an_engines_outputs_stay_independent_of_later_files(
    ct: list[FileDataset], make_engine: EngineFactory
) -> None:
    """Whatever an engine reuses from file to file (remembered values, bytes, items), no
    output may hold an element another output holds too: de-identifying more files, the
    engine's own output among them, and changing those outputs in place (as pydicom's
    ``ds.Keyword = value`` does) leave an earlier output as it was. (The engine shares
    immutable raw elements, :meth:`~dicomveil.engine.Engine.made`; this test fails when a
    pydicom ``DataElement`` is shared instead.)"""
    engine = make_engine()
    first = deid(engine, ct[0].copy())
    before = _encoded(first)
    again = deid(engine, deid(engine, ct[1].copy()))  # the engine's output, walked again
    for ds in (again, deid(engine, ct[2].copy())):
        for element in ds:
            if (
                element.VR not in ("SQ", "UI")
                and not element.tag.is_private
                and element.tag != 0x00080005
            ):
                element.value = "CHANGED" if element.VR in ("LO", "SH", "CS", "PN") else None
    assert _encoded(first) == before


def _encoded(ds: Dataset) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, ds)
    return fp.getvalue()
