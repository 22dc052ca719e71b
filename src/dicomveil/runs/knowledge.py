"""A run's first pass, when the profile's free-text cleaners look for the patient's values:
every input's patient and identifying values (values only, never datasets), pooled per
patient, so that each file's texts are cleaned of what any file of its patient holds (a
relative's name in one file's history is removed from the next file's comment), and of the
institution, department and station names of the whole run.

The second pass hands the pooled values to every worker's engine
(:class:`~dicomveil.engine.Engine`'s ``patients``). Inputs that cannot be read give
nothing here: the second pass reports them.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

from dicomveil.cleaners.text import Identifiers
from dicomveil.io import Kind, read_scanned, read_source, sniff
from dicomveil.runs.lifetime import exit_with_parent

if TYPE_CHECKING:
    from dicomveil.engine import Engine
    from dicomveil.runs.batch import Task

Patients = dict[str, Identifiers]
"""What every file of each patient holds, by the engine's patient key."""


class _Reader(Protocol):
    """What the first pass needs of a run's worker: its engine, and its open archive."""

    engine: Engine

    def _archive(self, path: Path) -> zipfile.ZipFile: ...


def learn(worker: _Reader, task: Task) -> tuple[str, Identifiers] | None:
    """The input's patient key and the identifying values it holds (None when it cannot be
    read, or is no input)."""
    if task.skip is not None:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if task.member is None:
                return _learn_path(worker, task.path)
            with tempfile.TemporaryDirectory(prefix="dicomveil-") as folder:
                extracted = Path(folder) / "member"
                with (
                    task.open_member(worker._archive(task.path)) as src,
                    extracted.open("wb") as out,
                ):
                    shutil.copyfileobj(src, out, 1 << 20)
                return _learn_path(worker, extracted)
    except Exception:  # whatever cannot be read is reported by the second pass
        return None


def _learn_path(worker: _Reader, path: Path) -> tuple[str, Identifiers] | None:
    # only the elements the values come from (two thirds of a file's are not made into
    # pydicom elements, nor looked at again)
    source = read_scanned(path, keep=worker.engine.patient_elements)
    if source is None:
        if sniff(path) is not Kind.DICOM:
            return None
        source = read_source(path, quick=False)
    return worker.engine.patient_values(source.dataset)


def pooled(found: Iterable[tuple[str, Identifiers] | None], into: Patients) -> None:
    """Add the values found to their patients' (in place)."""
    for item in found:
        if item is not None:
            key, values = item
            known = into.get(key)
            into[key] = values if known is None else known.union(values)


_READER: _Reader | None = None


def _init(make: Callable[[], _Reader]) -> None:
    global _READER
    _READER = make()
    exit_with_parent()


def _learn_chunk(tasks: list[Task]) -> tuple[list[tuple[str, Identifiers]], list[str | None]]:
    """A chunk's values pooled per patient already (less to send back and to pool), and
    each input's patient key."""
    assert _READER is not None
    reader = _READER
    found = [learn(reader, task) for task in tasks]
    return list(pooling(found).items()), [item[0] if item else None for item in found]


def pooling(found: Iterable[tuple[str, Identifiers] | None]) -> Patients:
    """The values found, pooled per patient."""
    patients: Patients = {}
    pooled(found, patients)
    return patients


class FirstPass(NamedTuple):
    """What a run's first pass learned: the patients' values, and each input's patient
    key (None where it could not be read), in the order of the inputs."""

    patients: Patients
    keys: list[str | None]


def first_pass(
    make: Callable[[], _Reader],
    chunks: Iterable[list[Task]],
    workers: int,
    meanwhile: Callable[[], object] | None = None,
) -> FirstPass | None:
    """Every input's values pooled per patient, when the profile's cleaners look for them
    (else None); ``make`` builds a worker (in each process of a pool of ``workers``). The
    chunks may come as the inputs are walked: the pool starts on the first ones. With a pool,
    ``meanwhile`` runs in this process once every chunk is handed out (while the pool's
    workers read): work the processes forked after the first pass then inherit."""
    probe = make()
    if not probe.engine.reads_patients:
        return None
    patients: Patients = {}
    keys: list[str | None] = []
    if workers == 1:
        for chunk in chunks:
            found = [learn(probe, task) for task in chunk]
            pooled(found, patients)
            keys.extend(item[0] if item else None for item in found)
    else:
        with ProcessPoolExecutor(workers, initializer=_init, initargs=(make,)) as pool:
            results = pool.map(_learn_chunk, chunks)
            if meanwhile is not None:
                meanwhile()
            for values, chunk_keys in results:
                pooled(values, patients)
                keys.extend(chunk_keys)
    return FirstPass(with_run_institutions(patients), keys)


def patient_chunks(tasks: list[Task], keys: list[str | None], size: int) -> list[list[Task]]:
    """The inputs in chunks of about ``size`` that do not split a patient's consecutive
    files (up to eight times ``size``): a worker then cleans each patient's texts once."""
    chunks: list[list[Task]] = []
    chunk: list[Task] = []
    last: str | None = None
    for task, key in zip(tasks, keys, strict=True):
        if chunk and (len(chunk) >= size * 8 or (len(chunk) >= size and key != last)):
            chunks.append(chunk)
            chunk = []
        chunk.append(task)
        last = key
    if chunk:
        chunks.append(chunk)
    return chunks


def with_run_institutions(patients: Patients) -> Patients:
    """Each patient's values with the institution, department and station names of the
    whole run: one patient's history names the hospital another patient's files were made
    in ("transferred from Riverside")."""
    names = frozenset().union(*(values.institutions for values in patients.values()))
    if not names:
        return patients
    everywhere = Identifiers(institutions=names)
    return {key: values.union(everywhere) for key, values in patients.items()}
