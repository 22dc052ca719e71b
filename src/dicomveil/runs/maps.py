"""Maps: the secret side of a run, written outside the shareable output (``--map-dir``).

``patients.csv`` and ``uids.csv`` (``id_old,id_new``, as MIDI-B scores: every UID replaced,
the instances' own and those they refer to), ``instances.csv`` (each written instance's own
original SOP Instance, Series and Study UIDs: what a gateway's cohort imports, so that a prior
study an instance refers to does not join it), ``date_offsets.csv`` and, for runs with
``--redact-paths``, ``paths.csv``: the keyed label each input was named by in messages,
reports and the audit trail, and the input it stands for. Every file is mode 0600 in a 0700
folder, written atomically, and merged with what the folder already holds, so several
batches can share one map folder.

With ``--redact-paths`` an input is named ``input-`` and 16 hex digits of the keyed HMAC of
its path as given (``path!member`` inside a zip): the same input has the same label in every
run with the same key, and nobody without the key or ``paths.csv`` can tell which input a
label stands for, though a folder or file name holds a patient's name or ID.

Files the release gate stopped (``run --verify``) are moved into the map folder's ``gated/``
(:func:`quarantine`): they hold what the verifier flagged.
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dicomveil.errors import DicomveilError
from dicomveil.identity.keys import Key
from dicomveil.identity.pseudonyms import Pseudonymizer
from dicomveil.io import make_folder
from dicomveil.runs.results import printable

if TYPE_CHECKING:
    from dicomveil.runs.results import FileResult, Task

_LABEL_DOMAIN = "input-path"


def input_labeler(key: Key) -> Callable[[str], str]:
    """The ``--redact-paths`` label of an input, under ``key``.

    Parameters
    ----------
    key : Key
        The run's key.

    Returns
    -------
    callable
        Input as messages would name it (``path`` or ``path!member``) -> ``input-<16 hex>``.
    """
    keyed = Pseudonymizer(key)

    def label(source: str) -> str:
        return "input-" + keyed.digest(_LABEL_DOMAIN, source).hex()[:16]

    return label


def task_labeler(key: Key | None) -> Callable[[Task], str] | None:
    """What a run's collector names each task by: None (its path) unless ``key`` is given."""
    if key is None:
        return None
    label = input_labeler(key)
    return lambda task: label(task.source)


