"""What :func:`~dicomveil.qc.verify.verify` reports: findings, risk flags, the verdict, JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final


class Check(StrEnum):
    """The four checks of :func:`verify`."""

    CONFORMANCE = "conformance"
    LEAK = "leak"
    REFERENCE = "reference"
    VALIDITY = "validity"


class Category(StrEnum):
    """What exactly a finding is; each belongs to one :class:`Check`."""

    # conformance
    REMOVED_PRESENT = "removed-element-present"
    NOT_EMPTIED = "value-not-emptied"
    ORIGINAL_KEPT = "original-value-kept"
    PRIVATE_ELEMENT = "private-element"
    PRIVATE_CREATOR = "private-creator"
    UNKNOWN_ELEMENT = "unknown-element"
    FILE_META = "file-meta"
    PREAMBLE = "preamble"
    # leak: the kind of identifier found
    NAME = "name"
    ID = "id"
    DATE = "date"
    TIME = "time"
    ADDRESS = "address"
    PHONE = "phone"
    INSTITUTION = "institution"
    DEVICE = "device"
    UID = "uid"
    # reference
    DANGLING_REFERENCE = "dangling-reference"
    ORIGINAL_UID = "original-uid"
    UID_MAP = "uid-map"
    UNMATCHED_FILE = "unmatched-file"
    DUPLICATE_INSTANCE = "duplicate-instance"
    # validity
    UNREADABLE = "unreadable"
    NO_PREFIX = "no-dicm-prefix"
    INVALID_VALUE = "invalid-value"
    CHARACTER_SET = "character-set"
    IOD_ERROR = "iod-error"


_CHECK_OF: Final = {
    **dict.fromkeys(
        [
            Category.REMOVED_PRESENT,
            Category.NOT_EMPTIED,
            Category.ORIGINAL_KEPT,
            Category.PRIVATE_ELEMENT,
            Category.PRIVATE_CREATOR,
            Category.UNKNOWN_ELEMENT,
            Category.FILE_META,
            Category.PREAMBLE,
        ],
        Check.CONFORMANCE,
    ),
    **dict.fromkeys(
        [
            Category.DANGLING_REFERENCE,
            Category.ORIGINAL_UID,
            Category.UID_MAP,
            Category.UNMATCHED_FILE,
            Category.DUPLICATE_INSTANCE,
        ],
        Check.REFERENCE,
    ),
    **dict.fromkeys(
        [
            Category.UNREADABLE,
            Category.NO_PREFIX,
            Category.INVALID_VALUE,
            Category.CHARACTER_SET,
            Category.IOD_ERROR,
        ],
        Check.VALIDITY,
    ),
}


def _finding(file: str, path: str, category: Category, message: str) -> Finding:
    """A finding; its check follows from its category (leaks: the kind of identifier)."""
    return Finding(file, path, _CHECK_OF.get(category, Check.LEAK), category, message)


class RiskKind(StrEnum):
    """Content a reviewer must look at, whatever the profile allows."""

    BURNED_IN_ANNOTATION = "burned-in-annotation"
    RECOGNIZABLE_VISUAL_FEATURES = "recognizable-visual-features"
    FREE_TEXT = "free-text"
    PRIVATE_ELEMENTS = "private-elements"
    ENCAPSULATED_DOCUMENT = "encapsulated-document"
    OVERLAY = "overlay"
    STRUCTURED_CONTENT = "structured-content"
    ENCRYPTED_ATTRIBUTES = "encrypted-attributes"


class IodCheck(StrEnum):
    """How ``dciodvfy`` is run: once per distinct structure (its errors follow from the
    elements present, their VRs, multiplicities and coded values, and the rest is checked
    per value here), on every file, or not at all."""

    STRUCTURE = "structure"
    ALL = "all"
    OFF = "off"


class Verdict(StrEnum):
    """The result of a check: no finding, findings, or the output could not be checked."""

    PASS = "pass"  # noqa: S105  (a verdict, not a password)
    FINDINGS = "findings"
    COULD_NOT_CHECK = "could-not-check"


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem in the output. ``file`` is relative to the output folder."""

    file: str
    path: str
    check: Check
    category: Category
    message: str

    def to_dict(self) -> dict[str, str]:
        """The finding for the JSON report.

        Returns
        -------
        dict of str to str
            ``file``, ``path``, ``category``, ``check`` and ``message``.
        """
        return {
            "file": self.file,
            "path": self.path,
            "category": self.category.value,
            "check": self.check.value,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class RiskFlag:
    """Content to review before sharing, reported even where the profile allows it."""

    file: str
    path: str
    flag: RiskKind
    message: str

    def to_dict(self) -> dict[str, str]:
        """The risk flag for the JSON report.

        Returns
        -------
        dict of str to str
            ``file``, ``path``, ``flag`` and ``message``.
        """
        return {
            "file": self.file,
            "path": self.path,
            "flag": self.flag.value,
            "message": self.message,
        }


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify` found. ``problems`` say why it could not check (if it could not)."""

    profile: str
    files: int
    findings: tuple[Finding, ...] = ()
    risk_flags: tuple[RiskFlag, ...] = ()
    notes: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def result(self) -> Verdict:
        """Could not check when there are problems, else findings when any, else pass."""
        if self.problems:
            return Verdict.COULD_NOT_CHECK
        return Verdict.FINDINGS if self.findings else Verdict.PASS

    @property
    def exit_code(self) -> int:
        """0 pass, 1 findings, 2 could not check (the CLI's exit codes)."""
        return {Verdict.PASS: 0, Verdict.FINDINGS: 1, Verdict.COULD_NOT_CHECK: 2}[self.result]

    def to_dict(self) -> dict[str, Any]:
        """The report as the JSON report holds it.

        Returns
        -------
        dict of str to Any
            ``result``, ``files``, ``profile``, ``findings``, ``risk_flags``, ``notes`` and
            ``problems``.
        """
        return {
            "result": self.result.value,
            "files": self.files,
            "profile": self.profile,
            "findings": [f.to_dict() for f in self.findings],
            "risk_flags": [r.to_dict() for r in self.risk_flags],
            "notes": list(self.notes),
            "problems": list(self.problems),
        }

    def to_json(self) -> str:
        """The report as JSON (:meth:`to_dict`, indented).

        Returns
        -------
        str
            The JSON text, without a final newline.
        """
        return json.dumps(self.to_dict(), indent=2)
