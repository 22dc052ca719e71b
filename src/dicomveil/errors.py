"""dicomveil's own exceptions.

The tree::

    DicomveilError
    ├── ProfileError        a profile file or name that cannot be used (names the file and entry)
    ├── GatewayConfigError  a gateway configuration that cannot be used (one line per problem)
    ├── GatewayWorkerError  a gateway worker process that ended while it held an instance
    ├── CohortError         a gateway cohort database that cannot be opened, read or written
    ├── LayoutError         an output layout template with unknown fields or paths outside
    ├── OutputKeyError      an output folder another key wrote (``--allow-other-key``)
    ├── KeyFileError        a key file that is missing, malformed or readable by others
    ├── CrosswalkError      a crosswalk CSV that is malformed, or a patient missing from it
    ├── InputError          an input file that cannot be read as DICOM (names the file)
    ├── DeidentificationError
    │                       a dataset the engine cannot de-identify safely (names the tag)
    ├── WithheldError       a dataset the profile withholds (``deidentify`` of one dataset)
    ├── AuditError          an audit database that cannot be opened, read or written
    └── ClusterError        a Dask cluster or storage location that cannot be used

Internal exceptions that never leave their module (a withheld walk, a reader that
declines a file) derive from :class:`Exception` and are private to it.

Messages never contain values read from a DICOM file: they name files, tags and reasons only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dicomveil.standard.risks import Risk


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


class GatewayConfigError(DicomveilError):
    """A gateway configuration that cannot be used; names the file and the entry.

    Its text has one line per problem: ``<file>: <entry>: <message>``.

    Parameters
    ----------
    message : str
        What is wrong.
    source : str
        The configuration file.
    entry : str
        Where in it: a key path such as ``route[1].profile (route 'research')``; empty
        when the problem is the whole file.
    more : sequence of (str, str)
        Further problems, as ``(entry, message)`` pairs.

    Attributes
    ----------
    problems : tuple of (str, str)
        Every problem, the first one being ``(entry, message)``.
    """

    def __init__(
        self, message: str, *, source: str, entry: str = "", more: Sequence[tuple[str, str]] = ()
    ) -> None:
        self.source = source
        self.entry = entry
        self.problems: tuple[tuple[str, str], ...] = ((entry, message), *more)
        lines = (
            f"{source}: {where + ': ' if where else ''}{text}" for where, text in self.problems
        )
        super().__init__("\n".join(lines))


class GatewayWorkerError(DicomveilError):
    """A gateway worker process that ended while it de-identified an instance (killed, out
    of memory); a new one takes its place."""


class CohortError(DicomveilError):
    """A gateway's cohort database (its pseudonym and UID maps) that cannot be opened, read
    or written; the message names the database (a URL with its password hidden)."""


class LayoutError(DicomveilError):
    """A layout template that uses unknown fields or could name paths outside the output."""


class WithheldError(DicomveilError):
    """The dataset is withheld by the profile: it carries what the profile cannot clean."""

    def __init__(self, risk: Risk, detail: str) -> None:
        self.risk = risk
        super().__init__(detail)


class AuditError(DicomveilError):
    """An audit database that cannot be opened, read or written."""


class ClusterError(DicomveilError):
    """A cluster run that cannot start: missing extra, bad location or options, no scheduler."""


class OutputKeyError(DicomveilError):
    """An output folder written with another key, or whose key cannot be checked."""


def safe_reason(exc: BaseException) -> str:
    """What a log line may say of an exception: dicomveil's own errors name no value read
    from a file (their message), any other exception may quote one (its kind only).

    Parameters
    ----------
    exc : BaseException
        What was raised.

    Returns
    -------
    str
        ``Kind: message`` for a :class:`DicomveilError`, else ``Kind``.
    """
    kind = type(exc).__name__
    return f"{kind}: {exc}" if isinstance(exc, DicomveilError) and str(exc) else kind
