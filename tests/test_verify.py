"""``verify`` catches every class of fault seeded into otherwise clean output.

Clean output comes from the real engine (:func:`dicomveil.run`) on synthetic patients; each
test copies it, seeds one fault with pydicom or by patching bytes, and asserts that
:func:`dicomveil.qc.verify` reports it with the right check and category, that clean output
passes, and that no value read from a file is printed unless ``--show-values`` asks for it.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import random
import re
import shutil
import sys
import tracemalloc
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian
from typer.testing import CliRunner

import dicomveil.cli as dv_cli
from dicomveil import Key, Outcome, Profile, RunConfig, run, verify
from dicomveil.cli import app
from dicomveil.qc.verify import Category, Check, Finding, IodCheck, RiskKind, Verdict, VerifyReport
from dicomveil.qc.verify.context import _Context
from dicomveil.qc.verify.contributions import _walk_values
from dicomveil.qc.verify.elements import _Data, _encodings, _items, _nodes, _text, _values
from dicomveil.qc.verify.expectations import _Rules
from dicomveil.qc.verify.files import _FileCheck
from dicomveil.qc.verify.inputs import _InputWalk
from dicomveil.qc.verify.leaks import _WHAT, _regions
from dicomveil.qc.verify.needles import (
    _build_needles,
    _extend_needles,
    _grown,
    _Kind,
    _kind,
    _trie,
)
from dicomveil.qc.verify.reading import _load_output, _parse, _Read
from dicomveil.qc.verify.sources import _pixel_digest
from dicomveil.qc.verify.validity import _VALID
from tests.support import synthetic
from tests.support.commands import CorpusFile, real_files
from tests.support.scratch import scratch

from .conftest import write_profile

KEY = Key(b"k" * 32)
BASIC = Profile.named("ps3.15-basic")
RETAINING = BASIC.with_options(["retain-long-modified-dates", "retain-safe-private", "retain-uids"])
PDF_CLASS = "1.2.840.10008.5.1.4.1.1.104.1"
HAS_DCIODVFY = shutil.which("dciodvfy") is not None
RUNNER = CliRunner()


@dataclass(frozen=True)
class Case:
    """A real de-identification run: inputs, output, maps, and the originals' PHI."""

    input: Path
    output: Path
    maps: Path
    profile: Profile
    patient: synthetic.FakePatient
    originals: tuple[FileDataset, ...]

    def check(
        self,
        *,
        against: Path | Literal["case"] | None = "case",
        map_dir: Path | Literal["case"] | None = "case",
        profile: Profile | None = None,
        show_values: bool = False,
        workers: int = 0,
        iod: str = "structure",
    ) -> VerifyReport:
        """verify() on the output, by default with this case's inputs, maps and profile."""
        return verify(
            self.output,
            against=self.input if isinstance(against, str) else against,
            profile=profile or self.profile,
            map_dir=self.maps if isinstance(map_dir, str) else map_dir,
            show_values=show_values,
            workers=workers,
            iod=iod,
        )

    def outputs(self) -> list[Path]:
        return sorted(p for p in self.output.rglob("*") if p.is_file())

    def output_of(self, modality: str) -> Path:
        for path in self.outputs():
            if dcmread(path, stop_before_pixels=True).Modality == modality:
                return path
        raise AssertionError(f"no {modality} output")

    def clone(self, folder: Path) -> Case:
        shutil.copytree(self.output, folder / "out")
        return replace(self, output=folder / "out")


def _make_case(
    root: Path, profile: Profile, *, seed: int = 1, rows: int = 16, slices: tuple[int, int] = (3, 2)
) -> Case:
    patient = synthetic.fake_patient(seed)
    originals = (
        *synthetic.ct_series(patient, seed=seed, n_slices=slices[0], rows=rows, columns=rows),
        *synthetic.mr_series(patient, seed=seed, n_slices=slices[1], rows=rows, columns=rows),
    )
    synthetic.write_series(originals, root / "in")
    config = RunConfig(
        profile=profile, key=KEY, output=root / "out", workers=1, map_dir=root / "maps"
    )
    summary = run([root / "in"], config)
    assert [r.outcome for r in summary.results] == [Outcome.WRITTEN] * len(originals)
    return Case(root / "in", root / "out", root / "maps", profile, patient, originals)


@pytest.fixture(scope="module")
def basic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Case]:
    with scratch(tmp_path_factory, "basic") as root:
        yield _make_case(root, BASIC)


@pytest.fixture(scope="module")
def retaining(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Case]:
    with scratch(tmp_path_factory, "retaining") as root:
        yield _make_case(root, RETAINING)


def found(
    report: VerifyReport, check: Check, category: Category, path: str | None = None
) -> list[str]:
    """Messages of the findings of one check and category (at one element path)."""
    return [
        f.message
        for f in report.findings
        if f.check is check and f.category is category and (path is None or f.path == path)
    ]


def assert_caught(report: VerifyReport) -> None:
    assert report.result is Verdict.FINDINGS and report.exit_code == 1


def phi_strings(case: Case) -> set[str]:
    record = synthetic.phi_of(case.originals)
    values = record.names | record.ids | record.uids | {d for d in record.dates if len(d) >= 8}
    return {v for v in values if len(v) >= 5}


def assert_no_phi(text: str, values: Iterable[str]) -> None:
    lowered = text.lower()
    leaked = sorted(v for v in values if v.lower() in lowered)
    assert not leaked, f"PHI printed: {leaked}"


