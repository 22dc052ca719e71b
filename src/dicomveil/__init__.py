"""dicomveil: DICOM de-identification with PS3.15 profiles, keyed pseudonyms and streaming I/O.

The front door::

    from dicomveil import deidentify, Profile
    clean = deidentify(dataset)                                  # a pydicom Dataset
    summary = deidentify("in/", "out/", profile="ps3.15-basic",  # files and folders
                         options=["retain-uids"])

Everything else is importable from the package of its concept (see the README's
architecture section): :mod:`dicomveil.standard` (the tables of the standard),
:mod:`dicomveil.profiles`, :mod:`dicomveil.engine`, :mod:`dicomveil.identity`,
:mod:`dicomveil.cleaners`, :mod:`dicomveil.io`, :mod:`dicomveil.run`, :mod:`dicomveil.qc`
(verify, diff, audit), :mod:`dicomveil.gateway`, :mod:`dicomveil.cli`.
"""

import importlib
import typing

from dicomveil._version import __version__

if typing.TYPE_CHECKING:  # the names below, loaded when first used (see __getattr__)
    from dicomveil.engine import Engine
    from dicomveil.errors import DicomveilError, WithheldError
    from dicomveil.identity.keys import Key, read_key, write_key
    from dicomveil.identity.pseudonyms import Pseudonymizer
    from dicomveil.profiles import Profile
    from dicomveil.qc.diff import diff
    from dicomveil.qc.verify import verify
    from dicomveil.runs.api import deidentify
    from dicomveil.runs.batch import Outcome, RunConfig, RunSummary, run
    from dicomveil.standard.options import Option

# Where each name of the front door lives. They are imported when first used, not with the
# package: ``import dicomveil.cli`` (the command line) then loads only what its command needs
# (``dicomveil run`` neither the verifier nor the diff), and a program that imports one
# module of the package does not pay for the others.
_EXPORTS = {
    "DicomveilError": "dicomveil.errors",
    "Engine": "dicomveil.engine",
    "Key": "dicomveil.identity.keys",
    "Option": "dicomveil.standard.options",
    "Outcome": "dicomveil.runs.batch",
    "Profile": "dicomveil.profiles",
    "Pseudonymizer": "dicomveil.identity.pseudonyms",
    "RunConfig": "dicomveil.runs.batch",
    "RunSummary": "dicomveil.runs.batch",
    "WithheldError": "dicomveil.errors",
    "deidentify": "dicomveil.runs.api",
    "diff": "dicomveil.qc.diff",
    "read_key": "dicomveil.identity.keys",
    "run": "dicomveil.runs.batch",
    "verify": "dicomveil.qc.verify",
    "write_key": "dicomveil.identity.keys",
}


def __getattr__(name: str) -> object:
    """A name of the front door, imported from its module on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dicomveil' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # found directly next time
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = [
    "DicomveilError",
    "Engine",
    "Key",
    "Option",
    "Outcome",
    "Profile",
    "Pseudonymizer",
    "RunConfig",
    "RunSummary",
    "WithheldError",
    "__version__",
    "deidentify",
    "diff",
    "read_key",
    "run",
    "verify",
    "write_key",
]
