"""No PHI in the output: bytes, file names, preamble, file meta; risky objects are withheld."""

from __future__ import annotations

import datetime as dt
import zipfile
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileDataset
from pydicom.uid import CTImageStorage

import dicomveil
from dicomveil import Key, Outcome, Profile, RunConfig, WithheldError, deidentify, run
from dicomveil.standard.risks import Risk
from tests.support import synthetic

from .conftest import KEY, EngineFactory, deid


def _corpus(folder: Path) -> list[FileDataset]:
    a, b = synthetic.fake_patient(11), synthetic.fake_patient(12)
    datasets = [
        *synthetic.ct_series(a, seed=11, n_slices=2, rows=8, columns=8),
        *synthetic.mr_series(a, seed=11, n_slices=2, rows=8, columns=8),
        *synthetic.ct_series(
            b, seed=12, n_slices=2, rows=8, columns=8, transfer_syntax="1.2.840.10008.1.2"
        ),
        *synthetic.ct_series(
            b, seed=13, n_slices=1, rows=8, columns=8, transfer_syntax="1.2.840.10008.1.2.2"
        ),
    ]
    synthetic.write_series(datasets, folder)
    return datasets


def _needles(record: synthetic.PhiRecord) -> set[bytes]:
    values = record.names | record.ids | record.texts | record.uids
    dates = {d for d in record.dates if len(d) >= 8}
    return {v.encode() for v in values | dates if len(v) >= 4}


@pytest.mark.parametrize("options", [(), ("retain-long-modified-dates", "retain-safe-private")])
def test_no_identifying_value_survives_anywhere(tmp_path: Path, options: tuple[str, ...]) -> None:
    datasets = _corpus(tmp_path / "in")
    needles = _needles(synthetic.phi_of(datasets))
    assert len(needles) > 30
    profile = Profile.named("ps3.15-basic").with_options(options)
    summary = run(
        [tmp_path / "in"],
        RunConfig(
            profile=profile,
            key=KEY,
            output=tmp_path / "out",
            workers=1,
            today=dt.date(2026, 11, 30),
        ),
    )
    assert summary.ok and len(summary.written) == len(datasets)
    for result in summary.written:
        assert result.output is not None
        data = result.output.read_bytes()
        assert data[:128] == b"\x00" * 128, "the preamble is zeroed"
        path_text = str(result.output.relative_to(tmp_path / "out")).encode()
        for needle in needles:
            assert needle not in data, f"{needle!r} leaked into {result.output.name}"
            assert needle.upper() not in data.upper() or len(needle) < 6
            assert needle not in path_text
        meta = dcmread(result.output, stop_before_pixels=True).file_meta
        assert "SourceApplicationEntityTitle" not in meta
        assert "PrivateInformation" not in meta
        assert meta.ImplementationClassUID == dicomveil.io.IMPLEMENTATION_CLASS_UID


def test_pixel_data_is_copied_byte_for_byte(tmp_path: Path) -> None:
    datasets = _corpus(tmp_path / "in")
    summary = run(
        [tmp_path / "in"],
        RunConfig(
            profile=Profile.named("ps3.15-basic"), key=KEY, output=tmp_path / "out", workers=1
        ),
    )
    originals = sorted(bytes(ds.PixelData) for ds in datasets)
    outputs = sorted(bytes(dcmread(r.output).PixelData) for r in summary.written if r.output)
    assert originals == outputs


def test_inputs_are_never_modified(tmp_path: Path) -> None:
    _corpus(tmp_path / "in")
    before = {p: p.read_bytes() for p in (tmp_path / "in").rglob("*") if p.is_file()}
    run(
        [tmp_path / "in"],
        RunConfig(
            profile=Profile.named("ps3.15-basic"), key=KEY, output=tmp_path / "out", workers=2
        ),
    )
    assert before == {p: p.read_bytes() for p in (tmp_path / "in").rglob("*") if p.is_file()}


def _risky(**attributes: str) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.99.3.1"
    ds.PatientID = "RISKY"
    ds.PixelData = b"\x00\x00"
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


