"""What the free-text options' speed work (issue 15) must not change: second-pass chunks
keep a patient's consecutive files together, the first pass still finds a name inside a
sequence, whether the sequence is read from explicit- or implicit-VR bytes, and every name
pydicom reads; texts and sequences an engine cleans once per patient come out as each
file's own run writes them."""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from dicomveil import Engine, Key, Profile, Pseudonymizer, RunConfig, run
from dicomveil.cleaners.text import Identifiers
from dicomveil.engine.memo import Remembered
from dicomveil.io import SourceFile, read_scanned
from dicomveil.runs.batch import Task
from dicomveil.runs.knowledge import patient_chunks
from tests.realdata import RealFile, real_files

TODAY = dt.date(2026, 12, 6)


def test_chunks_do_not_split_a_patient() -> None:
    tasks = [Task(Path(f"f{i}")) for i in range(12)]
    keys: list[str | None] = ["a"] * 5 + ["b"] * 4 + [None] + ["c"] * 2
    chunks = patient_chunks(tasks, keys, 3)
    assert [len(c) for c in chunks] == [5, 4, 3]  # a; b; the unreadable one with c
    assert [t for c in chunks for t in c] == tasks
    big = patient_chunks(tasks, ["a"] * 12, 1)  # a patient of more than 8 x size files
    assert [len(c) for c in big] == [8, 4]


def _file(path: Path, syntax: UID, referenced: Dataset) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.7")
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID = "KNOWN-1"
    ds.ReferencedImageSequence = Sequence([referenced])
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_a_name_inside_a_sequence_is_collected(tmp_path: Path, syntax: UID) -> None:
    with_name = Dataset()
    with_name.ReferencedSOPInstanceUID = generate_uid()
    with_name.PerformingPhysicianName = "QUORVEL^ANSA"
    uids_only = Dataset()
    uids_only.ReferencedSOPInstanceUID = generate_uid()
    for referenced, names in ((with_name, {"QUORVEL^ANSA"}), (uids_only, set())):
        path = _file(tmp_path / f"{len(names)}.dcm", syntax, referenced)
        source = read_scanned(path)  # the first pass's reader: sequences left raw
        ds = source.dataset if source is not None else dcmread(path)
        assert set(Identifiers.from_dataset(ds).names) == names


def _scanned_real_files() -> Iterator[tuple[RealFile, SourceFile]]:
    """Every real file (not the zips) the quick scan reads whole, read as the first pass
    reads (warnings off: real values break VR rules)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for real in real_files():
            if real.path.suffix.lower() == ".zip":
                continue
            whole = read_scanned(real.path)
            if whole is not None:
                yield real, whole


def test_the_first_pass_reads_the_same_values_from_fewer_elements() -> None:
    """The first pass scans only the elements ``Engine.patient_elements`` keeps: on every
    real file the test data holds, the patient key and the values found are those of the
    whole file, and the quick scan still reads every file it read before."""
    engine = Engine(Profile.named("ps3.15-basic").compile(), Pseudonymizer(Key.generate()))
    checked = 0
    for real, whole in _scanned_real_files():
        few = read_scanned(real.path, keep=engine.patient_elements)
        assert few is not None, real.name
        assert len(few.dataset) <= len(whole.dataset)
        assert engine.patient_values(few.dataset) == engine.patient_values(whole.dataset), real.name
        checked += 1
    assert checked >= 100  # the real data is there (tests/realdata.py)


def test_every_name_pydicom_reads_is_collected() -> None:
    """The values the first pass collects, against pydicom's own reading of each real file:
    every person name at any depth (decoded by pydicom in the file's character sets) is
    among the names found."""
    checked = 0
    for real, source in _scanned_real_files():
        found = Identifiers.from_dataset(source.dataset).names
        expected: set[str] = set()
        for elem in dcmread(real.path, stop_before_pixels=True).iterall():
            if elem.VR == "PN" and elem.value:
                values = elem.value if elem.VM > 1 else [elem.value]
                expected.update(str(v).strip() for v in values if str(v).strip())
        assert expected <= found, real.name
        checked += 1
    assert checked >= 100


def _patient_file(folder: Path, name: str, operator: str, index: int) -> Path:
    """pydicom's real CT_small.dcm as one more file of a patient, with a comment and a
    request item that name an operator (the same bytes in every file)."""
    real = get_testdata_file("CT_small.dcm")
    assert isinstance(real, str)
    ds = dcmread(real)
    ds.PatientName = f"{name}^TEST"
    ds.PatientID = f"ID-{name}"
    ds.OperatorsName = operator
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.PatientComments = "Xyloquent protocol v2 reviewed"
    item = Dataset()
    item.RequestedProcedureDescription = "Xyloquent protocol"
    item.StudyInstanceUID = ds.StudyInstanceUID
    ds.RequestAttributesSequence = Sequence([item])
    path = folder / f"{name}-{index}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_texts_and_sequences_cleaned_once_per_patient(tmp_path: Path) -> None:
    """An engine cleans a top-level text and walks a top-level sequence once for equal
    bytes of one patient (Walk.cleaned_key, Walk.sequence): the files of one run come out
    byte for byte as each file's own run writes it, and what one patient's values removed
    is not removed from another patient's same text."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    files = [
        _patient_file(inputs, "ALPHA", "XYLOQUENT^BRAM", 1),
        _patient_file(inputs, "ALPHA", "XYLOQUENT^BRAM", 2),
        _patient_file(inputs, "BETA", "ORDINARY^ANNA", 1),
    ]
    key = Key.generate()
    profile = Profile.named("ps3.15-basic").with_options(["clean-descriptors"])

    def config(output: Path) -> RunConfig:
        return RunConfig(profile=profile, key=key, output=output, workers=1, today=TODAY)

    together = run([inputs], config(tmp_path / "together"))
    assert len(together.written) == 3
    alone: dict[str, bytes] = {}
    for path in files:
        single = tmp_path / f"alone-{path.stem}"
        assert len(run([path], config(single)).written) == 1
        alone |= _tree(single)
    written = _tree(tmp_path / "together")
    assert written == alone
    by_patient: dict[str, list[bytes]] = {}
    for data in written.values():
        ds = dcmread(BytesIO(data))
        by_patient.setdefault(str(ds.PatientName), []).append(data)
        assert ds.RequestAttributesSequence[0].StudyInstanceUID == ds.StudyInstanceUID
    assert len(by_patient) == 2
    beta, alpha = sorted(by_patient.values(), key=len)  # ALPHA has two files, BETA one
    assert all(b"Xyloquent" not in data for data in alpha)  # ALPHA's operator: removed
    assert all(data.count(b"Xyloquent") == 2 for data in beta)  # no one BETA knows