def edit(path: Path, change: Callable[[Dataset], object]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # invalid values are what some tests write
        ds = dcmread(path)
        change(ds)
        ds.save_as(path, enforce_file_format=True)


# --------------------------------------------------------------------------------------------
# Clean output passes


@pytest.mark.parametrize("name", ["basic", "retaining"])
def test_clean_output_passes(name: str, request: pytest.FixtureRequest) -> None:
    case: Case = request.getfixturevalue(name)
    for report in (case.check(), case.check(against=None), case.check(map_dir=None)):
        assert report.findings == (), [f.to_dict() for f in report.findings]
        assert report.result is Verdict.PASS and report.exit_code == 0
        assert report.files == len(case.originals)
    flags = {r.flag for r in case.check().risk_flags}
    if name == "retaining":
        assert flags == {RiskKind.PRIVATE_ELEMENTS}  # safe private elements kept: flagged
    else:
        assert flags == set()


def test_clean_output_passes_with_workers(basic: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    module = sys.modules["dicomveil.qc.verify.runner"]
    monkeypatch.setattr(module, "_PARALLEL_FROM", 1)
    report = basic.check(workers=2)
    assert report.result is Verdict.PASS and report.files == len(basic.originals)


def _double(chunk: list[int]) -> list[int]:
    return [2 * n for n in chunk]


def _double_here(parent: int) -> Callable[[list[int]], list[int]]:
    """Doubles in the process ``parent`` only: a child fails on its first chunk."""

    def double(chunk: list[int]) -> list[int]:
        if os.getpid() != parent:
            raise RuntimeError("a failing child")
        return _double(chunk)

    return double


@pytest.mark.parametrize("fork", [True, False], ids=["forked", "pool"])
def test_workers_find_what_one_process_finds(
    basic: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fork: bool
) -> None:
    """Inputs and outputs shared out in chunks among processes (needles merged in input
    order, repeats sent once per process): the same report, finding for finding."""
    module = sys.modules["dicomveil.qc.verify.runner"]
    case = _faulty(basic.clone(tmp_path))
    alone = case.check(workers=1, show_values=True).to_dict()
    monkeypatch.setattr(module, "_PARALLEL_FROM", 1)
    monkeypatch.setattr(module, "_FORK", fork and module._FORK)
    assert case.check(workers=2, show_values=True).to_dict() == alone
    assert case.check(workers=3, show_values=True).to_dict() == alone


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forked children: Linux")
def test_forked_children_give_every_result_or_the_error() -> None:
    module = sys.modules["dicomveil.qc.verify.runner"]
    chunks = [[n, n + 1] for n in range(0, 40, 2)]
    assert module._forked(_double, chunks, 2) == [_double(c) for c in chunks]
    # A child that fails leaves its chunks to the calling process, which works them.
    here = module._forked(_double_here(os.getpid()), chunks, 1)
    assert here == [_double(c) for c in chunks]

    def broken(chunk: list[int]) -> list[int]:
        raise ValueError(chunk)

    with pytest.raises(ValueError):  # what fails in every process fails in the caller
        module._forked(broken, chunks, 1)


# --------------------------------------------------------------------------------------------
# Seeded faults


def test_name_in_a_private_element(basic: Case, tmp_path: Path) -> None:
    case = basic.clone(tmp_path)

    def add_private(ds: Dataset) -> None:
        block = ds.private_block(0x0009, "ACME PRIVATE", create=True)
        block.add_new(0x01, "LO", case.patient.name)

    edit(case.output_of("CT"), add_private)
    report = case.check()
    assert_caught(report)
    path = '(0009,"ACME PRIVATE",xx01)'
    assert found(report, Check.CONFORMANCE, Category.PRIVATE_ELEMENT, path)
    assert found(report, Check.LEAK, Category.NAME, path)


def test_a_name_only_another_file_of_the_patient_holds(tmp_path: Path) -> None:
    """The patient-wide knowledge of verify (issue 15): the mother's birth name is in one
    input only (the MR); verify finds it in the CT's output, where a broken cleaner left it
    in a comment."""
    case = _make_case(tmp_path / "case", BASIC, seed=5)
    inputs = sorted(p for p in case.input.rglob("*") if p.is_file())
    mr = next(p for p in inputs if dcmread(p).Modality == "MR")
    original = dcmread(mr)
    original.PatientMotherBirthName = "ZQXMOTHERLY^ANN"
    original.save_as(mr)
    assert "ZQXMOTHERLY" not in b"".join(p.read_bytes() for p in inputs if p != mr).decode(
        "latin-1"
    )

    def comment(ds: Dataset) -> None:
        ds.ImageComments = "mother Zqxmotherly present"

    edit(case.output_of("CT"), comment)
    report = case.check()
    assert found(report, Check.LEAK, Category.NAME, "ImageComments")


def test_a_surname_in_a_kept_code_meaning(tmp_path: Path) -> None:
    """The Basic Profile keeps the code sequences Table E.1-1 does not list; a local code's
    meaning that names the patient ("Head of <surname>") is a leak verify reports, though
    the input's code meaning holds the surname too (its words were taken for vocabulary
    and the surname was no longer looked for: found by a black-box test)."""
    patient = synthetic.fake_patient(3)
    originals = synthetic.ct_series(patient, seed=3, n_slices=2, rows=16, columns=16)
    for ds in originals:
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator = "R1", "99LOCAL"
        code.CodeMeaning = f"Head of {patient.surname.title()}"
        ds.AnatomicRegionSequence = Sequence([code])
    synthetic.write_series(originals, tmp_path / "in")
    config = RunConfig(profile=BASIC, key=KEY, output=tmp_path / "out", workers=1)
    run([tmp_path / "in"], config)
    report = verify(tmp_path / "out", against=tmp_path / "in", profile=BASIC, workers=1)
    assert found(report, Check.LEAK, Category.NAME, "AnatomicRegionSequence[0]>CodeMeaning")


def test_a_list_preset_keeps_the_names_verify_looks_for(tmp_path: Path) -> None:
    """lab-dicombrowser keeps what it does not list, Other Patient Names and descriptions
    among them: the patient's name there is still reported (a black-box test found verify
    blind to every name under it, because what the preset keeps counted as kept on
    purpose); a name a rule keeps is kept on purpose (test_engine_bug_... below)."""
    patient = synthetic.fake_patient(4)
    originals = synthetic.ct_series(patient, seed=4, n_slices=1, rows=16, columns=16)
    surname = patient.surname.title()
    for ds in originals:
        ds.OtherPatientNames = f"{patient.surname}^{patient.given_name}"
        ds.StudyDescription = f"CT head for {patient.given_name.title()} {surname}"
    synthetic.write_series(originals, tmp_path / "in")
    lab = Profile.named("lab-dicombrowser")
    config = RunConfig(profile=lab, key=KEY, output=tmp_path / "out", workers=1)
    run([tmp_path / "in"], config)
    report = verify(tmp_path / "out", against=tmp_path / "in", profile=lab, workers=1)
    assert found(report, Check.LEAK, Category.NAME, "StudyDescription")
    assert found(report, Check.LEAK, Category.NAME, "OtherPatientNames")


def test_id_in_a_nested_sequence_item(basic: Case, tmp_path: Path) -> None:
    case = basic.clone(tmp_path)

    def nest(ds: Dataset) -> None:
        ds.DeidentificationMethodCodeSequence[0].CodeMeaning = f"see {case.patient.patient_id}"

    edit(case.output_of("MR"), nest)
    report = case.check()
    assert_caught(report)
    assert found(
        report, Check.LEAK, Category.ID, "DeidentificationMethodCodeSequence[0]>CodeMeaning"
    )


def test_original_uid_in_a_reference(basic: Case, tmp_path: Path) -> None:
    case = basic.clone(tmp_path)
    original = str(case.originals[0].SOPInstanceUID)

    def refer(ds: Dataset) -> None:
        item = Dataset()
        item.ReferencedSOPClassUID = ds.SOPClassUID
        item.ReferencedSOPInstanceUID = original
        ds.ReferencedImageSequence = Sequence([item])

    edit(case.output_of("MR"), refer)
    report = case.check()
    assert_caught(report)
    path = "ReferencedImageSequence[0]>ReferencedSOPInstanceUID"
    assert found(report, Check.REFERENCE, Category.ORIGINAL_UID, path)
    assert not found(report, Check.LEAK, Category.UID, path), "reported once, by its check"
    # The map alone (no inputs) knows the original UIDs too.
    assert found(case.check(against=None), Check.REFERENCE, Category.ORIGINAL_UID, path)


def test_reference_to_an_instance_not_in_the_output(basic: Case, tmp_path: Path) -> None:
    case = basic.clone(tmp_path)

    def refer(ds: Dataset) -> None:
        item = Dataset()
        item.ReferencedSOPClassUID = ds.SOPClassUID
        item.ReferencedSOPInstanceUID = "2.25.1234567890123456789"
        ds.ReferencedImageSequence = Sequence([item])

    edit(case.output_of("MR"), refer)
    report = case.check()
    assert_caught(report)
    assert found(report, Check.REFERENCE, Category.DANGLING_REFERENCE)


def test_date_left_unshifted(retaining: Case, tmp_path: Path) -> None:
    case = retaining.clone(tmp_path)
    target = case.output_of("MR")
    sop = str(dcmread(target).SOPInstanceUID)  # retain-uids: the original's UID
    original = next(ds for ds in case.originals if str(ds.SOPInstanceUID) == sop)
    assert dcmread(target).StudyDate != original.StudyDate, "the engine shifted it"
    edit(target, lambda ds: setattr(ds, "StudyDate", original.StudyDate))
    report = case.check()
    assert_caught(report)
    assert found(report, Check.CONFORMANCE, Category.ORIGINAL_KEPT, "StudyDate")
    assert found(report, Check.LEAK, Category.DATE, "StudyDate")


def test_shifted_date_equal_to_another_original_date(retaining: Case, tmp_path: Path) -> None:
    """A date shifted like the rest of its file may land on another original date: that is
    no leak. An original date moved elsewhere is."""
    case = retaining.clone(tmp_path)
    shutil.copytree(case.input, tmp_path / "in")
    case = replace(case, input=tmp_path / "in")
    target = case.output_of("MR")
    shifted = str(dcmread(target).StudyDate)
    edit(case.input / "IM0001", lambda ds: setattr(ds, "AdmittingDate", shifted))
    report = case.check()
    assert report.result is Verdict.PASS, [f.to_dict() for f in report.findings]

    birth = str(case.originals[0].PatientBirthDate)
    edit(target, lambda ds: setattr(ds, "ContentDate", birth))
    assert found(case.check(), Check.LEAK, Category.DATE, "ContentDate")


def test_invalid_date_value(retaining: Case, tmp_path: Path) -> None:
    case = retaining.clone(tmp_path)
    edit(case.output_of("CT"), lambda ds: setattr(ds, "ContentDate", "20231345"))
    report = case.check()
    assert_caught(report)
    assert found(report, Check.VALIDITY, Category.INVALID_VALUE, "ContentDate")


def test_element_the_profile_removes(basic: Case, tmp_path: Path) -> None:
    case = basic.clone(tmp_path)
    edit(case.output_of("CT"), lambda ds: setattr(ds, "PatientAddress", case.patient.address))
    report = case.check()
    assert_caught(report)
    assert found(report, Check.CONFORMANCE, Category.REMOVED_PRESENT, "PatientAddress")
    assert found(report, Check.LEAK, Category.ADDRESS, "PatientAddress")
    # Without the inputs the conformance check still sees it.
    alone = case.check(against=None, map_dir=None)
    assert found(alone, Check.CONFORMANCE, Category.REMOVED_PRESENT, "PatientAddress")


def test_copy_of_an_input_added_by_hand(basic: Case, tmp_path: Path) -> None:
    case = basic.clone(tmp_path)
    shutil.copy(case.input / "IM0001", case.output / "extra.dcm")
    report = case.check()
    assert_caught(report)
    hand = [f for f in report.findings if f.file == "extra.dcm"]
    assert {(f.check, f.category) for f in hand} >= {
        (Check.REFERENCE, Category.UNMATCHED_FILE),
        (Check.REFERENCE, Category.ORIGINAL_UID),
        (Check.LEAK, Category.NAME),
        (Check.LEAK, Category.ID),
        (Check.CONFORMANCE, Category.REMOVED_PRESENT),
        (Check.CONFORMANCE, Category.PRIVATE_ELEMENT),
    }
    assert all(f.file == "extra.dcm" for f in report.findings)


def test_dicom_file_not_in_the_map(basic: Case, tmp_path: Path) -> None:
    other = _make_case(tmp_path / "other", BASIC, seed=2)
    case = basic.clone(tmp_path)
    stranger = other.outputs()[0]
    shutil.copy(stranger, case.output / "stranger.dcm")
    for report in (case.check(), case.check(against=None)):
        assert_caught(report)
        assert {f.file for f in report.findings} == {"stranger.dcm"}
        categories = [f.category for f in report.findings]
        assert categories.count(Category.UNMATCHED_FILE) == 1
        # The stranger keeps its image references (X/Z/U*: U), to instances of its own
        # series that are not in this output.
        assert set(categories) <= {Category.UNMATCHED_FILE, Category.DANGLING_REFERENCE}


def test_duplicate_instance(basic: Case, tmp_path: Path) -> None:
    case = basic.clone(tmp_path)
    shutil.copy(case.output_of("CT"), case.output / "again.dcm")
    report = case.check()
    assert_caught(report)
    assert found(report, Check.REFERENCE, Category.DUPLICATE_INSTANCE, "SOPInstanceUID")


def test_name_in_a_file_path(basic: Case, tmp_path: Path) -> None:
    case = basic.clone(tmp_path)
    patient_folder = next(p for p in case.output.iterdir() if not p.name.startswith("."))
    patient_folder.rename(case.output / f"{case.patient.surname}_scans")
    report = case.check()
    assert_caught(report)
    assert found(report, Check.LEAK, Category.NAME, "(file path)")
    assert len(found(report, Check.LEAK, Category.NAME)) == len(case.originals)
    assert all(f.file.startswith("***_scans/") for f in report.findings)
    shown = case.check(show_values=True)
    assert all(f.file.startswith(f"{case.patient.surname}_scans/") for f in shown.findings)


def _pdf(path: Path, text: bytes, *, compressed: bool) -> None:
    content = b"BT /F1 12 Tf 72 712 Td (" + text + b") Tj ET"
    if compressed:
        stream = zlib.compress(content)
        body = b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream)
    else:
        stream = content
        body = b"<< /Length %d >>\nstream\n" % len(stream)
    document = b"%PDF-1.4\n4 0 obj\n" + body + stream + b"\nendstream\nendobj\n%%EOF\n"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(PDF_CLASS)
    meta.MediaStorageSOPInstanceUID = UID("2.25.98765432109876543210")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), Dataset(), file_meta=meta, preamble=b"\x00" * 128)
    ds.SOPClassUID = PDF_CLASS
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DOC"
    ds.PatientName = "DV0000000000"
    ds.PatientID = "DV0000000000"
    ds.StudyInstanceUID = "2.25.98765432109876543211"
    ds.SeriesInstanceUID = "2.25.98765432109876543212"
    ds.BurnedInAnnotation = "YES"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = document + b"\x00" * (len(document) % 2)
    ds.save_as(path, enforce_file_format=True)


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "flate"])
def test_pdf_left_in(basic: Case, tmp_path: Path, compressed: bool) -> None:
    case = basic.clone(tmp_path)
    text = f"Patient {case.patient.given_name} {case.patient.surname}".encode()
    _pdf(case.output / "report.dcm", text, compressed=compressed)
    report = case.check()
    assert_caught(report)
    path = (
        "EncapsulatedDocument (a compressed PDF stream)" if compressed else "EncapsulatedDocument"
    )
    assert found(report, Check.LEAK, Category.NAME, path)
    flags = {(r.file, r.flag) for r in report.risk_flags}
    assert ("report.dcm", RiskKind.ENCAPSULATED_DOCUMENT) in flags


