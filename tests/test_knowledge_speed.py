"""What the free-text options' speed work (issue 15) must not change: second-pass chunks
keep a patient's consecutive files together, and the first pass still finds a name inside
a sequence, whether the sequence is read from explicit- or implicit-VR bytes."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from dicomveil import Engine, Key, Profile, Pseudonymizer
from dicomveil.cleaners.text import Identifiers
from dicomveil.io import read_scanned
from dicomveil.runs.batch import Task
from dicomveil.runs.knowledge import patient_chunks
from tests.realdata import real_files


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


def test_the_first_pass_reads_the_same_values_from_fewer_elements() -> None:
    """The first pass scans only the elements ``Engine.patient_elements`` keeps: on every
    real file the test data holds, the patient key and the values found are those of the
    whole file, and the quick scan still reads every file it read before."""
    engine = Engine(Profile.named("ps3.15-basic").compile(), Pseudonymizer(Key.generate()))
    checked = 0
    with warnings.catch_warnings():  # as the first pass reads (real values break VR rules)
        warnings.simplefilter("ignore")
        for real in real_files():
            if real.path.suffix.lower() == ".zip":
                continue
            whole = read_scanned(real.path)
            if whole is None:
                continue
            few = read_scanned(real.path, keep=engine.patient_elements)
            assert few is not None, real.name
            assert len(few.dataset) <= len(whole.dataset)
            assert engine.patient_values(few.dataset) == engine.patient_values(whole.dataset), (
                real.name
            )
            checked += 1
    assert checked >= 100  # the real data is there (tests/realdata.py)
