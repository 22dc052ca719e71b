"""Many tiny valid DICOM files, made fast and deterministically (issue 22: a million files).

One template (a CT slice of 8 x 8 pixels with a patient, a study, a series and an instance,
made by pydicom) is written once; each file is the template's bytes with its fixed-width
numbers replaced: file ``i`` belongs to patient ``i // per_patient`` (one study of one series
each) and has its own SOP Instance UID. Every number has eight digits, so no UID component
starts with a zero and every file has the template's length. Files go to
``root/dNNNN/fNNN.dcm``, a thousand to a folder.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid

ROOT = "1.2.826.0.1.3680043.10.543"  # a documentation root: these UIDs name nothing real
PATIENT, INSTANCE = b"70000000", b"80000000"  # placeholders in the template
FIRST = 10_000_000  # the numbers written in place of the placeholders start here
PER_FOLDER = 1000


def patient_name(patient: int) -> str:
    """The Patient's Name of patient ``patient`` (for leak checks)."""
    return f"TINY^P{FIRST + patient}"


def patient_id(patient: int) -> str:
    """The Patient ID of patient ``patient``."""
    return f"MRN{FIRST + patient}"


def template() -> bytes:
    """The template file's bytes, with the placeholders."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = UID(
        f"{ROOT}.3.{PATIENT.decode()}.{INSTANCE.decode()}"
    )
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = generate_uid(prefix=None, entropy_srcs=["tiny"])
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = f"{ROOT}.1.{PATIENT.decode()}"
    ds.SeriesInstanceUID = f"{ROOT}.2.{PATIENT.decode()}"
    ds.FrameOfReferenceUID = f"{ROOT}.4.{PATIENT.decode()}"
    ds.PatientName = f"TINY^P{PATIENT.decode()}"
    ds.PatientID = f"MRN{PATIENT.decode()}"
    ds.PatientBirthDate = "19600101"
    ds.PatientSex = "O"
    ds.AccessionNumber = f"A{PATIENT.decode()}"
    ds.StudyDate, ds.StudyTime, ds.StudyID = "20240102", "101500", "1"
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    ds.Modality, ds.Manufacturer = "CT", "ACME"
    ds.PatientPosition, ds.BodyPartExamined = "HFS", "HEAD"
    ds.PositionReferenceIndicator, ds.KVP, ds.AcquisitionNumber = "", "", ""
    ds.InstitutionName = "Tiny General Hospital"
    ds.ReferringPhysicianName = "DOC^TINY"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImagePositionPatient = [0, 0, 0]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [1, 1]
    ds.SliceThickness = 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope = 0, 1
    ds.PixelData = bytes(range(128))
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def relative_path(i: int) -> str:
    """File ``i``'s path below the corpus folder."""
    return f"d{i // PER_FOLDER:04d}/f{i % PER_FOLDER:03d}.dcm"


def file_bytes(base: bytes, i: int, per_patient: int) -> bytes:
    """File ``i``'s bytes, from the template's."""
    patient = str(FIRST + i // per_patient).encode()
    instance = str(FIRST + i).encode()
    return base.replace(INSTANCE, instance).replace(PATIENT, patient)


def write_corpus(root: Path, n: int, *, per_patient: int = 100) -> Iterator[int]:
    """Write files ``0 .. n-1`` below ``root``; yields the count written every 10,000 files."""
    base = template()
    assert base.count(INSTANCE) == 2 and PATIENT in base
    for i in range(n):
        if i % PER_FOLDER == 0:
            (root / f"d{i // PER_FOLDER:04d}").mkdir(parents=True, exist_ok=True)
        (root / relative_path(i)).write_bytes(file_bytes(base, i, per_patient))
        if (i + 1) % 10_000 == 0:
            yield i + 1