def test_private_creator_without_elements(basic: Case, tmp_path: Path) -> None:
    case = basic.clone(tmp_path)
    edit(case.output_of("MR"), lambda ds: ds.add_new(0x00110010, "LO", "SOME VENDOR"))
    report = case.check()
    assert_caught(report)
    assert found(report, Check.CONFORMANCE, Category.PRIVATE_CREATOR, "(0011,0010)")


@pytest.mark.parametrize("phi", [True, False], ids=["name", "other-text"])
def test_preamble_holding_text(basic: Case, tmp_path: Path, phi: bool) -> None:
    case = basic.clone(tmp_path)
    target = case.output_of("CT")
    text = f"{case.patient.surname} {case.patient.patient_id}" if phi else "TIFF II* a dual file"
    data = bytearray(target.read_bytes())
    data[: len(text)] = text.encode()
    target.write_bytes(bytes(data))
    report = case.check()
    assert_caught(report)
    assert found(report, Check.CONFORMANCE, Category.PREAMBLE, "preamble")
    assert bool(found(report, Check.LEAK, Category.NAME, "preamble")) is phi
    assert bool(found(report, Check.LEAK, Category.ID, "preamble")) is phi


def test_unparsable_file_is_a_finding(basic: Case, tmp_path: Path) -> None:
    case = basic.clone(tmp_path)
    (case.output / "notes.txt").write_text(f"called {case.patient.surname}")
    report = case.check()
    assert_caught(report)
    notes = {(f.check, f.category) for f in report.findings if f.file == "notes.txt"}
    assert notes == {
        (Check.VALIDITY, Category.NO_PREFIX),
        (Check.VALIDITY, Category.UNREADABLE),
        (Check.LEAK, Category.NAME),
    }