class MapStore:
    """A run's maps, added to as each result arrives and written (merged) at the end.

    The entries wait in an SQLite file (owner-only), not in memory: a run of a million files
    has millions of UIDs. With ``folder``, the file is the map folder's pending store
    (:data:`PENDING_MAPS`), made durable by :meth:`commit` before the run journal records
    the inputs done, so that an interrupted run's entries are still there for the run that
    resumes it (which skips those inputs); else it is in a temporary folder. :meth:`write`
    merges them with what the map folder already holds (this run's entries win) and writes
    each CSV sorted.

    Parameters
    ----------
    paths : bool
        Also keep ``paths.csv`` entries (``label,input``): the run names inputs by label.
    folder : pathlib.Path or None
        The map folder (it exists), to keep the entries in until they are written.
    """

    def __init__(self, *, paths: bool = False, folder: Path | None = None) -> None:
        self.paths = paths
        self._temporary = None if folder is not None else tempfile.mkdtemp(prefix="dicomveil-")
        self._pending = None if folder is None else folder / PENDING_MAPS
        self._written = False
        path = self._pending or Path(str(self._temporary)) / "maps.sqlite"
        try:
            self._db = sqlite3.connect(path, isolation_level=None, timeout=30)
            path.chmod(0o600)
            durable = self._pending is not None
            self._db.execute(f"PRAGMA journal_mode={'DELETE' if durable else 'OFF'}")
            self._db.execute(f"PRAGMA synchronous={'NORMAL' if durable else 'OFF'}")
            for table, columns in _TABLES.items():
                self._db.execute(
                    f"CREATE TABLE IF NOT EXISTS {table} (k TEXT PRIMARY KEY, {columns})"
                )
            self._db.execute("BEGIN")
        except (OSError, sqlite3.Error) as exc:
            self.close()
            raise MapError(f"cannot keep the maps in {folder} ({_reason(exc)})") from None

    def commit(self) -> None:
        """Make the entries added so far durable (before the run journal records their
        inputs as done: a resumed run skips those, and finds their entries here)."""
        try:
            self._db.execute("COMMIT")
            self._db.execute("BEGIN")
        except sqlite3.Error as exc:
            raise MapError(f"cannot keep the maps ({_reason(exc)})") from None

    def add(self, result: FileResult) -> None:
        """Add one input's entries (a written input's patient, offset and UIDs; with
        ``paths``, every input's label).

        Parameters
        ----------
        result : FileResult
            The input's result.
        """
        put = "INSERT OR REPLACE INTO {} VALUES (?, ?{})"
        if result.outcome.value == "written":
            if result.pseudonym:
                # by the pseudonym: a patient without a PatientID (pseudonymised by name or
                # study) has a date offset row too, its patient_id empty; patients.csv pairs
                # IDs only (it is a crosswalk: review --crosswalk, a later run's --crosswalk)
                if result.patient_id:
                    self._db.execute(
                        put.format("patients", ""), (result.pseudonym, result.patient_id)
                    )
                if result.date_offset_days is not None:
                    self._db.execute(
                        put.format("offsets", ", ?"),
                        (result.pseudonym, result.patient_id, str(result.date_offset_days)),
                    )
            if result.uid_map:
                self._db.executemany(put.format("uids", ""), result.uid_map.items())
            study, series, instance = result.instance_uids
            if instance:
                self._db.execute(put.format("instances", ", ?"), (instance, series, study))
        if self.paths:
            task = result.task
            self._db.execute(put.format("paths", ""), (task.display, printable(task.source)))

    def write(self, folder: Path) -> None:
        """Write (merge) the maps into ``folder`` (created, mode 0700).

        Parameters
        ----------
        folder : pathlib.Path
            The map folder.

        Raises
        ------
        MapError
            A map cannot be written (a full disk, a read-only folder): the entries stay in
            the folder's pending store, for the next run into it to write.
        """
        try:
            self._write(folder)
        except (OSError, sqlite3.Error) as exc:
            kept = " (kept: run again, with --resume, to write them)" if self._pending else ""
            raise MapError(f"cannot write the maps into {folder} ({_reason(exc)}){kept}") from None
        self._written = True

    def _write(self, folder: Path) -> None:
        make_folder(folder, "the map folder")
        with contextlib.suppress(OSError):
            Path(folder).chmod(0o700)
        files = {
            "patients": "patients.csv",
            "uids": "uids.csv",
            "instances": INSTANCES_FILE,
            "offsets": "date_offsets.csv",
        }
        if (folder / "uids.csv").exists() and not (folder / INSTANCES_FILE).exists():
            # A folder an earlier version wrote: its instances are not listed, and a list of
            # this run's only would narrow a cohort imported from it to this run's.
            del files["instances"]
        if self.paths:
            files["paths"] = "paths.csv"
        for table, name in files.items():
            width = len(_HEADERS[table])
            order, select = _BY_PSEUDONYM.get(table, (tuple(range(width)), "* FROM {} ORDER BY k"))
            for row in _csv_rows(folder / name):
                if len(row) >= width:
                    self._db.execute(
                        f"INSERT OR IGNORE INTO {table} VALUES ({', '.join('?' * width)})",  # noqa: S608 (table names are ours)
                        [row[i] for i in order],
                    )  # this run's entries win
            rows = self._db.execute("SELECT " + select.format(table))
            _write_csv(folder / name, _HEADERS[table], rows)

    def close(self) -> None:
        """Close the store: removed once the maps are written (else kept, in the map
        folder, for the next run), or with its temporary folder."""
        with contextlib.suppress(sqlite3.Error, AttributeError):
            self._db.close()
        if self._temporary is not None:
            shutil.rmtree(self._temporary, ignore_errors=True)
        elif self._written and self._pending is not None:
            self._pending.unlink(missing_ok=True)


class MapError(DicomveilError):
    """The maps cannot be kept or written."""


def _reason(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc) or type(exc).__name__


PENDING_MAPS = ".dicomveil-maps.sqlite"
"""A run's map entries, in its map folder until it writes the CSV files (an interrupted
run's are there for the next run into the folder)."""


