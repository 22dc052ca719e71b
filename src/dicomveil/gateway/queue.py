"""The durable queue between receive and forward.

One folder per route (``<state_dir>/queue/<route>/``) holds one de-identified DICOM file per
instance, named by a hash of its (de-identified) SOP Instance UID so that no UID shows in a
file name and a re-sent instance replaces its earlier copy, plus ``state.json`` (the
forwarding state: attempts, next attempt, last error, totals). Entries are written to a
temporary name, fsynced and renamed into place, and the folder is fsynced, before the
C-STORE that brought them is acknowledged: **the queue is the truth**.

The forwarder (:mod:`dicomveil.gateway.forward`) claims an entry by renaming it to
``*.sending`` and deletes it only when the destination confirmed it. A crash at any point
leaves either the entry or its claim on disk; :meth:`RouteQueue.recover` turns claims back
into entries at start-up, so nothing is lost. An entry the destination refuses for good is
moved to ``failed/`` with the reason: move it back into the route folder to retry it.

:class:`~dicomveil.gateway.transport.ClientAE` and
:class:`~dicomveil.gateway.transport.ClosingSocket` live in
:mod:`dicomveil.gateway.transport` and are re-exported here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dicomveil.gateway.transport import ClientAE, ClosingSocket
from dicomveil.io import TEMP_SUFFIX, fsync_dir, remove_stale_temporaries

__all__ = [
    "ClientAE",
    "ClosingSocket",
    "RouteQueue",
    "atomic_write_json",
    "fsync_dir",
]

ENTRY_SUFFIX = ".dcm"
CLAIM_SUFFIX = ".sending"
STATE_FILE = "state.json"
FAILED_DIR = "failed"


# --------------------------------------------------------------------------------------------
# Files


def atomic_write_json(path: Path, data: Any, *, durable: bool = True) -> None:
    """Write JSON to a temporary file beside ``path``, fsync it, rename it into place.

    Parameters
    ----------
    path : Path
        The file to write (its folder is made if missing).
    data : Any
        What to write (JSON-serialisable), with sorted keys and an indent of 2.
    durable : bool
        Fsync the file and its folder (False for a status file, rewritten often).

    Raises
    ------
    OSError
        When it cannot be written; no temporary file is left.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=".", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        Path(temp).replace(path)
        if durable:
            fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(temp).unlink()
        raise


# --------------------------------------------------------------------------------------------
# The queue of one route


class RouteQueue:
    """The on-disk queue of one route.

    Parameters
    ----------
    folder : Path
        The route's queue folder (made if missing).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.failed_folder = folder / FAILED_DIR
        self.state_path = folder / STATE_FILE
        folder.mkdir(parents=True, exist_ok=True)

    def entry_path(self, sop_instance_uid: str) -> Path:
        """Where the instance with this (de-identified) SOP Instance UID is queued.

        Parameters
        ----------
        sop_instance_uid : str
            The de-identified SOP Instance UID.

        Returns
        -------
        Path
            The entry's path: a hash of the UID, so no UID shows in a file name.
        """
        digest = hashlib.sha256(sop_instance_uid.strip("\x00 ").encode("ascii", "replace"))
        return self.folder / (digest.hexdigest()[:40] + ENTRY_SUFFIX)

    def pending(self) -> list[Path]:
        """Queued entries, oldest first.

        Returns
        -------
        list of Path
            The entries waiting (claims and temporaries excluded).
        """
        found: list[tuple[int, str, Path]] = []
        with contextlib.suppress(FileNotFoundError), os.scandir(self.folder) as entries:
            for entry in entries:
                if entry.name.endswith(ENTRY_SUFFIX) and not entry.name.startswith("."):
                    with contextlib.suppress(FileNotFoundError):
                        found.append((entry.stat().st_mtime_ns, entry.name, Path(entry.path)))
        found.sort()
        return [path for _, _, path in found]

    def depth(self) -> int:
        """Entries waiting or being sent (claims included)."""
        return sum(1 for _ in self._names(ENTRY_SUFFIX, CLAIM_SUFFIX))

    def failed_count(self) -> int:
        """Entries the destination refused for good (in ``failed/``)."""
        if not self.failed_folder.exists():
            return 0
        return sum(1 for p in self.failed_folder.iterdir() if p.suffix == ENTRY_SUFFIX)

    def _names(self, *suffixes: str) -> Iterator[str]:
        with contextlib.suppress(FileNotFoundError), os.scandir(self.folder) as entries:
            for entry in entries:
                if entry.name.endswith(suffixes) and not entry.name.startswith("."):
                    yield entry.name

    def recover(self) -> int:
        """After a crash: claims become entries again, temporaries go. Returns claims found."""
        remove_stale_temporaries(self.folder)
        count = 0
        for name in list(self._names(CLAIM_SUFFIX)):
            claim = self.folder / name
            entry = claim.with_suffix("")
            if entry.exists():  # a newer copy arrived meanwhile: it wins
                claim.unlink(missing_ok=True)
            else:
                claim.replace(entry)
            count += 1
        if count:
            fsync_dir(self.folder)
        return count

    def claim(self, entry: Path) -> Path | None:
        """Take an entry for sending (rename it to ``*.sending``).

        Parameters
        ----------
        entry : Path
            A queued entry.

        Returns
        -------
        Path or None
            The claim, or None if the entry is gone.
        """
        claim = entry.with_name(entry.name + CLAIM_SUFFIX)
        try:
            entry.replace(claim)
        except FileNotFoundError:
            return None
        return claim

    def unclaim(self, claim: Path) -> None:
        """Put a claimed entry back; a newer copy of the same instance supersedes it.

        Parameters
        ----------
        claim : Path
            What :meth:`claim` returned.
        """
        entry = claim.with_suffix("")
        with contextlib.suppress(FileNotFoundError):
            if entry.exists():
                claim.unlink()
            else:
                claim.replace(entry)

    def done(self, claim: Path) -> None:
        """The destination confirmed it: delete. (Not fsynced: a deletion lost in a crash
        only means the instance is sent again.)

        Parameters
        ----------
        claim : Path
            What :meth:`claim` returned.
        """
        claim.unlink(missing_ok=True)

    def fail(self, claim: Path, reason: str) -> None:
        """The destination refuses it for good: keep it in ``failed/`` with the reason.

        Parameters
        ----------
        claim : Path
            What :meth:`claim` returned.
        reason : str
            Why, written beside it (``<name>.json``).

        Raises
        ------
        OSError
            When it cannot be moved or the reason cannot be written.
        """
        self.failed_folder.mkdir(exist_ok=True)
        target = self.failed_folder / claim.with_suffix("").name
        claim.replace(target)
        atomic_write_json(target.with_suffix(".json"), {"reason": reason, "time": time.time()})
        fsync_dir(self.folder)

    def read_state(self) -> dict[str, Any]:
        """The forwarding state in ``state.json``; empty if missing or unreadable."""
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def write_state(self, state: dict[str, Any]) -> None:
        """Write the forwarding state to ``state.json``, durably.

        Parameters
        ----------
        state : dict
            The state (JSON-serialisable).

        Raises
        ------
        OSError
            When it cannot be written.
        """
        atomic_write_json(self.state_path, state)