def test_uid_map_inconsistencies(basic: Case, tmp_path: Path) -> None:
    case = basic.clone(tmp_path)
    maps = tmp_path / "maps"
    shutil.copytree(case.maps, maps)
    with (maps / "uids.csv").open(encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    rows.append([rows[1][0], "2.25.5"])  # a second new UID for one original
    with (maps / "uids.csv").open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows)
    report = case.check(map_dir=maps)
    assert_caught(report)
    assert [f.file for f in found_findings(report, Category.UID_MAP)] == ["uids.csv"]

    # One file whose Study Instance UID differs from the others' for the same original.
    edit(case.output_of("CT"), lambda ds: setattr(ds, "StudyInstanceUID", "2.25.4242"))
    report = case.check()
    messages = found(report, Check.REFERENCE, Category.UID_MAP, "StudyInstanceUID")
    assert any("became different UIDs" in m for m in messages)
    assert any("differs from the one uids.csv gives" in m for m in messages)


def found_findings(report: VerifyReport, category: Category) -> list[Finding]:
    return [f for f in report.findings if f.category is category]


@pytest.mark.skipif(not HAS_DCIODVFY, reason="dciodvfy (dicom3tools) is not installed")
def test_new_iod_error_is_caught_and_inherited_one_is_not(basic: Case, tmp_path: Path) -> None:
    case = basic.clone(tmp_path)
    edit(case.output_of("CT"), lambda ds: delattr(ds, "Modality"))
    report = case.check()
    assert_caught(report)
    assert found(report, Check.VALIDITY, Category.IOD_ERROR, "Modality")
    assert not found(case.check(iod="off"), Check.VALIDITY, Category.IOD_ERROR)

    # The same error already in the input is not the de-identifier's doing.
    ds = synthetic.ct_series(case.patient, seed=5, n_slices=1, rows=16, columns=16)[0]
    del ds.Modality
    synthetic.write_series([ds], tmp_path / "in2")
    out, maps = tmp_path / "out2", tmp_path / "maps2"
    config = RunConfig(profile=BASIC, key=KEY, output=out, workers=1, map_dir=maps)
    assert run([tmp_path / "in2"], config).ok
    inherited = verify(out, against=tmp_path / "in2", profile=BASIC, map_dir=maps)
    assert not found(inherited, Check.VALIDITY, Category.IOD_ERROR), inherited.findings
    alone = verify(out, profile=BASIC)
    assert found(alone, Check.VALIDITY, Category.IOD_ERROR, "Modality")


@pytest.mark.skipif(not HAS_DCIODVFY, reason="dciodvfy (dicom3tools) is not installed")
def test_inputs_errors_are_not_findings_without_a_map(tmp_path: Path) -> None:
    """Real CT and MR files that already lack a required attribute, given as two inputs:
    without --map-dir each output is matched to its input by its pixel data, so the errors
    the inputs had are not reported (issue 13: 2,800 findings on 200 incomplete CTs)."""
    from pydicom.data import get_testdata_file

    for folder, name, missing in (
        ("ct", "CT_small.dcm", "KVP"),
        ("mr", "MR_small.dcm", "ScanningSequence"),
    ):
        ds = dcmread(str(get_testdata_file(name)))
        delattr(ds, missing)
        (tmp_path / folder).mkdir()
        ds.save_as(tmp_path / folder / name, enforce_file_format=True)
    key = tmp_path / "k.key"
    assert RUNNER.invoke(app, ["keygen", str(key)]).exit_code == 0
    inputs, out = [tmp_path / "ct", tmp_path / "mr"], tmp_path / "out"
    done = RUNNER.invoke(app, ["run", *map(str, inputs), str(out), "--key", str(key)])
    assert done.exit_code == 0, done.output
    against = [arg for folder in inputs for arg in ("--against", str(folder))]

    result = RUNNER.invoke(app, ["verify", str(out), *against, "--json", str(tmp_path / "v.json")])

    report = json.loads((tmp_path / "v.json").read_text(encoding="utf-8"))
    assert result.exit_code == 0, result.output
    assert report["result"] == "pass" and report["findings"] == []
    assert any(
        "2 of 2 file(s) were matched to their input by their pixel data" in n
        for n in report["notes"]
    )
    # no "others" when every file was matched (found by an independent black-box test)
    assert not any("the others cannot be" in n for n in report["notes"])
    alone = RUNNER.invoke(app, ["verify", str(out), "--against", str(inputs[0])])
    assert alone.exit_code == 1  # the MR's missing attribute, with no input to blame
    assert "ScanningSequence" in alone.stdout and "KVP" not in alone.stdout


