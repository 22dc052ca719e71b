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

from dicomveil.identity.keys import Key
from dicomveil.identity.pseudonyms import Pseudonymizer
from dicomveil.io import make_folder

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

    The entries wait in an SQLite file in a temporary folder (owner-only), not in memory: a
    run of a million files has millions of UIDs. :meth:`write` merges them with what the map
    folder already holds (this run's entries win) and writes each CSV sorted.

    Parameters
    ----------
    paths : bool
        Also keep ``paths.csv`` entries (``label,input``): the run names inputs by label.
    """

    def __init__(self, *, paths: bool = False) -> None:
        self.paths = paths
        self._folder = tempfile.mkdtemp(prefix="dicomveil-maps-")
        self._db = sqlite3.connect(Path(self._folder) / "maps.sqlite", isolation_level=None)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        for table, columns in _TABLES.items():
            self._db.execute(f"CREATE TABLE {table} (k TEXT PRIMARY KEY, {columns})")
        self._db.execute("BEGIN")

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
            if result.patient_id:
                self._db.execute(put.format("patients", ""), (result.patient_id, result.pseudonym))
                if result.date_offset_days is not None:
                    self._db.execute(
                        put.format("offsets", ", ?"),
                        (result.patient_id, result.pseudonym, str(result.date_offset_days)),
                    )
            if result.uid_map:
                self._db.executemany(put.format("uids", ""), result.uid_map.items())
            study, series, instance = result.instance_uids
            if instance:
                self._db.execute(put.format("instances", ", ?"), (instance, series, study))
        if self.paths:
            self._db.execute(put.format("paths", ""), (result.task.display, result.task.source))

    def write(self, folder: Path) -> None:
        """Write (merge) the maps into ``folder`` (created, mode 0700).

        Parameters
        ----------
        folder : pathlib.Path
            The map folder.
        """
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
            for row in _csv_rows(folder / name):
                if len(row) >= width:
                    self._db.execute(
                        f"INSERT OR IGNORE INTO {table} VALUES ({', '.join('?' * width)})",  # noqa: S608 (table names are ours)
                        row[:width],
                    )  # this run's entries win
            rows = self._db.execute(f"SELECT * FROM {table} ORDER BY k")  # noqa: S608
            _write_csv(folder / name, _HEADERS[table], rows)

    def close(self) -> None:
        """Remove the temporary file."""
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
        shutil.rmtree(self._folder, ignore_errors=True)


INSTANCES_FILE = "instances.csv"
_TABLES = {
    "patients": "v TEXT",
    "uids": "v TEXT",
    "instances": "se TEXT, st TEXT",
    "offsets": "p TEXT, d TEXT",
    "paths": "v TEXT",
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
