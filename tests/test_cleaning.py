"""Cleaning free text, structured reports and graphics: clean-descriptors,
clean-structured-content and clean-graphics keep the data and lose the identifiers.

- the labelled corpus (``tests/data/freetext/``, English, German, French): every span whose
  value the patient's file holds is found (100 %), must-keep medical content survives, and
  the engine cleans exactly as :class:`~dicomveil.cleaners.text.TextCleaner` does;
- descriptors: each category, German and French forms, sequence parameters untouched, VR
  limits, code strings and binaries fall back to the Basic Profile, profile tokens;
- SR content trees at every depth: names, texts, dates under each date policy, UIDREFs and
  references mapped like the rest of the file, codes and measurements kept; dciodvfy finds
  no new error (hand-built Comprehensive SR, pydicom's test-SR.dcm and reportsi.dcm);
- overlays and presentation states with clean-graphics; encapsulated documents; explain.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread, dcmwrite
from pydicom.data import get_testdata_file
from pydicom.datadict import dictionary_has_tag, dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileDataset
from pydicom.sequence import Sequence
from pydicom.uid import ImplicitVRLittleEndian
from pydicom.valuerep import validate_value

from dicomveil import Engine, Key, Outcome, Profile, Pseudonymizer, RunConfig, run
from dicomveil.cleaners.structured import descriptor_tags
from dicomveil.cleaners.text import Identifiers, TextCleaner
from dicomveil.engine.explain import explain
from dicomveil.errors import ProfileError
from dicomveil.identity.crosswalk import Crosswalk
from dicomveil.identity.dates import shift_da, shift_dt
from dicomveil.io import read_source, write_output
from dicomveil.standard.risks import Risk
from tests.support import structured as build
from tests.support import synthetic

from . import freetext_corpus as corpus
from .conftest import KEY, TODAY, EngineFactory, deid, write_profile

CLEAN_ALL = ("clean-descriptors", "clean-structured-content", "clean-graphics")
DCIODVFY = shutil.which("dciodvfy")
needs_dciodvfy = pytest.mark.skipif(
    DCIODVFY is None, reason="dciodvfy (dicom3tools) is not installed: apt-get install dicom3tools"
)


def _ct(patient: synthetic.FakePatient, seed: int = 5) -> FileDataset:
    return synthetic.ct_series(patient, seed=seed, n_slices=1, rows=8, columns=8)[0]


def _mr(patient: synthetic.FakePatient, seed: int = 5) -> FileDataset:
    return synthetic.mr_series(patient, seed=seed, n_slices=1, rows=8, columns=8)[0]


def _texts(ds: Dataset) -> Iterator[str]:
    for elem in ds.iterall():
        if elem.VR in ("LO", "SH", "ST", "LT", "UT", "UC", "PN", "CS") and elem.value:
            yield str(elem.value)


# --------------------------------------------------------------------------------------------
# The labelled corpus

CASES = corpus.load()


def test_corpus_is_big_enough_and_covers_every_kind_and_language() -> None:
    lines = [line for case in CASES for line in case.lines]
    assert len(lines) >= 150
    assert {line.kind for line in lines} >= {
        "series",
        "study",
        "protocol",
        "comment",
        "history",
        "reason",
        "sr",
        "overlay",
        "gsps",
    }
    assert {case.name for case in CASES} >= {"en-us", "en-uk", "de", "fr"}
    assert sum(len(line.gold) for line in lines) >= 100
    assert sum(1 for line in lines if not line.gold) >= 40, "lines with nothing to remove"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_identifier_the_file_holds_is_found(case: corpus.Case) -> None:
    cleaner = TextCleaner()
    known = Identifiers.from_dataset(case.dataset())
    for line in case.lines:
        spans = cleaner.find(line.text, known)
        missed = corpus.missed(line, spans, known_only=True)
        assert not missed, f"corpus line {line.number}: {len(missed)} known span(s) missed"


INDEPENDENT = corpus.FOLDER.parent / "freetext-independent"
TUNE = corpus.load(INDEPENDENT / "tune.txt")
HELD_OUT = corpus.load(INDEPENDENT / "heldout.txt")


def test_the_independent_corpus_has_the_size_issue_15_asks() -> None:
    """Written by a session that never saw the cleaner (see its README): at least 400
    fields in English, German and French, 150 context-free spans, 300 must-keep phrases, in
    a tune half and a held-out half of similar size; patients with several files."""
    halves = (TUNE, HELD_OUT)
    lines = [line for cases in halves for case in cases for line in case.lines]
    assert len(lines) >= 400 and all(sum(len(c.lines) for c in h) >= 200 for h in halves)
    free = [g for line in lines for g in line.gold if not g.known]
    assert len(free) >= 150
    keep = [*corpus.must_keep(INDEPENDENT / "must-keep-tune.txt"),
            *corpus.must_keep(INDEPENDENT / "must-keep-heldout.txt")]  # fmt: skip
    assert len(keep) >= 300
    assert {c.name.split("-")[0] for h in halves for c in h} >= {"us", "uk", "de", "fr"}
    assert sum(1 for h in halves for c in h if c.others) >= 10, "patients with several files"
    assert not {c.name for c in TUNE} & {c.name for c in HELD_OUT}


@pytest.mark.parametrize("case", TUNE, ids=[c.name for c in TUNE])
def test_what_the_patients_files_hold_is_found_in_the_tune_half(case: corpus.Case) -> None:
    """The patient's files pooled, as a run's first pass pools them. (The held-out half is
    only measured, by benchmarks/bench_text.py: the cleaner is not tuned on it.)"""
    cleaner = TextCleaner()
    known = Identifiers()
    for ds in case.datasets():
        known = known.union(Identifiers.from_dataset(ds))
    for line in case.lines:
        missed = corpus.missed(line, cleaner.find(line.text, known), known_only=True)
        assert not missed, f"tune line {line.number}: {len(missed)} known span(s) missed"


def test_must_keep_content_survives() -> None:
    cleaner = TextCleaner()
    keep = corpus.must_keep()
    seen: set[str] = set()
    for case in CASES:
        known = Identifiers.from_dataset(case.dataset())
        for line in case.lines:
            cleaned = cleaner.clean(line.text, known).text
            for text in keep:
                if text in line.text:
                    seen.add(text)
                    assert text in cleaned, f"corpus line {line.number}: {text!r} was changed"
    assert seen == set(keep), "every must-keep string occurs in the corpus"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_the_engine_cleans_like_the_cleaner(case: corpus.Case, make_engine: EngineFactory) -> None:
    engine = make_engine("ps3.15-basic", "clean-descriptors")
    cleaner = TextCleaner()
    for line in case.lines:
        ds = case.dataset()
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ds.SOPInstanceUID = "1.2.3.4"
        ds.ImageComments = line.text
        expected = cleaner.clean(line.text, Identifiers.from_dataset(case.dataset())).text
        out = deid(engine, ds)
        assert out.ImageComments == expected, f"corpus line {line.number}"


def test_the_corpus_parser() -> None:
    text, gold = corpus.parse_line("seen by Dr. [[NAME:Smith]] on [[date:5 May]]")
    assert text == "seen by Dr. Smith on 5 May"
    assert [(text[g.start : g.end], g.category.value, g.known) for g in gold] == [
        ("Smith", "name", True),
        ("5 May", "date", False),
    ]
    with pytest.raises(ValueError, match="unbalanced"):
        corpus.parse_line("[[NAME:x]")


# --------------------------------------------------------------------------------------------
# Descriptors


def _dotted(da: str) -> str:
    return f"{da[6:8]}.{da[4:6]}.{da[:4]}"


@pytest.mark.parametrize(
    ("category", "template", "token"),
    [
        ("name", "Follow-up for {given} {surname}", "[NAME]"),
        ("name", "STAGING PER DR {referring}", "[NAME]"),
        ("id", "MRN {patient_id}, acc {accession}", "[ID]"),
        ("date", "born {birth}", "[DATE]"),
        ("time", "contrast given at 14:32", "[TIME]"),
        ("phone", "call {phone}", "[PHONE]"),
        ("email", "results to j.doe@example.org", "[EMAIL]"),
        ("url", "see https://pacs.example.org/view?id=7", "[URL]"),
        ("address", "lives at {address}", "[ADDRESS]"),
        ("institution", "imaged at {institution}", "[INSTITUTION]"),
        ("age", "94-year-old woman", "[AGE]"),
    ],
)
def test_each_category_is_replaced_by_its_token(
    make_engine: EngineFactory,
    patient: synthetic.FakePatient,
    category: str,
    template: str,
    token: str,
) -> None:
    ds = _ct(patient)
    values = {
        "given": patient.given_name.title(),
        "surname": patient.surname.title(),
        "referring": str(ds.ReferringPhysicianName).split("^")[0],
        "patient_id": patient.patient_id,
        "accession": ds.AccessionNumber,
        "birth": _dotted(patient.birth_date),
        "phone": patient.phone,
        "address": patient.address.title(),
        "institution": ds.InstitutionName.title(),
    }
    text = template.format(**values)
    ds.SeriesDescription = text[:64]
    ds.ImageComments = text
    out = deid(make_engine("ps3.15-basic", "clean-descriptors"), ds)
    for keyword in ("SeriesDescription", "ImageComments"):
        cleaned = str(out[keyword].value)
        assert token in cleaned, (category, keyword)
        for key in template.split("{")[1:]:
            value = values[key.split("}")[0]]
            assert value.lower() not in cleaned.lower(), (category, keyword)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Kontrolle, Herr Schmidtbauer kooperativ", "Kontrolle, Herr [NAME] kooperativ"),
        ("Zuweisung Frau Dr. med. Weberknecht", "Zuweisung Frau Dr. med. [NAME]"),
        ("Untersuchung am 3. März 2024", "Untersuchung am [DATE]"),
        # "M." may be Monsieur or an initial: it goes with the name (privacy first).
        ("Examen du 3 mars 2024, M. Dupontel", "Examen du [DATE], [NAME]"),
        ("Vue par Mme Leroux-Vidal le 1er avril", "Vue par Mme [NAME] le [DATE]"),
        ("Seen by Prof. J. Hargreaves", "Seen by Prof. [NAME]"),
        ("Tel. +49 221 478-0", "Tel. [PHONE]"),
    ],
)
def test_german_french_and_titled_forms_without_context(text: str, expected: str) -> None:
    assert TextCleaner().clean(text).text == expected


@pytest.mark.parametrize(
    "text",
    [
        "T1 MPRAGE sag 1mm",
        "DWI b1000",
        "FLAIR 3D",
        "left temporal lesion 12 mm",
        "TR 2300 TE 30 TI 900",
        "ep2d_diff_b0_b1000_p2",
        "MR BRAIN W/WO CONTRAST",
        "DR CHEST PA",
        "CTDIvol 12.3 mGy DLP 456 mGy*cm",
        "Kopf^Routine",
        "b-values 0 500 1000 s/mm2",
    ],
)
def test_sequence_names_and_parameters_stay(make_engine: EngineFactory, text: str) -> None:
    ds = _ct(synthetic.fake_patient(2))
    ds.SeriesDescription = text
    out = deid(make_engine("ps3.15-basic", "clean-descriptors"), ds)
    assert out.SeriesDescription == text


def test_cleaned_values_fit_their_vr(make_engine: EngineFactory) -> None:
    patient = synthetic.fake_patient(3)
    ds = _ct(patient)
    name = f"{patient.given_name} {patient.surname}"
    # Short names become longer tokens: LO must still hold at most 64 characters.
    ds.SeriesDescription = "ax " + " x ".join(["Li", "Wu", "Ng"] * 4)
    assert len(ds.SeriesDescription) <= 64
    ds.OtherPatientNames = "WU^LI^NG"
    sh_tags = sorted(
        t for t in descriptor_tags() if dictionary_has_tag(t) and dictionary_VR(t) == "SH"
    )
    assert sh_tags, "Table E.1-1 has SH descriptors"
    ds.add_new(sh_tags[0], "SH", "Li Wu axial 3mm")
    ds.ImageComments = f"{name} " * 3
    out = deid(make_engine("ps3.15-basic", "clean-descriptors"), ds)
    description = out.SeriesDescription
    assert len(description) <= 64 and "Li" not in description.split()
    assert description.count("[NAME]") >= 2
    assert not description.endswith(("[", "[N", "[NA", "[NAM", "[NAME"))
    validate_value("LO", description, 2)
    short = str(out[sh_tags[0]].value)
    assert len(short) <= 16 and "Li" not in short.split()
    validate_value("SH", short, 2)
    assert patient.surname.lower() not in str(out.ImageComments).lower()


def test_a_code_string_that_would_need_a_token_gets_the_basic_action(
    make_engine: EngineFactory,
) -> None:
    ds = _ct(synthetic.fake_patient(4))
    ds.ReasonForTheAttributeModification = "COERCE"
    out = deid(make_engine("ps3.15-basic", "clean-descriptors"), ds)
    assert out.ReasonForTheAttributeModification == "COERCE", "nothing identifying: kept"
    ds = _ct(synthetic.fake_patient(4))
    ds.ReasonForTheAttributeModification = ds.PatientName.family_name
    out = deid(make_engine("ps3.15-basic", "clean-descriptors"), ds)
    assert out.ReasonForTheAttributeModification == "ANONYMIZED", "the Basic Profile's D"


def test_binary_descriptors_get_the_basic_action(make_engine: EngineFactory) -> None:
    ds = _ct(synthetic.fake_patient(4))
    ds.add_new(0x0016002B, "OB", b"EXIF maker note by Dr Who\x00")  # MakerNote
    engine = make_engine("ps3.15-basic", "clean-descriptors")
    result = engine.deidentify(ds, explain=True)
    assert result.dataset is not None and 0x0016002B not in result.dataset
    (report,) = [r for r in result.reports if r.tag == 0x0016002B]
    assert report.action == "X" and "cannot be cleaned" in report.source


def test_retain_patient_characteristics_cleans_its_c_rows(make_engine: EngineFactory) -> None:
    patient = synthetic.fake_patient(6)
    ds = _ct(patient)
    ds.Allergies = f"penicillin (told by {patient.given_name.title()} {patient.surname.title()})"
    out = deid(make_engine("ps3.15-basic", "retain-patient-characteristics"), ds)
    assert out.Allergies == "penicillin (told by [NAME])"


def test_sequences_under_clean_descriptors_are_walked(
    make_engine: EngineFactory, patient: synthetic.FakePatient
) -> None:
    source = _ct(patient)
    out = deid(make_engine("ps3.15-basic", "clean-descriptors"), _ct(patient))
    (request,) = out.RequestAttributesSequence
    (original,) = source.RequestAttributesSequence
    assert "RequestedProcedureID" not in request, "Table E.1-1 still removes the IDs"
    assert "ScheduledProcedureStepID" not in request
    assert request.ScheduledProcedureStepDescription == original.ScheduledProcedureStepDescription
    assert request.StudyInstanceUID == out.StudyInstanceUID != original.StudyInstanceUID


def test_a_local_codes_meaning_loses_the_patients_values(
    make_engine: EngineFactory, patient: synthetic.FakePatient
) -> None:
    """A site's own code (a local coding scheme) may name the patient in its meaning: kept
    under clean-descriptors, it is cleaned of the patient's values, and only of them; a
    standard code's meaning stays the standard's words (found by a black-box test: the
    option kept "Protocol for <patient>" that the Basic Profile removes with the sequence)."""
    ds = _ct(patient)
    surname = patient.surname.title()
    local = Dataset()
    local.CodeValue, local.CodingSchemeDesignator = "P17", "99LOCAL"
    local.CodeMeaning = f"Protocol for {patient.given_name.title()} {surname}"
    concept = Dataset()
    concept.CodeValue, concept.CodingSchemeDesignator = "C1", "L"
    concept.CodeMeaning = f"Head CT {surname}"
    local.ConceptNameCodeSequence = Sequence([concept])
    standard = Dataset()
    standard.CodeValue, standard.CodingSchemeDesignator = "113701", "DCM"
    standard.CodeMeaning = f"X-Ray Radiation Dose Report {surname}"  # the standard's, kept
    (request,) = ds.RequestAttributesSequence
    request.ScheduledProtocolCodeSequence = Sequence([local])
    request.RequestedProcedureCodeSequence = Sequence([standard])
    out = deid(make_engine("ps3.15-basic", "clean-descriptors"), ds)
    (cleaned,) = out.RequestAttributesSequence
    code = cleaned.ScheduledProtocolCodeSequence[0]
    assert code.CodeMeaning == "Protocol for [NAME]"
    assert code.ConceptNameCodeSequence[0].CodeMeaning == "Head CT [NAME]"
    kept = cleaned.RequestedProcedureCodeSequence[0]
    assert kept.CodeMeaning == standard.CodeMeaning


def test_replacement_tokens_come_from_the_profile(
    tmp_path: Path, make_engine: EngineFactory, patient: synthetic.FakePatient
) -> None:
    path = write_profile(
        tmp_path,
        'extends = "ps3.15-basic"\noptions = ["clean-descriptors"]\n'
        '[clean]\nreplacement = "[REDACTED]"\nname = "[PERSON]"\n',
        "tokens.toml",
    )
    profile = Profile.from_file(path)
    out = deid(make_engine(profile), _with_comment(patient))
    assert out.ImageComments == "[PERSON] seen on [REDACTED]"
    child = Profile.from_file(
        write_profile(tmp_path, 'extends = "tokens.toml"\n[clean]\ndate = "<d>"\n', "child.toml")
    )
    out = deid(make_engine(child), _with_comment(patient))
    assert out.ImageComments == "[PERSON] seen on <d>"
    assert child.digest != profile.digest != Profile.named("ps3.15-basic").digest


def _with_comment(patient: synthetic.FakePatient) -> FileDataset:
    ds = _ct(patient)
    ds.ImageComments = f"{patient.surname.title()} seen on {_dotted(patient.birth_date)}"
    return ds


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[clean]\nnamez = "[N]"', r"clean\.namez: unknown key 'namez'"),
        ("[clean]\nname = 3", r"clean\.name: must be a string"),
        ('[clean]\nname = "A\\\\B"', r"clean\.name: .*backslash"),
        ('[clean]\nreplacement = "[THIS IS FAR TOO LONG]"', r"clean\.replacement: .*16"),
        ('clean = "x"', r"clean: must be a table"),
    ],
)
def test_bad_clean_tables_are_load_errors(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        Profile.from_file(write_profile(tmp_path, body, "bad.toml"))


def test_knowledge_is_per_file(make_engine: EngineFactory) -> None:
    """A name that only another file holds is removed only where a pattern finds it."""
    one, other = synthetic.fake_patient(7), synthetic.fake_patient(8)
    assert one.surname != other.surname
    ds = _ct(one)
    ds.ImageComments = f"compare with {other.surname.title()}; Dr. {other.surname.title()}"
    out = deid(make_engine("ps3.15-basic", "clean-descriptors"), ds)
    assert out.ImageComments == f"compare with {other.surname.title()}; Dr. [NAME]"


@pytest.mark.parametrize("workers", [1, 2])
def test_a_run_knows_the_whole_patient(tmp_path: Path, workers: int) -> None:
    """A name only another file of the patient holds (an alias in its Other Patient Names)
    is cleaned from this file's comment: the run's first pass pooled the patient's values.
    The engine alone, given this file only, does not know it."""
    patient = synthetic.fake_patient(21)
    alias = "Zqxwvalias"
    first, second = _ct(patient, seed=5), _ct(patient, seed=6)
    first.OtherPatientNames = f"{alias.upper()}^BOB"
    second.ImageComments = f"compare; prior films list {alias}"
    folder = tmp_path / "in"
    folder.mkdir()
    for name, ds in (("a.dcm", first), ("b.dcm", second)):
        ds.save_as(folder / name, enforce_file_format=True)
    profile = Profile.named("ps3.15-basic").with_options(["clean-descriptors"])
    summary = run(
        [folder], RunConfig(profile=profile, key=KEY, output=tmp_path / "out", workers=workers)
    )
    assert summary.count(Outcome.WRITTEN) == 2
    comments = [
        str(dcmread(r.output).get("ImageComments", "")) for r in summary.results if r.output
    ]
    assert "compare; prior films list [NAME]" in comments, comments
    alone = Engine(profile.compile(), Pseudonymizer(KEY)).deidentify(dcmread(folder / "b.dcm"))
    assert alone.dataset is not None and alias in str(alone.dataset.ImageComments)


def test_a_run_knows_the_institutions_of_every_patient(tmp_path: Path) -> None:
    """One patient's files were made at an institution; another patient's history names it
    (a transfer): the run's first pass pools institution names across patients."""
    one, other = synthetic.fake_patient(31), synthetic.fake_patient(32)
    first, second = _ct(one, seed=5), _ct(other, seed=6)
    first.InstitutionName = "ZQXRIVERSIDE INFIRMARY"
    second.InstitutionName = "Elsewhere"
    second.ImageComments = "transferred from Zqxriverside yesterday"
    folder = tmp_path / "in"
    folder.mkdir()
    for name, ds in (("a.dcm", first), ("b.dcm", second)):
        ds.save_as(folder / name, enforce_file_format=True)
    profile = Profile.named("ps3.15-basic").with_options(["clean-descriptors"])
    summary = run([folder], RunConfig(profile=profile, key=KEY, output=tmp_path / "out", workers=1))
    comments = [
        str(dcmread(r.output).get("ImageComments", "")) for r in summary.results if r.output
    ]
    assert "transferred from [INSTITUTION] yesterday" in comments, comments