def test_engine_bug_is_caught_by_an_independent_profile(tmp_path: Path) -> None:
    """A profile that keeps the name 'de-identifies' it; verified as ps3.15-basic it fails."""
    broken = write_profile(
        tmp_path,
        'extends = "ps3.15-basic"\n'
        '[[rules]]\nkeyword = "PatientName"\naction = "K"\n'
        '[[rules]]\nprivate = { creator = "ACME PRIVATE", group = "0009", element = "xx01" }\n'
        'action = "K"\n',
        "broken.toml",
    )
    case = _make_case(tmp_path / "run", Profile.from_file(broken))
    assert case.check().result is Verdict.PASS, "by its own profile the output conforms"
    report = case.check(profile=BASIC)
    assert_caught(report)
    assert found(report, Check.CONFORMANCE, Category.ORIGINAL_KEPT, "PatientName")
    assert found(report, Check.LEAK, Category.NAME, "PatientName")
    # the private element the rule keeps holds the patient's name: the engine removes it
    # all the same (a kept private value holding the patient's name, ID or birth date)
    assert not found(report, Check.CONFORMANCE, Category.PRIVATE_ELEMENT)


def test_risk_flags_are_reported_where_the_profile_allows_them(basic: Case, tmp_path: Path) -> None:
    allowing = write_profile(
        tmp_path,
        'extends = "ps3.15-basic"\n'
        'options = ["clean-graphics"]\n'
        'allow = ["burned-in-annotation"]\n'
        '[[rules]]\nkeyword = "SeriesDescription"\naction = "K"\n',
        "allowing.toml",
    )
    profile = Profile.from_file(allowing)
    patient = synthetic.fake_patient(3)
    originals = [
        synthetic.us_burned_in(patient, seed=3),
        *synthetic.mr_series(patient, seed=3, n_slices=1, rows=16, columns=16),
    ]
    synthetic.write_series(originals, tmp_path / "in")
    maps = tmp_path / "maps"
    config = RunConfig(profile=profile, key=KEY, output=tmp_path / "out", workers=1, map_dir=maps)
    assert len(run([tmp_path / "in"], config).written) == 2
    mr = next(p for p in (tmp_path / "out").rglob("*.dcm") if dcmread(p).Modality == "MR")

    def overlay(ds: Dataset) -> None:  # a whole overlay plane (clean-graphics lets it stay)
        for element, vr, value in (
            (0x0010, "US", 16), (0x0011, "US", 16), (0x0040, "CS", "G"), (0x0050, "SS", [1, 1]),
            (0x0100, "US", 1), (0x0102, "US", 0), (0x3000, "OW", b"\x00" * 32),
        ):  # fmt: skip
            ds.add_new(0x60000000 | element, vr, value)

    edit(mr, overlay)
    report = verify(tmp_path / "out", against=tmp_path / "in", profile=profile, map_dir=maps)
    assert report.result is Verdict.PASS, [f.to_dict() for f in report.findings]
    flags = {(r.flag, r.path) for r in report.risk_flags}
    assert (RiskKind.BURNED_IN_ANNOTATION, "BurnedInAnnotation") in flags
    assert (RiskKind.FREE_TEXT, "SeriesDescription") in flags
    assert (RiskKind.OVERLAY, "OverlayData") in flags
    strict = verify(tmp_path / "out", against=tmp_path / "in", profile=BASIC, map_dir=maps)
    assert found(strict, Check.CONFORMANCE, Category.REMOVED_PRESENT, "SeriesDescription")
    assert found(strict, Check.CONFORMANCE, Category.REMOVED_PRESENT, "OverlayData")


def test_deflated_output_is_searched_inflated(tmp_path: Path) -> None:
    """A deflated dataset hides its text from a plain byte search: verify inflates it."""
    patient = synthetic.fake_patient(6)
    ds = synthetic.ct_series(patient, seed=6, n_slices=1, rows=16, columns=16)[0]
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    synthetic.write_series([ds], tmp_path / "in")
    out, maps = tmp_path / "out", tmp_path / "maps"
    summary = run([tmp_path / "in"], RunConfig(BASIC, KEY, out, workers=1, map_dir=maps))
    target = summary.written[0].output
    assert target is not None
    assert verify(out, against=tmp_path / "in", profile=BASIC, map_dir=maps).result is Verdict.PASS

    def add_private(ds: Dataset) -> None:
        ds.private_block(0x0009, "ACME PRIVATE", create=True).add_new(0x01, "LO", patient.name)

    edit(target, add_private)
    assert patient.surname.encode() not in target.read_bytes(), "compressed"
    report = verify(out, against=tmp_path / "in", profile=BASIC, map_dir=maps)
    assert found(report, Check.LEAK, Category.NAME, '(0009,"ACME PRIVATE",xx01)')


def test_dicomdir_and_zip_input(tmp_path: Path) -> None:
    """A fresh DICOMDIR (placeholders where records need keys) and inputs in a zip archive."""
    patient = synthetic.fake_patient(4)
    originals = synthetic.ct_series(patient, seed=4, n_slices=2, rows=16, columns=16)
    paths = synthetic.write_series(originals, tmp_path / "in")
    archive = tmp_path / "in.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in paths:
            zf.write(path, f"{patient.surname}/{path.name}")
    key = tmp_path / "project.key"
    assert cli("keygen", key)[0] == 0
    out, maps = tmp_path / "out", tmp_path / "maps"
    code, output = cli("run", archive, out, "--key", key, "--map-dir", maps, "--dicomdir")
    assert code == 0, output
    assert (out / "DICOMDIR").is_file()
    code, output = cli("verify", out, "--against", archive, "--map-dir", maps)
    assert code == 0, output


# --------------------------------------------------------------------------------------------
# Verify's own reader and search, against pydicom's reader and the one regex they replace

