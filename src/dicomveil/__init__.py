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

from dicomveil._version import __version__
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
