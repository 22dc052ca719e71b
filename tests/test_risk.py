"""Issue 19, part 2: the quasi-identifier risk of a release, on cohorts whose equivalence
classes are known by construction, and the generalisations that reach k."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from dicomveil import Outcome, Profile, RunConfig, run
from dicomveil.profiles.generalize import Generalization, age_in_band, date_to_year, in_band
from dicomveil.qc.risk import assess, read_release, with_rule
from tests.conftest import KEY, TODAY, write_profile
from tests.support.commands import cli

UID = "1.2.826.0.1.3680043.10.543.9"


def _subject_file(folder: Path, n: int, file: int, **values: str) -> None:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.UID(f"{UID}.{n}.{file}")
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, f"{UID}.{n}.{file}"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = f"{UID}.{n}.1", f"{UID}.{n}.2"
    ds.PatientID, ds.PatientName = f"SUBJ{n:04d}", f"SUBJECT^{n}"
    ds.Modality, ds.Manufacturer = values.pop("Modality", "CT"), "ACME"
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    path = folder / f"s{n:04d}" / f"f{file}.dcm"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _cohort(folder: Path, subjects: list[dict[str, str]], files: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n, values in enumerate(subjects):
        for file in range(files):
            _subject_file(folder, n, file, **dict(values))
    return folder


def test_an_empty_release_and_a_release_of_one(tmp_path: Path) -> None:
    empty = assess(read_release(_cohort(tmp_path / "empty", []), workers=1))
    assert (empty.subjects, empty.classes, empty.k, empty.below_k) == (0, 0, 0, 0)
    # nothing read is nothing assessed: not ok (it passed as "k = 0 ... ok": found by an
    # independent black-box test)
    assert not empty.ok and empty.share_below_k == 0
    one = assess(read_release(_cohort(tmp_path / "one", [{"PatientSex": "F"}]), workers=1))
    assert (one.subjects, one.files, one.classes, one.k, one.below_k, one.unique) == (
        1, 2, 1, 1, 1, 1,
    )  # fmt: skip


def test_known_classes_and_what_makes_a_subject_unique(tmp_path: Path) -> None:
    men = [{"PatientSex": "M", "PatientAge": "040Y", "StudyDate": "20240105"}] * 5
    women = [{"PatientSex": "F", "PatientAge": "050Y", "StudyDate": "20240110"}] * 4
    oldest = [{"PatientSex": "F", "PatientAge": "097Y", "StudyDate": "20240120"}]
    report = assess(read_release(_cohort(tmp_path / "c", men + women + oldest), workers=2), k=5)
    assert (report.subjects, report.classes, report.k) == (10, 3, 1)
    assert (report.below_k, report.unique) == (5, 1)
    assert report.makes_unique == {"PatientAge": 1}, "without the age, she is one of five"
    assert report.share_below_k == pytest.approx(0.5)
    # Four women of 50 cannot become five by any band the proposals try: none reaches k.
    assert report.reaches is None and report.steps == ()
    two = assess(read_release(tmp_path / "c", workers=1), k=2)
    assert two.below_k == 1 and two.reaches is None, "the 97-year-old stays alone in any band"


def test_generalisations_reach_k(tmp_path: Path) -> None:
    ages = [f"{age:03d}Y" for age in (41, 42, 43, 44, 45, 46, 47, 48, 49, 40)]
    subjects = [
        {"PatientSex": "M", "PatientAge": a, "StudyDate": f"202403{d:02d}"}
        for a, d in zip(ages, range(1, 11), strict=True)
    ]
    release = read_release(_cohort(tmp_path / "c", subjects), workers=1)
    report = assess(release, k=5)
    assert report.k == 1 and report.below_k == 10
    assert report.reaches == Generalization(age_band=5)
    generalised = assess(with_rule(release, report.reaches), k=5)
    assert generalised.k >= 5 and generalised.ok
    ten = assess(read_release(_cohort(tmp_path / "d", subjects), workers=1), k=10)
    assert ten.reaches is not None and ten.reaches.age_band == 10
    assert assess(with_rule(release, ten.reaches), k=10).ok


def test_no_generalisation_reaches_k_says_so(tmp_path: Path) -> None:
    subjects = [{"PatientSex": "M", "Modality": m} for m in ("CT", "MR", "US")]
    report = assess(read_release(_cohort(tmp_path / "c", subjects), workers=1), k=2)
    assert report.k == 1 and report.reaches is None and not report.ok


def test_value_transforms() -> None:
    assert age_in_band("047Y", 5) == "045Y" and age_in_band("047Y", 10) == "040Y"
    assert age_in_band("006M", 5) == "000Y" and age_in_band("bad", 5) == "bad"
    assert date_to_year("20240517") == "20240101" and date_to_year("") == ""
    assert in_band("1.83", 0.1) == "1.8" and in_band("81.5", 10) == "80"


def test_a_profile_generalises_and_explain_says_so(tmp_path: Path) -> None:
    profile_file = write_profile(
        tmp_path,
        'extends = "ps3.15-basic"\noptions = ["retain-patient-characteristics"]\n'
        "[generalize]\nage = 10\nsize = 10\nweight = 10\n",
    )
    source = _cohort(
        tmp_path / "in",
        [{"PatientSex": "F", "PatientAge": "047Y", "PatientSize": "1.83", "PatientWeight": "81.5"}],
        files=1,
    )
    profile = Profile.named(profile_file)
    assert profile.generalize == Generalization(age_band=10, size_band_cm=10, weight_band_kg=10)
    summary = run(
        [source],
        RunConfig(profile=profile, key=KEY, output=tmp_path / "out", workers=1, today=TODAY),
    )
    (written,) = summary.written
    assert written.outcome is Outcome.WRITTEN and written.output is not None
    ds = pydicom.dcmread(written.output)
    assert (ds.PatientAge, str(ds.PatientSize), str(ds.PatientWeight)) == ("040Y", "1.8", "80")
    explained = cli("explain", "--profile", profile_file, next(source.rglob("*.dcm")))
    assert explained.exit_code == 0, explained.output
    assert "10-year band" in explained.stdout
    bad = write_profile(tmp_path, '[generalize]\nage = "old"\n', "bad.toml")
    with pytest.raises(Exception, match="generalize"):
        Profile.named(bad)


def test_the_risk_command(tmp_path: Path) -> None:
    men = [{"PatientSex": "M", "PatientAge": "040Y"}] * 3
    folder = _cohort(tmp_path / "c", [*men, {"PatientSex": "F", "PatientAge": "040Y"}])
    report = tmp_path / "risk.json"
    audit = tmp_path / "audit.db"
    result = cli("risk", folder, "--k", "3", "--json", report, "--workers", "1", "--audit", audit)
    assert result.exit_code == 1, result.output
    assert "k = 1" in result.stdout and "PatientSex" in result.stdout
    body = json.loads(report.read_text())
    assert body["schema"] == "risk" and body["k"] == 1 and body["below_k"] == 1
    assert body["makes_unique"] == {"PatientSex": 1}
    assert "SUBJ" not in report.read_text() and "040Y" not in report.read_text()
    passed = cli("risk", folder, "--k", "1", "--workers", "1", "--quasi", "Modality")
    assert passed.exit_code == 0, passed.output
    import sqlite3

    with sqlite3.connect(audit) as db:
        (row,) = db.execute("SELECT k, wanted_k, subjects FROM risk_assessments").fetchall()
    assert row == (1, 3, 4)


def test_verify_reports_the_risk_too(tmp_path: Path) -> None:
    men = [{"PatientSex": "M", "PatientAge": "040Y"}] * 2
    folder = _cohort(tmp_path / "c", [*men, {"PatientSex": "F", "PatientAge": "040Y"}])
    report = tmp_path / "verify.json"
    result = cli(
        "verify", folder, "--risk-k", "2", "--json", report, "--workers", "1", "--iod", "off"
    )
    assert result.exit_code in (0, 1), result.output
    body = json.loads(report.read_text())
    assert body["risk"]["k"] == 1 and body["risk"]["below_k"] == 1
    assert "k-anonymity: k = 1" in result.stdout


def test_dates_to_the_year_at_every_depth(tmp_path: Path) -> None:
    """``dates = "year"`` reaches the dates in sequences (a frame's FrameAcquisitionDateTime:
    a black-box test found every per-frame date of Enhanced MR kept whole), and explain
    names the profile's table (Rich took "[generalize]" for a style)."""
    profile_file = write_profile(
        tmp_path,
        'extends = "ps3.15-basic"\noptions = ["retain-long-full-dates"]\n'
        '[generalize]\ndates = "year"\n',
    )
    source = _cohort(tmp_path / "in", [{"PatientSex": "F", "StudyDate": "20221116"}], files=1)
    path = next(source.rglob("*.dcm"))
    ds = pydicom.dcmread(path)
    frame, content = Dataset(), Dataset()
    content.FrameAcquisitionDateTime = "20221116141629.732500"
    content.FrameReferenceDateTime = ["20221116141629", "20221117"]
    frame.FrameContentSequence = [content]
    ds.PerFrameFunctionalGroupsSequence = [frame]
    ds.save_as(path)
    config = RunConfig(
        profile=Profile.named(profile_file), key=KEY, output=tmp_path / "out", workers=1
    )
    (written,) = run([source], config).written
    assert written.output is not None
    out = pydicom.dcmread(written.output)
    kept = out.PerFrameFunctionalGroupsSequence[0].FrameContentSequence[0]
    assert out.StudyDate == "20220101" and kept.FrameAcquisitionDateTime == "20220101"
    assert list(kept.FrameReferenceDateTime) == ["20220101", "20220101"]
    explained = cli("explain", "--profile", profile_file, path)
    assert "generalize table: year only" in " ".join(explained.stdout.split()), explained.stdout


def test_the_command_proposes_a_generalize_table_to_add(tmp_path: Path) -> None:
    """The first generalisation that reaches k is printed as the profile's ``[generalize]``
    table (Rich took "[generalize]" for a style and printed nothing of it); a folder of which
    nothing can be read is 'nothing to assess', exit 1."""
    ages = [{"PatientSex": "F", "PatientAge": f"04{n}Y"} for n in range(5)]
    folder = _cohort(tmp_path / "c", ages)
    done = cli("risk", folder, "--k", "5", "--workers", "1", "--quasi", "PatientAge")
    assert done.exit_code == 1, done.output
    assert "[generalize]\nage = 5" in done.stdout, done.stdout
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.txt").write_text("hello")
    nothing = cli("risk", junk, "--workers", "1")
    assert nothing.exit_code == 1, nothing.output
    assert "nothing to assess" in nothing.stdout
