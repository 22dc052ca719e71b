"""A real file with a planted name: pydicom's CT_small, the name as PatientName and in a
per-frame comment (a sequence a damaged file or a broken engine may copy through)."""

from __future__ import annotations

from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence


def planted_ct(name: str) -> Dataset:
    """CT_small with ``name`` as PatientName and in PerFrameFunctionalGroupsSequence's
    FrameContentSequence FrameComments (``seen by <name>``)."""
    ds = dcmread(str(get_testdata_file("CT_small.dcm")))
    ds.PatientName = name
    comment = Dataset()
    comment.FrameComments = f"seen by {name}"
    group = Dataset()
    group.FrameContentSequence = Sequence([comment])
    ds.PerFrameFunctionalGroupsSequence = Sequence([group])
    return ds
