"""dicomveil: DICOM de-identification with PS3.15 profiles, keyed pseudonyms and streaming I/O.

The front door::

    from dicomveil import deidentify, Profile
    clean = deidentify(dataset)                                  # a pydicom Dataset
    summary = deidentify("in/", "out/", profile="ps3.15-basic",  # files and folders
                         options=["retain-uids"])
"""

from importlib import import_module as _import_module
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from ._version import __version__
from .actions import Action, Code
from .api import WithheldError, deidentify
from .batch import FileResult, Outcome, RunConfig, RunSummary, run
from .comparison import ChangeKind, DiffReport, diff
from .crosswalk import Crosswalk
from .engine import ElementReport, Engine, Result
from .errors import (
    CrosswalkError,
    DeidentificationError,
    DicomveilError,
    InputError,
    KeyFileError,
    ProfileError,
)
from .keys import Key, read_key, write_key
from .layout import DEFAULT_LAYOUT, Layout, LayoutError
from .options import Option
from .profiles import CompiledProfile, Profile, Risk, load_profile, preset_names
from .pseudonyms import Pseudonymizer
from .statuses import QcStatus, RunStatus
from .tables import EDITION
from .text import Identifiers, Replacements, TextCleaner
from .verify import Finding, RiskFlag, VerifyReport, verify

if _TYPE_CHECKING:
    from .audit import AuditError, AuditRecorder, AuditTrail

# Loaded on first use: the audit trail brings SQLAlchemy, which most users of the engine
# never need (PEP 562).
_LAZY = {name: "audit" for name in ("AuditError", "AuditRecorder", "AuditTrail")}


def __getattr__(name: str) -> _Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dicomveil' has no attribute {name!r}")
    return getattr(_import_module(f".{module}", __name__), name)


__all__ = [
    "DEFAULT_LAYOUT",
    "EDITION",
    "Action",
    "AuditError",
    "AuditRecorder",
    "AuditTrail",
    "ChangeKind",
    "Code",
    "CompiledProfile",
    "Crosswalk",
    "CrosswalkError",
    "DeidentificationError",
    "DicomveilError",
    "DiffReport",
    "ElementReport",
    "Engine",
    "FileResult",
    "Finding",
    "Identifiers",
    "InputError",
    "Key",
    "KeyFileError",
    "Layout",
    "LayoutError",
    "Option",
    "Outcome",
    "Profile",
    "ProfileError",
    "Pseudonymizer",
    "QcStatus",
    "Replacements",
    "Result",
    "Risk",
    "RiskFlag",
    "RunConfig",
    "RunStatus",
    "RunSummary",
    "TextCleaner",
    "VerifyReport",
    "WithheldError",
    "__version__",
    "deidentify",
    "diff",
    "load_profile",
    "preset_names",
    "read_key",
    "run",
    "verify",
    "write_key",
]