def test_the_crosswalk_id_of_the_patient_is_known(make_engine: EngineFactory) -> None:
    patient = synthetic.fake_patient(9)
    ds = _ct(patient)
    ds.ImageComments = f"see {patient.patient_id}-old"
    crosswalk = Crosswalk({patient.patient_id: "STUDY-0001"})
    out = deid(make_engine("ps3.15-basic", "clean-descriptors", crosswalk=crosswalk), ds)
    assert out.PatientID == "STUDY-0001"
    assert out.ImageComments == "see [ID]-old"


def test_collecting_identifiers_decodes_nothing_it_keeps() -> None:
    buffer = io.BytesIO()
    dcmwrite(buffer, _ct(synthetic.fake_patient(10)), enforce_file_format=True)
    buffer.seek(0)
    ds = dcmread(buffer)
    known = Identifiers.from_dataset(ds)
    assert known.names and known.ids and known.dates and known.phones and known.addresses
    assert isinstance(ds.get_item(0x00100010, keep_deferred=True), RawDataElement)
    assert "HOLLOWAY" not in repr(known) and repr(known) == "Identifiers(...)"


def test_no_identifier_survives_with_every_clean_option(tmp_path: Path) -> None:
    patients = [synthetic.fake_patient(21), synthetic.fake_patient(22)]
    datasets = [
        *synthetic.ct_series(patients[0], seed=21, n_slices=1, rows=8, columns=8),
        *synthetic.mr_series(patients[0], seed=21, n_slices=1, rows=8, columns=8),
        *synthetic.ct_series(patients[1], seed=22, n_slices=1, rows=8, columns=8),
    ]
    record = synthetic.phi_of(datasets)
    needles = {v for v in record.names | record.ids if len(v) >= 4}
    needles |= {d for d in record.dates if len(d) >= 8}
    needles |= {p.phone for p in patients} | {p.address for p in patients}
    synthetic.write_series(datasets, tmp_path / "in")
    profile = Profile.named("ps3.15-basic").with_options(CLEAN_ALL)
    summary = run(
        [tmp_path / "in"],
        RunConfig(profile=profile, key=KEY, output=tmp_path / "out", workers=1, today=TODAY),
    )
    assert summary.ok and len(summary.written) == len(datasets)
    kept_descriptions = 0
    for result in summary.written:
        assert result.output is not None
        data = result.output.read_bytes().upper()
        for needle in needles:
            assert needle.upper().encode() not in data, "an identifying value leaked"
        out = dcmread(result.output)
        kept_descriptions += "SeriesDescription" in out and "AdditionalPatientHistory" in out
    assert kept_descriptions == len(datasets), "the descriptions themselves are kept"