@pytest.mark.parametrize(
    ("attributes", "risk", "detail"),
    [
        ({"BurnedInAnnotation": "YES"}, Risk.BURNED_IN_ANNOTATION,
         "BurnedInAnnotation (0028,0301) is YES: text in the pixels cannot be cleaned without "
         "clean-pixel-data"),
        ({"RecognizableVisualFeatures": "YES"}, Risk.RECOGNIZABLE_VISUAL_FEATURES,
         "RecognizableVisualFeatures (0028,0302) is YES: the image may show a face"),
        ({"SOPClassUID": "1.2.840.10008.5.1.4.1.1.104.1"}, Risk.ENCAPSULATED_DOCUMENT,
         "SOP class Encapsulated PDF Storage: encapsulated document (PDF, CDA, ...): its "
         "content cannot be cleaned"),
        ({"Modality": "US"}, Risk.POSSIBLE_BURNED_IN,
         "burned-in text not ruled out: Modality US (an image of a kind that often carries "
         "it) and BurnedInAnnotation (0028,0301) is absent, not NO"),
        ({"SOPClassUID": "1.2.840.10008.5.1.4.1.1.7"}, Risk.POSSIBLE_BURNED_IN,
         "burned-in text not ruled out: SOP class Secondary Capture Image Storage (an image "
         "of a kind that often carries it) and BurnedInAnnotation (0028,0301) is absent, not "
         "NO"),
        ({"Modality": "US", "BurnedInAnnotation": "OTHER"}, Risk.POSSIBLE_BURNED_IN,
         "burned-in text not ruled out: Modality US (an image of a kind that often carries "
         "it) and BurnedInAnnotation (0028,0301) is OTHER, not NO"),
    ],
)  # fmt: skip
def test_risky_objects_are_withheld_with_a_reason(
    make_engine: EngineFactory,
    tmp_path: Path,
    attributes: dict[str, str],
    risk: Risk,
    detail: str,
) -> None:
    """The reason names what in this file raised the risk (issue 11: never a category that
    does not apply)."""
    result = make_engine().deidentify(_risky(**attributes))
    assert result.dataset is None and result.withheld is risk
    assert result.withheld_detail == detail
    # A profile that explicitly allows the risk lets it through.
    allowing = tmp_path / "allow.toml"
    allowing.write_text(f'extends = "ps3.15-basic"\nallow = ["{risk.value}"]\n')
    assert (
        make_engine(Profile.from_file(allowing)).deidentify(_risky(**attributes)).dataset
        is not None
    )


def test_an_ultrasound_that_says_no_burned_in_text_is_kept(make_engine: EngineFactory) -> None:
    assert make_engine().deidentify(_risky(Modality="US", BurnedInAnnotation="NO")).dataset


def test_api_on_datasets_does_not_touch_the_input(patient: synthetic.FakePatient) -> None:
    source = synthetic.ct_series(patient, seed=4, n_slices=1, rows=8, columns=8)[0]
    clean = deidentify(source, key=KEY, options=["retain-uids"])
    assert source.PatientName == patient.name, "the input dataset is unchanged"
    assert clean.PatientName != patient.name
    assert clean.SOPInstanceUID == source.SOPInstanceUID
    with pytest.raises(WithheldError) as info:
        deidentify(synthetic.us_burned_in(patient, seed=4), key=KEY)
    assert info.value.risk is Risk.BURNED_IN_ANNOTATION


def test_api_on_paths_and_zip_archives(tmp_path: Path) -> None:
    datasets = _corpus(tmp_path / "in")
    archive = tmp_path / "in.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted((tmp_path / "in").rglob("IM*")):
            zf.write(path, f"DOE_JOHN/{path.name}")  # member names may carry PHI
    summary = deidentify(archive, tmp_path / "out", key=Key(b"z" * 32))
    assert len(summary.written) == len(datasets)
    for result in summary.written:
        assert result.output is not None and "DOE" not in str(result.output)
    assert summary.results[0].task.member is not None


def test_public_front_door_is_complete() -> None:
    import inspect

    exported = set(dicomveil.__all__)
    for name, value in vars(dicomveil).items():
        if name.startswith("_") or inspect.ismodule(value):
            continue
        assert name in exported, f"{name} is public but missing from __all__"
    for name in exported:
        assert hasattr(dicomveil, name)


def test_explain_names_the_rule_for_each_element(
    make_engine: EngineFactory, ct: list[FileDataset]
) -> None:
    result = make_engine().deidentify(ct[0], explain=True)
    by_keyword = {r.keyword: r for r in result.reports}
    assert by_keyword["PatientName"].action == "replace"
    assert "rule" in by_keyword["PatientName"].source
    assert by_keyword["InstitutionName"].action == "X"
    assert "Table E.1-1" in by_keyword["InstitutionName"].source
    assert by_keyword["StudyInstanceUID"].action == "U"


def test_withheld_outcome_in_a_batch(tmp_path: Path, patient: synthetic.FakePatient) -> None:
    synthetic.write_series([synthetic.us_burned_in(patient, seed=1)], tmp_path / "in")
    (tmp_path / "in" / "notes.txt").write_text("Patient DOE JOHN called")
    summary = run(
        [tmp_path / "in"],
        RunConfig(
            profile=Profile.named("ps3.15-basic"), key=KEY, output=tmp_path / "out", workers=1
        ),
    )
    assert summary.count(Outcome.WITHHELD) == 1 and summary.count(Outcome.SKIPPED) == 1
    assert summary.ok
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]


def test_deidentified_dataset_helper(make_engine: EngineFactory, mr: list[FileDataset]) -> None:
    out = deid(make_engine(), mr[0])
    assert out.PatientIdentityRemoved == "YES"


def test_free_text_outside_table_e11_does_not_pass_through(
    make_engine: EngineFactory, mr: list[FileDataset]
) -> None:
    """Overlay labels and descriptions go with the overlay; other free text is emptied."""
    source = mr[0]
    assert 0x60001500 in source and 0x60000022 in source
    source.ContentDescription = "Annotated for DOE JOHN"
    out = deid(make_engine(), source)
    assert not [t for t in out.keys() if t >> 16 == 0x6000], "the whole overlay plane goes"
    assert out["ContentDescription"].is_empty