INSTANCES_FILE = "instances.csv"
_TABLES = {
    "patients": "v TEXT",
    "uids": "v TEXT",
    "instances": "se TEXT, st TEXT",
    "offsets": "p TEXT, d TEXT",
    "paths": "v TEXT",
}
# Tables keyed by the pseudonym (the CSV's second column): the CSV columns in the table's
# order, and the query that gives them back in the CSV's, sorted by the original ID.
_BY_PSEUDONYM = {
    "patients": ((1, 0), "v, k FROM {} ORDER BY v, k"),
    "offsets": ((1, 0, 2), "p, k, d FROM {} ORDER BY p, k"),
}
_HEADERS = {
    "patients": ["id_old", "id_new"],
    "uids": ["id_old", "id_new"],
    "instances": ["sop_instance_uid", "series_instance_uid", "study_instance_uid"],
    "offsets": ["patient_id", "pseudonym", "offset_days"],
    "paths": ["label", "input"],
}


def write_maps(folder: Path, results: Iterable[FileResult], *, paths: bool = False) -> None:
    """Write (merge) the maps of ``results`` into ``folder`` (see :class:`MapStore`).

    Parameters
    ----------
    folder : pathlib.Path
        The map folder (created, mode 0700).
    results : iterable of FileResult
        The run's results.
    paths : bool
        Also write ``paths.csv`` (``label,input``): the run named its inputs by label.
    """
    store = MapStore(paths=paths)
    try:
        for result in results:
            store.add(result)
        store.write(folder)
    finally:
        store.close()


def instance_uids(folder: Path) -> set[str] | None:
    """Every UID of a map folder's ``instances.csv``: the written instances' own original
    SOP Instance, Series and Study UIDs.

    Parameters
    ----------
    folder : pathlib.Path
        The map folder.

    Returns
    -------
    set of str or None
        The UIDs; None when the folder has no ``instances.csv`` (an earlier version's).
    """
    path = folder / INSTANCES_FILE
    if not path.exists():
        return None
    return {uid for row in _csv_rows(path) for uid in row[:3] if uid}


def _csv_rows(path: Path) -> Iterator[list[str]]:
    """The rows of a map CSV after its header (nothing when it does not exist)."""
    if not path.exists():
        return
    with path.open(newline="", encoding="utf-8", errors="surrogateescape") as fh:
        reader = csv.reader(fh)
        next(reader, None)
        yield from reader


def _write_csv(path: Path, header: list[str], rows: Iterable[Sequence[str]]) -> None:
    fd, temp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8", errors="surrogateescape") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)
        Path(temp).chmod(0o600)
        Path(temp).replace(path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


GATE_PREFIX = "release gate:"  # how the reason of a file the gate stopped begins
Gate = Callable[[Path, Path, Path, Mapping[str, str]], "str | None"]
"""A release gate: (output file, output folder, input file, UID map) -> why the file is
stopped, or None (see :class:`dicomveil.qc.verify.gate.ReleaseGate`)."""


def gated(
    gate: Gate,
    output: Path,
    root: Path,
    source: Path,
    uid_map: Mapping[str, str],
    map_dir: Path | None,
) -> str | None:
    """Pass a written file through the release gate: None when it may stay, else the
    reason it is withheld (``release gate: ...``), the file moved out of ``root`` by
    :func:`quarantine` (deleted when that fails). A gate that cannot check fails closed."""
    try:
        reason = gate(output, root, source, uid_map)
    except Exception as exc:  # the gate could not decide: nothing leaves unchecked
        reason = f"could not check ({type(exc).__name__})"
    if reason is None:
        return None
    try:
        quarantine(output, root, map_dir)
    except OSError as exc:
        output.unlink(missing_ok=True)
        reason += f"; not kept for review ({exc.strerror or type(exc).__name__})"
    return f"{GATE_PREFIX} {reason}"


def quarantine(output: Path, root: Path, map_dir: Path | None) -> None:
    """Move a file the release gate stopped out of the output folder: into ``map_dir``'s
    ``gated/`` (owner-only, beside the other secrets, for review) or, without a map folder,
    delete it. Its folders left empty in the output are removed."""
    if map_dir is not None:
        target = map_dir / "gated" / output.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        output.replace(target)
        target.chmod(0o600)
    else:
        output.unlink(missing_ok=True)
    folder = output.parent
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            break
        folder = folder.parent