# --------------------------------------------------------------------------------------------
# Structured reports


def _sr(patient: synthetic.FakePatient, seed: int = 5) -> tuple[FileDataset, FileDataset]:
    image = _ct(patient, seed)
    return build.comprehensive_sr(patient, image), image


def _items(ds: Dataset) -> Iterator[tuple[int, Dataset]]:
    """Every content item with its depth."""

    def walk(items: Sequence, depth: int) -> Iterator[tuple[int, Dataset]]:
        for item in items:
            yield depth, item
            yield from walk(item.get("ContentSequence", []), depth + 1)

    yield from walk(ds.ContentSequence, 1)


def _codes(ds: Dataset) -> list[tuple[str, str, str]]:
    return [
        (e.CodeValue, e.CodingSchemeDesignator, e.CodeMeaning)
        for _, item in _items(ds)
        for key in ("ConceptNameCodeSequence", "ConceptCodeSequence")
        for e in item.get(key, [])
    ]


def test_sr_content_is_withheld_without_the_option(
    make_engine: EngineFactory, patient: synthetic.FakePatient
) -> None:
    result = make_engine().deidentify(_sr(patient)[0])
    assert result.dataset is None and result.withheld is Risk.STRUCTURED_CONTENT


def test_sr_tree_is_cleaned_at_every_depth(
    make_engine: EngineFactory, patient: synthetic.FakePatient
) -> None:
    source, image = _sr(patient)
    engine = make_engine("ps3.15-basic", "clean-structured-content")
    result = engine.deidentify(_sr(patient)[0])
    out = result.dataset
    assert out is not None
    items = dict(enumerate(_items(out)))
    assert [d for d, _ in _items(out)] == [d for d, _ in _items(source)], "the tree's shape"
    assert max(d for d, _ in items.values()) == 4
    by_type: dict[str, list[Dataset]] = {}
    for _, item in _items(out):
        by_type.setdefault(item.ValueType, []).append(item)
    subject, observer = sorted(
        by_type["PNAME"], key=lambda i: i.ConceptNameCodeSequence[0].CodeValue
    )[::-1]
    assert subject.PersonName == out.PatientName == out.PatientID
    reader = str(image.NameOfPhysiciansReadingStudy)
    assert str(observer.PersonName).startswith("DVP") and reader not in str(observer.PersonName)
    assert out.VerifyingObserverSequence[0].VerifyingObserverName == observer.PersonName
    texts = [str(i.TextValue) for i in by_type["TEXT"]]
    assert texts == [
        "12 mm lesion, left temporal. Discussed with Mr [NAME] on [DATE].",
        "Measured by Dr. [NAME], MRN [ID]",
    ]
    assert _codes(out) == _codes(source), "codes are kept"
    (number,) = by_type["NUM"]
    assert number.MeasuredValueSequence[0].NumericValue == 12
    assert number.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue == "mm"
    (uidref,) = by_type["UIDREF"]
    assert uidref.UID == out.StudyInstanceUID == result.uid_map[image.StudyInstanceUID]
    (image_item,) = by_type["IMAGE"]
    evidence = out.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    referenced = image_item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
    assert referenced == evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
    assert referenced == result.uid_map[image.SOPInstanceUID]
    for text in _texts(out):
        assert patient.surname.lower() not in text.lower()
        assert patient.patient_id not in text