REAL_FILES = real_files()
_Row = tuple[object, ...]


def _rows(data: _Data) -> list[_Row]:
    """Every element at every depth as the checks see it: where it is, what it is, its
    values, and (read raw) its bytes and their span."""
    rows: list[_Row] = []

    def walk(
        ds: _Data, inherited: tuple[str, ...], base: int, key: tuple[int, ...], prefix: str
    ) -> None:
        encodings, unknown = _encodings(ds, inherited)
        for node in _nodes(ds, base, key, prefix, encodings, len(key) // 2):
            raw = isinstance(node.element, RawDataElement) and node.vr != "SQ"
            rows.append((
                node.key, node.vr, node.keyword, node.creator, node.path, encodings,
                tuple(unknown), _values(node),
                (node.raw, node.start, node.length) if raw else None,
            ))  # fmt: skip
            if node.vr == "SQ":
                rows.append((node.key, "items", len(list(_items(ds, node)))))
                for item, item_base, item_key, item_prefix in _items(ds, node):
                    walk(item, encodings, item_base, item_key, item_prefix)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        walk(data, ("ascii",), 0, (), "")
    return rows


def _same_reading(mine: _Read, data: bytes, *, stop_before_pixels: bool) -> None:
    """pydicom reads ``data`` too, and the checks see the same elements in both readings
    (what pydicom converted while reading it has no raw bytes to compare)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dcmread(io.BytesIO(data), stop_before_pixels=stop_before_pixels)
    for ours, theirs in ((mine.meta, _Data.of(ds.file_meta)), (mine.data, _Data.of(ds))):
        rows, expected = _rows(ours), _rows(theirs)
        assert len(rows) == len(expected)
        for row, want in zip(rows, expected, strict=True):
            unraw = want[-1] is None and row[1] != "items"
            assert ((*row[:-1], None) if unraw else row) == want


def _found(read: _Read, rules: _Rules) -> list[tuple[tuple[int, ...], object]]:
    found: list[tuple[tuple[int, ...], object]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for data in (read.meta, read.data):
            _walk_values(data, rules, found, ("ascii",))  # type: ignore[arg-type]
    return found


def _check_reading(data: bytes) -> bool:
    """verify's reader declines ``data`` or reads it as pydicom does, whole and up to the
    pixel data; True when it read it. Read for the input walk (what it passes over left
    out), the walk finds the same in both readings."""
    whole = _parse(data)
    header = _parse(data, stop_before_pixels=True)
    for mine, stop in ((whole, False), (header, True)):
        if mine is not None:
            _same_reading(mine, data, stop_before_pixels=stop)
    rules = _Rules.of(BASIC)
    lean = _parse(data, stop_before_pixels=True, skip=rules.skip)
    assert (lean is None) == (header is None)
    walked: list[tuple[tuple[int, ...], object]] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sop: str | None
            sop, patient = _InputWalk(data, True, rules).facts(walked)  # type: ignore[arg-type]
    except Exception:
        sop = patient = None
    if sop is not None:
        assert lean is not None, "the one-pass walk reads only what the reader reads"
    if lean is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = dcmread(io.BytesIO(data), stop_before_pixels=True)
        theirs = _Read(_Data.of(ds.file_meta), _Data.of(ds), ds)
        expected = _found(theirs, _Rules.of(BASIC))
        assert _found(lean, rules) == expected
        if sop is not None:
            assert walked == expected
            assert sop == _text(theirs.data, 0x00080018)
            assert patient == (_text(theirs.data, 0x00100020) or _text(theirs.data, 0x00100010))
    return whole is not None


@pytest.mark.parametrize("case", REAL_FILES, ids=[c.name for c in REAL_FILES])
def test_reader_agrees_with_pydicom(case: CorpusFile) -> None:
    _check_reading(case.path.read_bytes())


def test_most_real_files_take_the_quick_path() -> None:
    bundled = [c.path for c in REAL_FILES if c.name.startswith("test_files/")]
    accepted = sum(_check_reading(path.read_bytes()) for path in bundled)
    assert accepted >= len(bundled) // 3, (accepted, len(bundled))
    rules = _Rules.of(BASIC)
    walked = 0
    for path in bundled:
        with contextlib.suppress(Exception), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            walked += _InputWalk(path.read_bytes(), True, rules).facts([]) is not None
    assert walked >= accepted * 3 // 4, (walked, accepted)


def test_damaged_copies_are_never_read_differently(basic: Case) -> None:
    """Cut or change a real output at many places: the reader declines, or pydicom reads it
    too and the checks see the same elements."""
    data = basic.output_of("CT").read_bytes()
    assert _check_reading(data)
    changed = 0
    for at in range(132, len(data), max(1, len(data) // 97)):
        for damaged in (data[:at], data[:at] + bytes([data[at] ^ 0x5A]) + data[at + 1 :]):
            try:
                changed += _check_reading(damaged) and damaged != data
            except Exception as exc:  # pydicom refuses what the reader accepted
                pytest.fail(f"offset {at}: read a file pydicom refuses ({exc!r})")
    assert changed, "some damage leaves a readable file"


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Case]:
    """Images whose pixel data go on past the first read of a file."""
    with scratch(tmp_path_factory, "large") as root:
        yield _make_case(root, BASIC, seed=8, rows=192, slices=(1, 1))


def test_large_output_is_read_but_for_its_pixels(large: Case) -> None:
    for path in large.outputs():
        data = path.read_bytes()
        loaded = _load_output(path)
        assert loaded.read is not None and loaded.image.hole is not None
        start, end = loaded.image.hole
        assert end - start >= 192 * 192 * 2 and loaded.image.size == len(data)
        whole = _parse(data)
        assert whole is not None
        rows = _rows(loaded.read.data)
        expected = _rows(whole.data)
        pixels = [i for i, row in enumerate(expected) if row[0] == (0x7FE00010,)]
        assert len(pixels) == 1 and rows[pixels[0]][-1] == (None, start, end - start)
        del rows[pixels[0]], expected[pixels[0]]
        assert rows == expected
        searched = [(0, data[:start]), (end, data[end:])]
        assert [(r[0], r[1]) for r in _regions(0, data, whole.data)] == [
            (offset, part.lower()) for offset, part in searched
        ]
    assert large.check().result is Verdict.PASS


def test_leak_after_the_pixel_data_is_caught(large: Case, tmp_path: Path) -> None:
    case = large.clone(tmp_path)
    target = case.output_of("CT")

    def trailing(ds: Dataset) -> None:
        ds.private_block(0x7FE1, "ACME PRIVATE", create=True).add_new(0x01, "LO", case.patient.name)

    edit(target, trailing)
    loaded = _load_output(target)
    assert loaded.image.hole is not None and loaded.image.tail
    report = case.check()
    path = '(7FE1,"ACME PRIVATE",xx01)'
    assert found(report, Check.CONFORMANCE, Category.PRIVATE_ELEMENT, path)
    assert found(report, Check.LEAK, Category.NAME, path)


def test_odd_length_pixel_data_is_invalid(large: Case, tmp_path: Path) -> None:
    """The pixel data's value is not read, but its length is still checked."""
    case = large.clone(tmp_path)
    target = case.output_of("CT")
    data = bytearray(target.read_bytes())
    header = data.rindex(b"\xe0\x7f\x10\x00OW\x00\x00")
    length = int.from_bytes(data[header + 8 : header + 12], "little")
    assert header + 12 + length == len(data), "the pixel data ends the file"
    data[header + 8 : header + 12] = (length - 1).to_bytes(4, "little")
    target.write_bytes(bytes(data[:-1]))
    assert _load_output(target).image.hole is not None
    report = case.check()
    assert found(report, Check.VALIDITY, Category.INVALID_VALUE, "PixelData")


def test_structure_signature_does_not_depend_on_what_is_passed_over(basic: Case) -> None:
    """Kept values known valid are passed over without a node; the structure they give the
    dciodvfy signature is the same as with one."""
    ctx = _Context(
        root=basic.output, rules=_Rules.of(BASIC), needles=_build_needles({}, ()),
        original_uids=frozenset(), map_new_to_old={}, inputs_by_sop={}, replaced={},
        against=False, has_map=False, show_values=False, dciodvfy="dciodvfy",
        iod=IodCheck.STRUCTURE,
    )  # fmt: skip

    def signature(path: Path) -> bytes:
        read = _load_output(path).read
        assert read is not None
        check = _FileCheck(ctx, path)
        check._walk(read.meta, ("ascii",), 0, (), "", 0, False)
        check._walk(read.data, ("ascii",), 0, (), "", 0, False)
        return check.signature.digest()

    for path in basic.outputs():
        _VALID.clear()
        every_node = signature(path)
        assert _VALID, "values found valid"
        assert signature(path) == every_node


def _one_regex(raw: dict[str, Category]) -> Callable[[bytes], list[tuple[int, bytes]]]:
    """The search as it was: names, IDs and dates as written in one trie regex."""
    kinds: dict[bytes, _Kind] = {}
    sets: dict[_Kind, set[bytes]] = {_Kind.UID: set(), _Kind.DATE: set(), _Kind.DIGITS: set()}
    for text, category in raw.items():
        kind = _kind(text, category)
        for encoding in ("utf-8", "latin-1"):
            with contextlib.suppress(UnicodeEncodeError):
                needle = text.encode(encoding).lower()
                if kind in (_Kind.UID, _Kind.DIGITS) or (
                    kind is _Kind.DATE and len(needle) == 8 and needle.isdigit()
                ):
                    sets[kind].add(needle)
                else:
                    kinds.setdefault(needle, kind)
    groups = (
        ([n for n in kinds if n[:1].isdigit()], rb"(?<![0-9.].)"),
        ([n for n in kinds if not n[:1].isdigit() and kinds[n] is _Kind.WORD], rb"(?<![a-z].)"),
        ([n for n in kinds if not n[:1].isdigit() and kinds[n] is not _Kind.WORD], b""),
    )
    parts = [_trie(group, kinds, guard) for group, guard in groups if group]
    pattern = re.compile(b"|".join(parts), re.DOTALL) if parts else None
    uids, dates, numbers = sets[_Kind.UID], sets[_Kind.DATE], sets[_Kind.DIGITS]

    def find(lowered: bytes) -> list[tuple[int, bytes]]:
        hits = [(m.start(), m.group(0)) for m in pattern.finditer(lowered)] if pattern else []
        for match in re.finditer(rb"(?<![0-9.])[0-9]+(?:\.[0-9]+)+", lowered):
            token = match.group(0)
            ends = [len(token)] + [i for i, byte in enumerate(token) if byte == ord(".")]
            prefix = next((token[:end] for end in ends if token[:end] in uids), None)
            if prefix is not None:
                hits.append((match.start(), prefix))
        for match in re.finditer(rb"(?<![0-9.])[0-9]{6,}", lowered):
            run = match.group(0)
            if run[:8] in dates:
                hits.append((match.start(), run[:8]))
            elif run in numbers:
                hits.append((match.start(), run))
        return sorted(hits)

    return find


def test_needle_search_finds_what_one_regex_found() -> None:
    """Anchored needles (whole runs, starts and ends of runs) and the rest, at every offset,
    leftmost first and without overlaps, as one regex of them all would."""
    rng = random.Random(11)
    words = ["smith", "smithson", "jo", "john", "ann", "anna", "o'brien", "müller", "zoë"]
    numbers = ["12", "1234", "123456", "20240115", "555", "0917", "1.2.840", "2.25.99"]
    for trial in range(150):
        raw: dict[str, Category] = {}
        for _ in range(rng.randint(3, 25)):
            category = rng.choice(list(_WHAT))
            parts = [rng.choice(words + numbers) for _ in range(rng.randint(1, 3))]
            text = rng.choice(["", "+", "("]) + rng.choice([" ", "^", "-", "", "."]).join(parts)
            if len(text.strip()) >= 2:
                raw[text.upper() if rng.random() < 0.5 else text] = category
        reference = _one_regex(raw)
        needles = _build_needles(raw, ())
        pieces = [t.encode(rng.choice(["utf-8", "latin-1"]), "replace").lower() for t in raw]
        for _ in range(10):
            hay = b"".join(
                rng.choice(pieces) if rng.random() < 0.4 else bytes([rng.choice(b"ab1. -^x9/")])
                for _ in range(rng.randint(0, 30))
            )
            assert needles.find(hay) == reference(hay), (trial, raw, hay)


def test_a_grown_search_finds_what_a_whole_one_finds() -> None:
    """The release gate grows a patient's search as it learns (:func:`_grown`), and adds each
    file's UIDs, numbers and dates (:func:`_extend_needles`): the hits are those of the
    search built at once from all the needles."""
    rng = random.Random(12)
    words = ["smith", "smithson", "jo", "john", "ann", "anna", "o'brien", "müller", "zoë"]
    numbers = ["12", "1234", "123456", "20240115", "555", "0917", "1.2.840", "2.25.99"]
    for trial in range(100):
        raw: dict[str, Category] = {}
        for _ in range(rng.randint(3, 30)):
            category = rng.choice([*_WHAT, Category.UID])
            parts = [rng.choice(words + numbers) for _ in range(rng.randint(1, 3))]
            text = rng.choice(["", "+", "("]) + rng.choice([" ", "^", "-", "", "."]).join(parts)
            if len(text.strip()) >= 2:
                raw[text.upper() if rng.random() < 0.5 else text] = category
        kept = frozenset(rng.sample(sorted(raw), k=min(2, len(raw))))
        items = list(raw.items())
        cut = rng.randint(0, len(items))
        grown = _grown(_build_needles(dict(items[:cut]), kept), items[cut:], kept)
        own = {t: c for t, c in items[cut:] if c is Category.UID}
        extended = _extend_needles(grown, own, kept)
        assert extended is not None
        whole = _build_needles(raw, kept)
        pieces = [t.encode(rng.choice(["utf-8", "latin-1"]), "replace").lower() for t in raw]
        for _ in range(10):
            hay = b"".join(
                rng.choice(pieces) if rng.random() < 0.4 else bytes([rng.choice(b"ab1. -^x9/")])
                for _ in range(rng.randint(0, 30))
            )
            assert extended.find(hay) == whole.find(hay), (trial, raw, cut, hay)


# --------------------------------------------------------------------------------------------
# No values unless asked; the report


def _faulty(case: Case) -> Case:
    def add_private(ds: Dataset) -> None:
        block = ds.private_block(0x0009, "ACME PRIVATE", create=True)
        block.add_new(0x01, "LO", case.patient.name)
        ds.PatientAddress = case.patient.address
        ds.OtherPatientIDsSequence = Sequence([Dataset()])
        ds.OtherPatientIDsSequence[0].PatientID = case.patient.other_ids[0]
        ds.ContentDate = "2024-01-1X"

    edit(case.output_of("CT"), add_private)
    patient_folder = next(p for p in case.output.iterdir() if not p.name.startswith("."))
    patient_folder.rename(case.output / case.patient.surname)
    return case


def test_findings_hold_no_values_unless_asked(basic: Case, tmp_path: Path) -> None:
    case = _faulty(basic.clone(tmp_path))
    phi = phi_strings(case)
    report = case.check()
    assert_caught(report)
    assert_no_phi(report.to_json(), phi)
    shown = case.check(show_values=True).to_json()
    for value in (case.patient.name, case.patient.surname, case.patient.other_ids[0]):
        assert value in shown


def test_report_json_shape(basic: Case, tmp_path: Path) -> None:
    case = _faulty(basic.clone(tmp_path))
    data = json.loads(case.check().to_json())
    assert data["result"] == "findings" and data["files"] == len(case.originals)
    assert set(data) >= {"result", "files", "findings", "risk_flags"}
    assert data["findings"] and all(
        set(f) == {"file", "path", "category", "check", "message"} for f in data["findings"]
    )
    assert {f["check"] for f in data["findings"]} == {"conformance", "leak", "validity"}


def test_could_not_check(basic: Case, tmp_path: Path) -> None:
    missing = verify(tmp_path / "nothing", profile=BASIC)
    assert missing.result is Verdict.COULD_NOT_CHECK and missing.exit_code == 2
    (tmp_path / "empty").mkdir()
    assert verify(tmp_path / "empty", profile=BASIC).result is Verdict.COULD_NOT_CHECK
    no_map = basic.check(map_dir=tmp_path / "empty")
    assert no_map.result is Verdict.COULD_NOT_CHECK and "uids.csv" in no_map.problems[0]


# --------------------------------------------------------------------------------------------
# The command


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    for console in (dv_cli.out, dv_cli.err):
        monkeypatch.setattr(console, "_width", None)
    monkeypatch.setenv("COLUMNS", "10000")


def cli(*args: str | Path) -> tuple[int, str]:
    result = RUNNER.invoke(app, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def test_cli_pass(basic: Case, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    code, output = cli(
        "verify", basic.output, "--against", basic.input, "--map-dir", basic.maps, "--json", report
    )
    assert code == 0, output
    assert "verify: pass" in output
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["result"] == "pass" and data["findings"] == [] and data["files"] == 5


def test_cli_findings(basic: Case, tmp_path: Path) -> None:
    case = _faulty(basic.clone(tmp_path))
    report = tmp_path / "report.json"
    args = ("verify", case.output, "--against", case.input, "--map-dir", case.maps)
    code, output = cli(*args, "--json", report)
    assert code == 1
    assert "private-element" in output and '(0009,"ACME PRIVATE",xx01)' in output
    assert json.loads(report.read_text(encoding="utf-8"))["result"] == "findings"
    phi = phi_strings(case)
    assert_no_phi(output, phi)
    assert_no_phi(report.read_text(encoding="utf-8"), phi)
    code, shown = cli(*args, "--show-values", "--json", report)
    assert code == 1
    assert case.patient.surname in shown
    assert case.patient.name in report.read_text(encoding="utf-8")


def test_cli_could_not_check(basic: Case, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    code, output = cli("verify", tmp_path / "missing", "--json", report)
    assert code == 2 and "does not exist" in output
    assert json.loads(report.read_text(encoding="utf-8"))["result"] == "could-not-check"
    code, output = cli("verify", basic.output, "--profile", "no-such-profile", "--json", report)
    assert code == 2 and "unknown profile" in output
    assert json.loads(report.read_text(encoding="utf-8"))["result"] == "could-not-check"
    code, _ = cli("verify", basic.output, "--map-dir", tmp_path)
    assert code == 2


def test_cli_options_change_the_profile(retaining: Case) -> None:
    args = ("verify", retaining.output, "--against", retaining.input)
    code, output = cli(*args)
    assert code == 1, "the retained UIDs and dates are findings for ps3.15-basic"
    options = ("-o", "retain-long-modified-dates", "-o", "retain-safe-private")
    code, output = cli(*args, *options, "-o", "retain-uids")
    assert code == 0, output


def test_a_pixel_digest_is_hashed_as_the_file_is_read_never_held(tmp_path: Path) -> None:
    """Without a map, verify matches outputs to inputs by the digest of their pixel data:
    a large value is hashed as it is read from the file (the same digest as of the whole
    value), from a file or a zip member, and never held whole (a 157 MB file took 376 MB
    of RAM under ``verify --against``)."""
    ds = dcmread(str(get_testdata_file("CT_small.dcm")))
    ds.Rows = ds.Columns = 2048
    ds.PixelData = random.Random(7).randbytes(2048 * 2048 * 2)  # 8 MB
    path = tmp_path / "large.dcm"
    ds.save_as(path, enforce_file_format=True)
    expected = hashlib.sha256(ds.PixelData).hexdigest()
    tracemalloc.start()
    try:
        digest = _pixel_digest(str(path))
        _size, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest == expected
    assert peak < 4_000_000, f"{peak} bytes allocated at most: the value was held"
    archive = tmp_path / "inputs.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(path, "large.dcm")
    assert _pixel_digest(f"{archive}!large.dcm") == expected
