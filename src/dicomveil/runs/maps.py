"""Maps: the secret side of a run, written outside the shareable output (``--map-dir``).

``patients.csv`` and ``uids.csv`` (``id_old,id_new``, as MIDI-B scores), ``date_offsets.csv``
and, for runs with ``--redact-paths``, ``paths.csv``: the keyed label each input was named by
in messages, reports and the audit trail, and the input it stands for. Every file is mode
0600 in a 0700 folder, written atomically, and merged with what the folder already holds, so
several batches can share one map folder.

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
import io as _io
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dicomveil.identity.keys import Key
from dicomveil.identity.pseudonyms import Pseudonymizer
from dicomveil.io import make_folder

if TYPE_CHECKING:
    from dicomveil.runs.batch import RunSummary, Task

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


def write_maps(folder: Path, summary: RunSummary, *, paths: bool = False) -> None:
    """Write (merge) the run's maps into ``folder``.

    Parameters
    ----------
    folder : pathlib.Path
        The map folder (created, mode 0700).
    summary : RunSummary
        The run's results.
    paths : bool
        Also write ``paths.csv`` (``label,input``): the run named its inputs by label.
    """
    make_folder(folder, "the map folder")
    with contextlib.suppress(OSError):
        Path(folder).chmod(0o700)
    patients = _read_map(folder / "patients.csv")
    uids = _read_map(folder / "uids.csv")
    offsets = _read_rows(folder / "date_offsets.csv")
    for result in summary.written:
        if result.patient_id:
            patients[result.patient_id] = result.pseudonym
            if result.date_offset_days is not None:
                offsets[result.patient_id] = [result.pseudonym, str(result.date_offset_days)]
        uids.update(result.uid_map)
    _write_csv(folder / "patients.csv", ["id_old", "id_new"], sorted(patients.items()))
    _write_csv(folder / "uids.csv", ["id_old", "id_new"], sorted(uids.items()))
    _write_csv(
        folder / "date_offsets.csv",
        ["patient_id", "pseudonym", "offset_days"],
        sorted([k, *v] for k, v in offsets.items()),
    )
    if paths:
        labels = _read_map(folder / "paths.csv")
        labels.update((r.task.display, r.task.source) for r in summary.results)
        _write_csv(folder / "paths.csv", ["label", "input"], sorted(labels.items()))


def _read_map(path: Path) -> dict[str, str]:
    return {k: v[0] for k, v in _read_rows(path).items()}


def _read_rows(path: Path) -> dict[str, list[str]]:
    if not path.exists():
        return {}
    with path.open(newline="", encoding="utf-8", errors="surrogateescape") as fh:
        rows = list(csv.reader(fh))
    return {row[0]: row[1:] for row in rows[1:] if len(row) >= 2}


def _write_csv(path: Path, header: list[str], rows: Iterable[Sequence[str]]) -> None:
    buffer = _io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    fd, temp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as fh:
        fh.write(buffer.getvalue())
    Path(temp).chmod(0o600)
    Path(temp).replace(path)


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