def test_what_an_engine_remembers_is_bounded() -> None:
    """A long-lived engine (a gateway's worker) forgets its remembered answers when it holds
    too many or too many bytes, and never holds one answer larger than the bound."""
    memo: Remembered[bytes] = Remembered(entries=3, size=100)
    for index in range(3):
        memo.put(index, b"x", 10)
    assert len(memo) == 3 and memo.get(0) == b"x"
    memo.put(3, b"y", 10)  # a fourth: the first three forgotten
    assert len(memo) == 1 and memo.get(0) is None and memo.get(3) == b"y"
    memo.put(4, b"z", 95)  # 10 + 95 bytes: over the bound, the others forgotten
    assert len(memo) == 1 and memo.get(4) == b"z"
    memo.put(5, b"w", 101)  # larger than the bound: not remembered, nothing forgotten
    assert memo.get(5) is None and memo.get(4) == b"z"


def test_prepared_cleaner_cleans_as_an_unprepared_one() -> None:
    # prepare() only loads what the first clean would: the same spans and text after it
    from dicomveil.cleaners.text import TextCleaner

    known = Identifiers(names=frozenset({"KELLER^DANA"}), ids=frozenset({"PID-77120"}))
    text = "Dana Keller (PID-77120) seen with her brother Tomas at Riverside Clinic"
    before = TextCleaner().clean(text, known)
    prepared = TextCleaner()
    prepared.prepare()
    after = prepared.clean(text, known)
    assert after == before
    assert after.changed and "Keller" not in after.text and "77120" not in after.text


def test_the_first_pass_prepares_the_cleaner_once_while_its_pool_reads(tmp_path: Path) -> None:
    # with a pool, the parent runs `meanwhile` once, and learns what one process learns
    from dicomveil.runs.batch import _Worker
    from dicomveil.runs.knowledge import first_pass

    files = [f.path for f in real_files() if f.path.suffix.lower() == ".dcm"][:12]
    config = RunConfig(
        profile=Profile.named("ps3.15-basic").with_options(["clean-descriptors"]),
        key=Key.generate(),
        output=tmp_path / "out",
        today=TODAY,
    )
    worker = _Worker(config, None)
    calls: list[int] = []
    chunks = [[Task(p) for p in files[i : i + 3]] for i in range(0, len(files), 3)]
    pooled = first_pass(lambda: worker, chunks, 2, lambda: calls.append(1))
    alone = first_pass(lambda: worker, chunks, 1, lambda: calls.append(2))
    assert calls == [1]  # one process: nothing to prepare for
    assert pooled is not None and alone is not None
    assert pooled.keys == alone.keys and pooled.patients == alone.patients
    assert len(pooled.patients) >= 2
