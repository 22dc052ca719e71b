"""dicomveil's own exceptions.

The tree::

    DicomveilError
    ├── ProfileError        a profile file or name that cannot be used (names the file and entry)
    ├── KeyFileError        a key file that is missing, malformed or readable by others
    ├── CrosswalkError      a crosswalk CSV that is malformed, or a patient missing from it
    ├── InputError          an input file that cannot be read as DICOM (names the file)
    └── DeidentificationError
                            a dataset the engine cannot de-identify safely (names the tag)

Messages never contain values read from a DICOM file: they name files, tags and reasons only.
"""

from __future__ import annotations


class DicomveilError(Exception):
    """Base class of every error dicomveil raises on purpose."""


class ProfileError(DicomveilError):
    """A profile that cannot be loaded: unknown name, tag, keyword, action or option."""

    def __init__(self, message: str, *, source: str | None = None, entry: str | None = None):
        self.source = source
        self.entry = entry
        where = ""
        if source:
            where += f"{source}: "
        if entry:
            where += f"{entry}: "
        super().__init__(where + message)


class KeyFileError(DicomveilError):
    """A key file that is missing, has the wrong format, or loose permissions."""


class CrosswalkError(DicomveilError):
    """A crosswalk file that is malformed, or a patient that is not in it."""


class InputError(DicomveilError):
    """An input that cannot be read as a DICOM file."""

    def __init__(self, reason: str, *, path: str | None = None):
        self.reason = reason
        self.path = path
        super().__init__(f"{path}: {reason}" if path else reason)


class DeidentificationError(DicomveilError):
    """A dataset that the engine cannot de-identify safely."""

    def __init__(self, reason: str, *, tag: str | None = None):
        self.reason = reason
        self.tag = tag
        super().__init__(f"{tag}: {reason}" if tag else reason)