def test_a_persons_pseudonym_is_the_same_in_every_file(make_engine: EngineFactory) -> None:
    engine = make_engine("ps3.15-basic", "clean-structured-content")
    first, second = synthetic.fake_patient(31), synthetic.fake_patient(32)
    a, b = _sr(first, 31)[0], _sr(second, 31)[0]
    for ds in (a, b):
        ds.VerifyingObserverSequence[0].VerifyingObserverName = "KILDARE^JAMES"
    out_a, out_b = deid(engine, a), deid(engine, b)
    name_a = out_a.VerifyingObserverSequence[0].VerifyingObserverName
    assert name_a == out_b.VerifyingObserverSequence[0].VerifyingObserverName
    assert out_a.PatientName != out_b.PatientName


@pytest.mark.parametrize("dates", ["", "retain-long-modified-dates", "retain-long-full-dates"])
def test_sr_dates_follow_the_date_policy(
    make_engine: EngineFactory, patient: synthetic.FakePatient, dates: str
) -> None:
    image = _sr(patient)[1]
    options = ["clean-structured-content", *([dates] if dates else [])]
    result = make_engine("ps3.15-basic", *options).deidentify(_sr(patient)[0])
    out = result.dataset
    assert out is not None
    values = {
        item.ValueType: item
        for _, item in _items(out)
        if item.ValueType in ("DATE", "TIME", "DATETIME")
    }
    date, time, when = values["DATE"].Date, values["TIME"].Time, values["DATETIME"].DateTime
    if not dates:
        assert (date, time, when) == ("19000101", "000000", "19000101000000")
    elif dates == "retain-long-modified-dates":
        offset = result.date_offset_days
        assert offset is not None and offset < 0
        assert date == shift_da(image.StudyDate, offset) == out.StudyDate
        assert time == image.StudyTime, "times of day are kept"
        assert when == shift_dt(image.StudyDate + image.StudyTime, offset)
    else:
        assert (date, time, when) == (
            image.StudyDate,
            image.StudyTime,
            image.StudyDate + image.StudyTime,
        )


