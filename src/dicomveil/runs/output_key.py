"""Which key wrote an output folder: one run's pseudonyms and UIDs match another's only when
both used the same key, so a folder refuses a second key unless told otherwise.

The first run into a folder records its key's fingerprint (a short public identifier, never
the key) in the folder: as an empty, owner-only directory named ``.dicomveil-key-<fingerprint>``
at its root. A directory, not a file: every tool that walks the output for files (``verify``,
``diff``, a later run reading the output as input, a PACS import) sees nothing, and "every
file under the output is DICOM" stays true. Creating a directory is atomic; two runs starting
together with two keys can both record theirs (the next run then names both).

A run allowed another key (``--allow-other-key``) records that one too; later runs with either
key go on without a question.
"""

from __future__ import annotations

import re
from pathlib import Path

from dicomveil.errors import OutputKeyError
from dicomveil.io import make_folder

__all__ = ["MARKER_PREFIX", "OutputKeyError", "check_output_key", "output_keys"]

MARKER_PREFIX = ".dicomveil-key-"
_FINGERPRINT = re.compile(r"[0-9a-f]{8,64}")


def output_keys(output: Path) -> list[str]:
    """The fingerprints of the keys recorded in an output folder.

    Parameters
    ----------
    output : Path
        The output folder (it need not exist).

    Returns
    -------
    list of str
        The fingerprints, sorted; empty when the folder does not exist or records none.

    Raises
    ------
    OutputKeyError
        The folder exists but cannot be listed.
    """
    try:
        names = [entry.name for entry in output.iterdir()] if output.is_dir() else []
    except OSError as exc:
        raise OutputKeyError(
            f"cannot read the output folder {output} ({exc.strerror or type(exc).__name__})"
        ) from None
    found = []
    for name in names:
        fingerprint = name[len(MARKER_PREFIX) :]
        if name.startswith(MARKER_PREFIX) and _FINGERPRINT.fullmatch(fingerprint):
            found.append(fingerprint)
    return sorted(found)


def check_output_key(
    output: Path, fingerprint: str, *, allow_other: bool, record: bool = True
) -> None:
    """Refuse an output folder that another key wrote; record this key in it.

    Calling it again with the same arguments changes nothing (the record is kept).

    Parameters
    ----------
    output : Path
        The output folder, as the user gave it (messages name it so); created, with its
        parents, when the key is recorded.
    fingerprint : str
        The run's key fingerprint (:attr:`dicomveil.identity.keys.Key.fingerprint`).
    allow_other : bool
        Go on (and record this key too) when the folder records only other keys.
    record : bool, default True
        Record the key; False only checks (a dry run writes nothing).

    Raises
    ------
    OutputKeyError
        The folder records other keys only and ``allow_other`` is False, or the key cannot
        be recorded (the folder is a file, or not writable).
    ValueError
        ``fingerprint`` is not a key fingerprint (lowercase hexadecimal).
    """
    if not _FINGERPRINT.fullmatch(fingerprint):
        raise ValueError("not a key fingerprint")
    recorded = output_keys(output)
    if recorded and fingerprint not in recorded and not allow_other:
        others = ", ".join(recorded)
        raise OutputKeyError(
            f"the output folder {output} holds files de-identified with another key "
            f"(fingerprint {others}); this run's key is {fingerprint}. Two keys give the same "
            "patients two sets of pseudonyms and UIDs: use that key (--key), another output "
            "folder, or --allow-other-key"
        )
    if not record or fingerprint in recorded:
        return
    make_folder(output, "the output folder")
    try:
        marker = output / f"{MARKER_PREFIX}{fingerprint}"
        marker.mkdir(mode=0o700, exist_ok=True)
        marker.chmod(0o700)  # whatever the umask
    except OSError as exc:
        raise OutputKeyError(
            f"cannot record the key in the output folder {output} "
            f"({exc.strerror or type(exc).__name__})"
        ) from None
