"""What a file is, by its first bytes: DICOM, a damaged DICOM file or zip archive, a
gzip-compressed DICOM file, or something else (skipped)."""

from __future__ import annotations

import gzip
import struct
import zlib
from enum import StrEnum
from pathlib import Path


class Kind(StrEnum):
    """What the first bytes of a file say it is."""

    DICOM = "dicom"
    NOT_DICOM = "not DICOM: skipped, not copied"
    BAD_PREFIX = "damaged DICOM: the 128-byte preamble is not followed by 'DICM'"
    DAMAGED_ZIP = "damaged zip archive: cannot be opened"
    GZIPPED = "a gzip-compressed DICOM file: not read (decompress it first, with gunzip)"
    UNREADABLE = "cannot read the file"
    UNREADABLE_FOLDER = "a folder that cannot be read: its files were not de-identified"


def sniff(path: Path) -> Kind:
    """Classify a file by its first bytes.

    DICOM: a DICM prefix, or a bare dataset starting with group 0002 or 0008; damaged DICOM
    or zip: their markers, broken; anything else is not DICOM.

    Parameters
    ----------
    path : Path
        The file to look at.

    Returns
    -------
    Kind
        What the file is; :attr:`Kind.UNREADABLE` when it cannot be opened.
    """
    try:
        with path.open("rb") as fh:
            head = fh.read(140)
    except OSError:
        # a folder as iter_files gives it: one that os.walk could not list
        return Kind.UNREADABLE_FOLDER if path.is_dir() else Kind.UNREADABLE
    if len(head) >= 132 and head[128:132] == b"DICM":
        return Kind.DICOM
    if bare_dataset(head):
        return Kind.DICOM
    if len(head) >= 136 and head[132:134] in (b"\x02\x00", b"\x00\x02"):
        return Kind.BAD_PREFIX  # a file meta group where it belongs, behind a wrong prefix
    if head.startswith(b"PK\x03\x04"):
        return Kind.DAMAGED_ZIP  # a valid archive is opened before this is asked
    if head.startswith(b"\x1f\x8b") and _gzipped_dicom(path):
        return Kind.GZIPPED  # a .dcm.gz (nibabel's test data, some archives): never passed by
    return Kind.NOT_DICOM


def _gzipped_dicom(path: Path) -> bool:
    """Whether a gzip file holds DICOM (its first bytes do); a .nii.gz does not."""
    try:
        with gzip.open(path, "rb") as fh:
            head = fh.read(140)
    except (OSError, EOFError, zlib.error):
        return False
    return (len(head) >= 132 and head[128:132] == b"DICM") or bare_dataset(head)


def bare_dataset(head: bytes) -> bool:
    """A dataset without preamble: its first element is (0002,xxxx) or (0008,xxxx)."""
    if len(head) < 8:
        return False
    vr = head[4:6]
    explicit = vr.isalpha() and vr.isupper()
    for endian in ("<", ">"):
        group, element = struct.unpack(endian + "HH", head[:4])
        if group not in (0x0002, 0x0008) or element > 0x0020:
            continue
        if explicit:
            return True
        length: int = struct.unpack(endian + "I", head[4:8])[0]
        if endian == "<" and length < 1024:
            return True
    return False