def test_acquisition_context_is_cleaned_or_removed(
    make_engine: EngineFactory, patient: synthetic.FakePatient
) -> None:
    def with_context() -> FileDataset:
        ds = _ct(patient)
        item = Dataset()
        item.ValueType = "TEXT"
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "121106", "DCM", "Comment"
        item.ConceptNameCodeSequence = [code]
        item.TextValue = f"breath-hold coached by {patient.surname.title()}"
        ds.AcquisitionContextSequence = [item]
        return ds

    basic = deid(make_engine(), with_context())
    assert len(basic.get("AcquisitionContextSequence", [])) == 0
    out = deid(make_engine("ps3.15-basic", "clean-structured-content"), with_context())
    (item,) = out.AcquisitionContextSequence
    assert item.TextValue == "breath-hold coached by [NAME]"
    assert item.ConceptNameCodeSequence[0].CodeMeaning == "Comment"


# --------------------------------------------------------------------------------------------
# dciodvfy


def _errors(path: Path) -> set[str]:
    from .test_dciodvfy import dciodvfy_errors

    return set(dciodvfy_errors(path))


def _deidentify_file(source_path: Path, profile: Profile, output: Path) -> Path:
    source = read_source(source_path)
    engine = Engine(profile.compile(), Pseudonymizer(KEY), today=TODAY)
    result = engine.deidentify(source.dataset, has_pixel_data=source.has_pixel_data)
    assert result.dataset is not None, result.withheld_detail
    write_output(source, result.dataset, output)
    return output


