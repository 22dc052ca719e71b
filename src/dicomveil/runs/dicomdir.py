"""A fresh DICOMDIR for a de-identified output folder (pydicom's FileSet does the work).

DICOMDIR file IDs are at most eight upper-case characters per component (PS3.10 8.2), so the
instances move into the File-set's own layout (``PT000000/ST000000/SE000000/IM000000``); the
DICOMDIR refers only to de-identified values. Input DICOMDIRs are never copied.

Where the profile emptied a value that a directory record requires (Study Date, Study ID,
...), the record (not the instance) gets a neutral dummy.
"""

from __future__ import annotations

import contextlib
import warnings
from itertools import pairwise
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.fileset import DIRECTORY_RECORDERS, FileSet, RecordNode
from pydicom.fileset import _four_level_record_type as _leaf_type

from dicomveil.errors import DicomveilError
from dicomveil.runs.batch import RunSummary


def write_dicomdir(output: Path, summary: RunSummary) -> None:
    files = [r.output for r in summary.written if r.output is not None]
    if (output / "DICOMDIR").exists():
        raise DicomveilError(f"{output} already has a DICOMDIR; write into an empty folder")
    fileset = FileSet()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for path in files:
                fileset.add_custom(path, _records(path))
            fileset.write(output)
    except (ValueError, KeyError, AttributeError) as exc:
        raise DicomveilError(f"cannot build a DICOMDIR ({exc})") from None
    finally:
        _cleanup_staging(fileset)
    for path in files:
        with contextlib.suppress(OSError):
            path.unlink()
    for folder in sorted({p.parent for p in files}, key=lambda p: len(p.parts), reverse=True):
        while folder != output and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent


# Type 1 keys of the PATIENT/STUDY/SERIES/IMAGE records (PS3.3 F.5) and neutral dummies.
_RECORD_DUMMIES = {
    "PatientID": "UNKNOWN",
    "StudyDate": "19000101",
    "StudyTime": "000000",
    "StudyID": "0",
    "SeriesNumber": "0",
    "InstanceNumber": "0",
    "Modality": "OT",
}


def _records(path: Path) -> RecordNode:
    ds = dcmread(path, stop_before_pixels=True)
    filled = Dataset()
    filled.update(ds)
    for keyword, dummy in _RECORD_DUMMIES.items():
        if not filled.get(keyword):
            setattr(filled, keyword, dummy)
    nodes: list[RecordNode] = []
    for record_type in ("PATIENT", "STUDY", "SERIES", _leaf_type(filled)):
        record = DIRECTORY_RECORDERS[record_type](filled)
        record.DirectoryRecordType = record_type
        if len(nodes) == 3:
            record.ReferencedSOPInstanceUIDInFile = ds.SOPInstanceUID
        nodes.append(RecordNode(record))
    for parent, child in pairwise(nodes):
        child.parent = parent
    return nodes[-1]


def _cleanup_staging(fileset: FileSet) -> None:
    """pydicom stages instances in a temporary folder it leaves to the garbage collector;
    remove it now (a ResourceWarning otherwise)."""
    stage = getattr(fileset, "_stage", {}).get("t")
    cleanup = getattr(stage, "cleanup", None)
    if callable(cleanup):
        cleanup()