SR_FILES = ["built", "test-SR.dcm", "reportsi.dcm"]


@needs_dciodvfy
@pytest.mark.parametrize("dates", ["", "retain-long-modified-dates"])
@pytest.mark.parametrize("name", SR_FILES)
def test_cleaned_sr_passes_dciodvfy(tmp_path: Path, name: str, dates: str) -> None:
    if name == "built":
        path = tmp_path / "sr.dcm"
        _sr(synthetic.fake_patient(41), 41)[0].save_as(path, enforce_file_format=True)
        assert not _errors(path), "the hand-built SR is valid"
    else:
        found = get_testdata_file(name)
        assert found is not None
        path = Path(found)
    profile = Profile.named("ps3.15-basic").with_options(
        ["clean-structured-content", *([dates] if dates else [])]
    )
    out = _deidentify_file(path, profile, tmp_path / "out.dcm")
    assert _errors(out) <= _errors(path)
    cleaned = dcmread(out)
    assert len(list(_items(cleaned))) == len(list(_items(dcmread(path))))


@needs_dciodvfy
def test_gsps_passes_dciodvfy(tmp_path: Path) -> None:
    path = tmp_path / "pr.dcm"
    patient = synthetic.fake_patient(42)
    build.gsps(patient, _ct(patient, 42)).save_as(path, enforce_file_format=True)
    assert not _errors(path), "the hand-built presentation state is valid"
    modified = Profile.named("ps3.15-basic").with_options(
        ["clean-graphics", "retain-long-modified-dates"]
    )
    assert not _errors(_deidentify_file(path, modified, tmp_path / "a.dcm"))
    # Without a date option the Basic Profile removes Presentation Creation Date and Time
    # (X in Table E.1-1 although Type 1 here): that, and nothing the cleaner does, is new.
    basic = Profile.named("ps3.15-basic").with_options(["clean-graphics"])
    new = _errors(_deidentify_file(path, basic, tmp_path / "b.dcm"))
    assert all("PresentationCreation" in error for error in new), new


@needs_dciodvfy
@pytest.mark.parametrize("name", ["examples_overlay.dcm", "synthetic"])
def test_overlays_kept_by_clean_graphics_pass_dciodvfy(tmp_path: Path, name: str) -> None:
    if name == "synthetic":
        path = tmp_path / "mr.dcm"
        _mr(synthetic.fake_patient(43), 43).save_as(path, enforce_file_format=True)
    else:
        found = get_testdata_file(name)
        assert found is not None
        path = Path(found)
    profile = Profile.named("ps3.15-basic").with_options(["clean-graphics"])
    out = _deidentify_file(path, profile, tmp_path / "out.dcm")
    assert _errors(out) <= _errors(path)
    assert dcmread(out)[0x60003000].value == dcmread(path)[0x60003000].value


# --------------------------------------------------------------------------------------------
# Graphics


def test_overlays_keep_bitmap_and_geometry_and_lose_names(
    make_engine: EngineFactory, patient: synthetic.FakePatient
) -> None:
    def mr() -> FileDataset:
        ds = _mr(patient)
        ds.add_new(0x60004000, "LT", f"drawn by {patient.given_name.title()} on 12.03.2024")
        return ds

    source = mr()
    out = deid(make_engine("ps3.15-basic", "clean-graphics"), mr())
    for element in (0x0010, 0x0011, 0x0040, 0x0050, 0x0100, 0x0102, 0x3000):
        tag = 0x60000000 | element
        assert out[tag].value == source[tag].value, f"{tag:08X} kept"
    assert out[0x60001500].value == "[NAME] ROI 1"
    assert out[0x60000022].value == "lesion outline for [NAME]"
    assert out[0x60004000].value == "drawn by [NAME] on [DATE]"
    basic = deid(make_engine(), mr())
    assert not any(e.tag >> 16 == 0x6000 for e in basic), "the Basic Profile removes overlays"


def test_overlays_of_implicit_vr_files(tmp_path: Path, make_engine: EngineFactory) -> None:
    source = _mr(synthetic.fake_patient(44))
    source.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    path = tmp_path / "implicit.dcm"
    source.save_as(path, enforce_file_format=True)
    read = read_source(path)
    result = make_engine("ps3.15-basic", "clean-graphics").deidentify(read.dataset)
    assert result.dataset is not None
    write_output(read, result.dataset, tmp_path / "out.dcm")
    out = dcmread(tmp_path / "out.dcm")
    assert out[0x60003000].value == source[0x60003000].value
    assert out[0x60000010].value == source[0x60000010].value
    assert str(out[0x60001500].value) == "[NAME] ROI 1"


def test_presentation_state_text_objects_are_cleaned(
    make_engine: EngineFactory, patient: synthetic.FakePatient
) -> None:
    image = _ct(patient)
    source = build.gsps(patient, image)
    # The Basic Profile's D on the Graphic Annotation Sequence: its items stay, their texts
    # replaced by dummies and their references by new UIDs (issue 11: D never withholds).
    basic = make_engine().deidentify(build.gsps(patient, image)).dataset
    assert basic is not None
    (dummy_text,) = basic.GraphicAnnotationSequence[0].TextObjectSequence
    assert dummy_text.UnformattedTextValue == "ANONYMIZED"
    assert patient.surname not in str(basic).upper()
    result = make_engine("ps3.15-basic", "clean-graphics").deidentify(build.gsps(patient, image))
    out = result.dataset
    assert out is not None
    (annotation,) = out.GraphicAnnotationSequence
    (text,) = annotation.TextObjectSequence
    assert text.UnformattedTextValue == "Lesion 12 mm - Dr. [NAME] [DATE]"
    graphic = annotation.GraphicObjectSequence[0]
    original = source.GraphicAnnotationSequence[0].GraphicObjectSequence[0]
    assert graphic.GraphicData == original.GraphicData
    assert text.BoundingBoxTopLeftHandCorner == [2.0, 2.0]
    referenced = annotation.ReferencedImageSequence[0].ReferencedSOPInstanceUID
    series = out.ReferencedSeriesSequence[0]
    assert referenced == series.ReferencedImageSequence[0].ReferencedSOPInstanceUID
    assert referenced == result.uid_map[image.SOPInstanceUID]
    assert out.GraphicLayerSequence[0].GraphicLayerDescription == "measurements for [NAME]"


# --------------------------------------------------------------------------------------------
# Encapsulated documents


def _pdf(patient: synthetic.FakePatient) -> FileDataset:
    image = _ct(patient)
    ds = build.comprehensive_sr(patient, image)
    for keyword in ("ContentSequence", "VerifyingObserverSequence", "ValueType"):
        delattr(ds, keyword)
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.104.1"
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.Modality = "DOC"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.DocumentTitle = f"Report for {patient.surname.title()}"
    ds.add_new(0x00420011, "OB", f"%PDF-1.4 {patient.name}".encode())
    return ds


def test_encapsulated_documents_are_withheld_or_reported(
    tmp_path: Path, make_engine: EngineFactory, patient: synthetic.FakePatient
) -> None:
    assert make_engine().deidentify(_pdf(patient)).withheld is Risk.ENCAPSULATED_DOCUMENT
    allowed = Profile.from_file(
        write_profile(
            tmp_path,
            'extends = "ps3.15-basic"\noptions = ["clean-descriptors"]\n'
            'allow = ["encapsulated-document"]\n',
            "pdf.toml",
        )
    )
    result = make_engine(allowed).deidentify(_pdf(patient))
    assert result.dataset is not None
    (note,) = result.notes
    assert "was not cleaned" in note and patient.surname not in note
    assert result.dataset.DocumentTitle == "Report for [NAME]"
    folder = tmp_path / "in"
    folder.mkdir()
    _pdf(patient).save_as(folder / "doc.dcm", enforce_file_format=True)
    summary = run([folder], RunConfig(profile=allowed, key=KEY, output=tmp_path / "out", workers=1))
    (written,) = summary.results
    assert written.outcome is Outcome.WRITTEN and "was not cleaned" in written.reason
    explanation = explain(folder / "doc.dcm", allowed, KEY)
    assert "was not cleaned" in explanation.verdict


# --------------------------------------------------------------------------------------------
# explain


def test_explain_tells_what_was_cleaned_without_values(
    tmp_path: Path, patient: synthetic.FakePatient
) -> None:
    path = synthetic.write_series([_ct(patient)], tmp_path)[0]
    profile = Profile.named("ps3.15-basic").with_options(["clean-descriptors"])
    explanation = explain(path, profile, Key(bytes(range(32))))
    rows = {row.element: row for row in explanation.rows}
    history = rows["AdditionalPatientHistory"]
    assert history.action == "C"
    assert history.source.endswith("(cleaned: 1 name, 1 institution)")
    assert "nothing identifying found" in rows["SeriesDescription"].source
    assert rows["RequestAttributesSequence"].action == "C"
    values = synthetic.phi_of([_ct(patient)])
    secrets = {v.lower() for v in values.names | values.ids | values.texts if len(v) >= 4}
    for row in explanation.rows:
        text = " ".join((row.element, row.source, row.before, row.after)).lower()
        assert not any(secret in text for secret in secrets), row.element
    shown = {r.element: r for r in explain(path, profile, KEY, show_values=True).rows}
    assert patient.surname.title() not in shown["PatientComments"].after
    assert "[NAME]" in shown["PatientComments"].after
    assert patient.surname.title() in shown["PatientComments"].before
